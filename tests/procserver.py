"""`hexvault serve` as a real child process, for tests that kill it."""

import os
import signal
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, signum=signal.SIGTERM, timeout=10.0):
    """Stop a child service by its PID: ``signum`` (its own clean or fast shutdown), then SIGKILL
    if it is still there after ``timeout`` seconds. Does nothing to one that already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signum)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ServerProcess:
    def __init__(self, data_dir, port=None, env=None, output=None, workers=1):
        """``env``: more environment variables for the server (they win over the defaults);
        ``output``: a file that gets everything it writes, stdout and stderr, as journald would."""
        self.data_dir = str(data_dir)
        self.env = env or {}
        self.output = output
        self.workers = workers
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, deadline=30.0):
        env = dict(os.environ, HEXVAULT_DATA_DIR=self.data_dir, HEXVAULT_PORT=str(self.port),
                   HEXVAULT_BASE_URL=self.url, HEXVAULT_LOG_LEVEL="WARNING", HEXVAULT_CONFIG="",
                   HEXVAULT_WORKERS=str(self.workers))
        env.update(self.env)
        if self.output:
            with open(self.output, "ab") as sink:
                self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve"], env=env,
                                             stdout=sink, stderr=subprocess.STDOUT)
        else:
            self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                written = open(self.output, "rb").read() if self.output else self.proc.stderr.read()
                raise RuntimeError(f"server exited: {written.decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in time")

    def worker_pids(self):
        """The worker processes of a server started with workers > 1 (its children)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as fh:
                return [int(pid) for pid in fh.read().split()]
        except FileNotFoundError:
            return []

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

    def stop(self):
        """Stop the server; returns what it wrote to stderr (its log)."""
        stop_process(self.proc)
        log = ""
        if self.proc and self.proc.stderr and not self.proc.stderr.closed:
            log = self.proc.stderr.read().decode(errors="replace")
            self.proc.stderr.close()
        return log
