"""Shared by the benchmarks: Hexvault's TLS front (the nginx site `hexvault front config` renders)
and a plain nginx serving a directory over TLS, both on loopback with a throw-away local CA.

Not a benchmark itself: scripts/bench_registry.py and scripts/bench_client.py use it with --tls.
"""

import os
import shutil
import subprocess

from bench_registry import free_port, wait_ready

from appliance import front
from appliance.front import selfsigned

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

STATIC_TLS = """
worker_processes 1;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log;
%(user)s
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path %(dir)s/tmp;
  proxy_temp_path %(dir)s/tmp;
  fastcgi_temp_path %(dir)s/tmp;
  uwsgi_temp_path %(dir)s/tmp;
  scgi_temp_path %(dir)s/tmp;
  types { }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:static_tls:10m;
    root %(www)s;
  }
}
"""


def make_tls(workdir):
    return selfsigned.ensure(os.path.join(workdir, "tls"), ["localhost", "127.0.0.1"])


def _user_line():
    # As root, nginx would run its workers as nobody, who cannot read a root-owned temp dir.
    return "user root root;" if os.geteuid() == 0 else ""


def start_front(config, upstream_port, tls, workdir):
    """The TLS front for the Hexvault serving ``config``'s data dir on ``upstream_port``;
    returns (process, https port)."""
    port = free_port()
    https_config = config.with_updates(base_url=f"https://localhost:{port}")
    site = front.render_site(https_config, cert=tls.cert, key=tls.key, server_name="localhost",
                             https_listen=f"127.0.0.1:{port}", http_listen=f"127.0.0.1:{free_port()}",
                             upstream=f"127.0.0.1:{upstream_port}")
    directory = os.path.join(workdir, "front")
    conf = front.write_standalone(directory, site, user="root root" if os.geteuid() == 0 else None)
    # Like the plain nginx it is compared with: no access log (a real server keeps one).
    with open(conf) as fh:
        text = fh.read()
    with open(conf, "w") as fh:
        fh.write(text.replace(f"access_log {directory}/access.log;", "access_log off;"))
    proc = subprocess.Popen([NGINX, "-c", conf, "-p", directory, "-e", os.path.join(directory, "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port)
    return proc, port


def start_static_tls(www, tls, workdir):
    """A plain nginx serving ``www`` over TLS with the same certificate: the comparison."""
    base = os.path.join(workdir, "static-tls")
    os.makedirs(os.path.join(base, "tmp"), exist_ok=True)
    port = free_port()
    conf = os.path.join(base, "nginx.conf")
    with open(conf, "w") as fh:
        fh.write(STATIC_TLS % {"dir": base, "port": port, "cert": tls.cert, "key": tls.key, "www": www,
                               "user": _user_line()})
    proc = subprocess.Popen([NGINX, "-c", conf, "-p", base, "-e", os.path.join(base, "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port)
    return proc, port


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
