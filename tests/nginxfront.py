"""Debian's real nginx as Hexvault's TLS front, started from the site `hexvault front config`
renders, as an unprivileged user on high 127.0.0.1 ports in a temp dir, stopped by PID."""

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from appliance import front
from appliance.front import selfsigned
from tests.procserver import stop_process

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
AS_ROOT = os.geteuid() == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_ids():
    """(uid, gid) services run as: nobody:nogroup when the tests run as root, else ourselves."""
    if AS_ROOT:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    return os.getuid(), os.getgid()


def world_dir(prefix):
    """A temp dir the service user can traverse (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    return path


def share_blobs_with_service(blob_dir):
    """What install.sh does for www-data: the blob folder's group is the front's, set-gid so new
    folders and files (0640) inherit it."""
    _uid, gid = service_ids()
    blob_dir = Path(blob_dir)
    for parent in [blob_dir.parent]:
        parent.chmod(parent.stat().st_mode | 0o011)
    for root, dirs, files in os.walk(blob_dir):
        os.chown(root, -1, gid)
        os.chmod(root, 0o2750)
        for name in files:
            os.chown(os.path.join(root, name), -1, gid)
            os.chmod(os.path.join(root, name), 0o640)


def make_tls(directory, hosts=("localhost", "127.0.0.1")):
    files = selfsigned.ensure(str(directory), list(hosts))
    uid, gid = service_ids()
    for path in (directory, files.key, files.cert, files.ca_cert):
        os.chown(path, uid, gid)
    return files


class NginxFront:
    def __init__(self, config, upstream, tls, *, https_port=None, http_port=None):
        self.dir = world_dir("hvnginx")
        self.https_port = https_port or free_port()
        self.http_port = http_port or free_port()
        self.site = front.render_site(config, cert=tls.cert, key=tls.key, server_name="localhost",
                                      https_listen=f"127.0.0.1:{self.https_port}",
                                      http_listen=f"127.0.0.1:{self.http_port}", upstream=upstream)
        self.proc = None

    def start(self, deadline=20.0):
        d = self.dir
        conf = front.write_standalone(d, self.site)
        uid, gid = service_ids()
        for root, dirs, files in os.walk(d):
            os.chown(root, uid, gid)
            for name in files:
                os.chown(os.path.join(root, name), uid, gid)
        cmd = [NGINX, "-c", conf, "-p", str(d), "-e", "stderr"]
        kwargs = dict(user=uid, group=gid, extra_groups=[]) if AS_ROOT else {}
        test = subprocess.run(cmd + ["-t"], capture_output=True, text=True, **kwargs)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t refused the site: {test.stderr}")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.https_port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nginx did not start in time")

    @property
    def url(self):
        return f"https://localhost:{self.https_port}"

    @property
    def http_url(self):
        return f"http://localhost:{self.http_port}"

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        stop_process(self.proc, signal.SIGQUIT)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
