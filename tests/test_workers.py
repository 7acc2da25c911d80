"""`workers = N`: N waitress processes on one socket under `hexvault serve`.

Which worker served a connection is read from the kernel (the server end of the TCP connection
is a socket in exactly one worker's file table), so every worker is checked without anything
added to the server for the test. The kernel hands each new connection to whichever worker
accepts first, so each check opens fresh connections until every worker has answered, within a
bounded number of attempts. ``database_url`` (conftest) runs them on PostgreSQL in that pass.
"""

import http.client
import os
import re
import signal
import time

import psycopg

from tests.driver import erlang_package
from tests.procserver import ServerProcess
from tests.test_cli import run

ATTEMPTS = 400  # fresh connections per check; with 2 workers each answers long before this


def wait_for(predicate, seconds=30.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def serving_pid(conn, server_port, pids):
    """The worker holding the server end of the open connection ``conn``."""
    client_port = conn.sock.getsockname()[1]
    server_end, client_end = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as fh:
        inodes = [f[9] for f in (line.split() for line in fh.readlines()[1:])
                  if f[1] == server_end and f[2] == client_end]
    assert len(inodes) == 1, inodes
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inodes[0]}]":
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError(f"no worker among {pids} holds the connection")


def statuses_per_worker(server, path, headers):
    """{worker pid: set of statuses} over fresh connections, until every worker has answered."""
    pids = server.worker_pids()
    seen = {}
    for _ in range(ATTEMPTS):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            seen.setdefault(serving_pid(conn, server.port, pids), set()).add(response.status)
        finally:
            conn.close()
        if len(seen) == len(pids):
            break
    return seen


def init(tmp_path):
    result = run(tmp_path, "init", "--admin", "root", "--org", "acme")
    assert result.exit_code == 0, result.output
    return re.search(r"Repository key:\s+([0-9a-f]{32})", result.output).group(1)


def test_a_key_revoked_by_the_cli_is_refused_by_every_worker_at_once(tmp_path, database_url):
    repo_key = init(tmp_path)
    server = ServerProcess(tmp_path / "data", workers=2).start()
    try:
        assert wait_for(lambda: len(server.worker_pids()) == 2)
        auth = {"authorization": repo_key}
        before = statuses_per_worker(server, "/repos/acme/names", auth)
        # Every worker now holds the key in its in-memory lookup cache.
        assert before == {pid: {200} for pid in server.worker_pids()}

        revoked = run(tmp_path, "key", "revoke", "acme-repository", "--org", "acme")
        assert revoked.exit_code == 0, revoked.output
        after = statuses_per_worker(server, "/repos/acme/names", auth)
        assert after == {pid: {401} for pid in server.worker_pids()}
    finally:
        server.stop()


def watcher_holders(data, database_url):
    """PIDs holding the drop-folder lock: an flock on its file in the kernel's lock table
    (SQLite), or an advisory lock held by a session named after its process (PostgreSQL)."""
    if database_url:
        with psycopg.connect(database_url) as conn:
            names = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted").fetchall()
        return [int(name.rsplit(" ", 1)[1]) for (name,) in names if name.startswith("hexvault drop-folder pid ")]
    path = data / "locks" / "drop-folder.lock"
    if not path.exists():
        return []
    inode = os.stat(path).st_ino
    with open("/proc/locks") as fh:
        return [int(f[4]) for f in (line.split() for line in fh)
                if f[1] == "FLOCK" and f[3] == "WRITE" and f[5].endswith(f":{inode}")]


def test_one_worker_watches_the_drop_folder_a_dead_one_is_replaced_and_sigterm_stops_all(tmp_path, database_url):
    init(tmp_path)
    data = tmp_path / "data"
    server = ServerProcess(data, workers=2).start()
    try:
        first = wait_for(lambda: len(server.worker_pids()) == 2 and server.worker_pids())
        holders = wait_for(lambda: watcher_holders(data, database_url))
        assert len(holders) == 1 and holders[0] in first

        drop = data / "import" / "acme"
        drop.mkdir(parents=True, exist_ok=True)
        (drop / "one-1.0.0.tar").write_bytes(erlang_package("one", "1.0.0"))
        assert wait_for(lambda: (drop / "done" / "one-1.0.0.tar").exists())

        os.kill(holders[0], signal.SIGKILL)
        replaced = wait_for(lambda: len(server.worker_pids()) == 2 and holders[0] not in server.worker_pids()
                            and server.worker_pids())
        assert replaced and holders[0] not in replaced
        # Another worker takes the watcher over (the kernel dropped the dead one's lock).
        taken = wait_for(lambda: watcher_holders(data, database_url))
        assert len(taken) == 1 and taken[0] in server.worker_pids()
        (drop / "two-1.0.0.tar").write_bytes(erlang_package("two", "1.0.0"))
        assert wait_for(lambda: (drop / "done" / "two-1.0.0.tar").exists())

        workers = server.worker_pids()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        for pid in workers:
            assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
    finally:
        server.stop()
