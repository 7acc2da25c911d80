"""``hexvault serve`` with ``workers = N``: N waitress processes on one listening socket.

One process handles about one core's worth of requests (the GIL), so a larger machine gets more
processes, not more threads. The supervisor (the process `hexvault serve` started) opens the
runtime, migrates and repairs (``serving.prepare``), binds the socket, and only then forks the
workers, so each one inherits the warm caches and the socket; the kernel hands every new
connection to whichever worker accepts it first. The supervisor runs no threads and holds no
database connection, so every fork starts clean; it restarts a worker that dies and, on SIGTERM
or SIGINT, passes SIGTERM on to every worker (which finishes its requests in flight) and waits
for all of them.

What stays correct across workers lives outside any one process: the database, the generation
counter (appliance.db: a key revoked by any process is refused by every worker on its next
request) and the work only one process may do (``appliance.singletons``).
"""

import logging
import os
import signal
import socket
import time

log = logging.getLogger("hexvault")

# A worker that dies this soon after its start is failing at start-up: restarting it at once
# would spin, so the supervisor waits this long first.
RESTART_BACKOFF_SECONDS = 1.0


def listen(host, port, backlog=1024):
    """A listening TCP socket for host:port, bound before any worker exists."""
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, count, run_worker):
        """``run_worker()`` serves in the calling (forked) process until SIGTERM."""
        self.count = count
        self.run_worker = run_worker
        self.children = {}  # pid -> monotonic start time
        self.stopping = False

    def _spawn(self):
        pid = os.fork()
        if pid == 0:
            code = 1
            self.children = {}  # this process supervises nobody, even if a signal comes early
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, _exit_worker)
                self.run_worker()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()
        return pid

    def _on_signal(self, signum, _frame):
        if not self.stopping:
            log.info("received signal %d: stopping %d worker(s)", signum, len(self.children))
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self):
        """Serve until SIGTERM/SIGINT; returns once every worker has exited."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for _ in range(self.count):
            self._spawn()
        log.info("started %d workers: %s", self.count, ", ".join(map(str, self.children)))
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            log.error("worker %d exited (%s); starting another", pid, _describe(status))
            if time.monotonic() - started < RESTART_BACKOFF_SECONDS:
                time.sleep(RESTART_BACKOFF_SECONDS)
            if not self.stopping:
                self._spawn()


def _exit_worker(_signum, _frame):
    # Raised in the worker's main thread, inside waitress's loop, which closes its sockets and
    # lets the running tasks finish.
    raise SystemExit(0)


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
