"""A real PostgreSQL for the tests: Debian's server binaries, a fresh initdb cluster in a short
temp directory, run as ``nobody`` when the tests run as root (PostgreSQL refuses root), reached
only over its unix socket, stopped by PID."""

import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time

import psycopg
from tests.procserver import stop_process

PORT = 5432  # only names the socket file: the cluster listens on no TCP port


def server_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    return os.path.dirname(found[-1])


class PostgresCluster:
    def __init__(self):
        self.dir = None
        self.proc = None
        self._log_file = None
        self._names = itertools.count(1)

    def _as_server_user(self):
        return dict(user="nobody", group="nogroup", extra_groups=[]) if os.geteuid() == 0 else {}

    def start(self, deadline=30.0):
        bindir = server_bin()
        # Short: the socket path must fit in 107 bytes.
        self.dir = tempfile.mkdtemp(prefix="pg", dir="/tmp")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody", "nogroup")
        data = os.path.join(self.dir, "data")
        subprocess.run([f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                        "--no-locale", "--no-sync"], check=True, capture_output=True, **self._as_server_user())
        self._log_file = open(os.path.join(self.dir, "server.log"), "wb")
        return self.resume(deadline)

    def pause(self):
        """Stop the server as an outage would (fast shutdown: sessions are cut), keeping its data."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)

    def resume(self, deadline=30.0):
        """Start the server (again) on the same data directory and socket."""
        bindir = server_bin()
        data = os.path.join(self.dir, "data")
        self.proc = subprocess.Popen(
            [f"{bindir}/postgres", "-D", data, "-k", self.dir, "-p", str(PORT), "-c", "listen_addresses=",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=400"],
            stdout=subprocess.DEVNULL, stderr=self._log_file,
            **self._as_server_user())
        end = time.monotonic() + deadline
        while True:
            try:
                psycopg.connect(self.url("postgres")).close()
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log()[-2000:]}") from None
                time.sleep(0.05)

    def log(self):
        with open(os.path.join(self.dir, "server.log"), errors="replace") as fh:
            return fh.read()

    def url(self, name):
        return f"postgresql://postgres@/{name}?host={self.dir}&port={PORT}"

    def create_database(self, prefix="t"):
        """A new, empty database; its URL."""
        name = f"{prefix}{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self):
        # Immediate shutdown: the cluster is thrown away, so its shutdown checkpoint (tens of
        # seconds after a long session on a busy machine) would be wasted.
        stop_process(self.proc, signal.SIGQUIT, timeout=30)
        if self._log_file is not None:
            self._log_file.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
