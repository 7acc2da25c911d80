"""The two database backends behind appliance.db: SQLite (a file under the data directory) and
PostgreSQL (``database_url``). Each answers the same questions (how to open a write transaction
holding the write lock, how to take a named lock, how to dump and load the whole database, which
driver errors mean "busy", "disk full" or "server gone") in its own terms; domain code only ever
sees appliance.db.
"""

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import threading

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from appliance.errors import Busy, DatabaseToolFailed, DatabaseToolMissing, DatabaseUnavailable, InsufficientStorage

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    # FULL makes every commit durable before the client hears "published".
    "synchronous": "full",
    "busy_timeout": 10000,  # replaced by the busy_timeout setting (init_database)
    "cache_size": -16000,
}

# Primary result codes (sqlite.org/rescode.html) that are no bug: another writer, a full disk.
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13
# The same on PostgreSQL (SQLSTATE): a lock not granted within lock_timeout, a full disk.
PG_LOCK_NOT_AVAILABLE, PG_DISK_FULL = "55P03", "53100"
# The server is shutting down, crashing or not yet up (SQLSTATE class 57P): the connection is gone.
PG_SERVER_GONE = ("57P01", "57P02", "57P03")

WRITE_LOCK = "write"


def driver_error(exc):
    """The driver's exception behind a peewee error: peewee wraps it as its first argument, or
    (a failed connect) raises its own error while handling another peewee error that does."""
    seen = 0
    while isinstance(exc, peewee.PeeweeException) and seen < 5:
        exc = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc.__context__
        seen += 1
    return exc


def lock_id(name):
    """A stable 64-bit advisory lock key for a name (the same in every process and node)."""
    return int.from_bytes(hashlib.sha256(f"hexvault:{name}".encode()).digest()[:8], "big", signed=True)


class Held:
    def __init__(self, release, alive=lambda: True):
        self._release = release
        self._alive = alive

    def alive(self):
        """Whether the lock is surely still held (False once its PostgreSQL session is gone)."""
        return self._release is not None and self._alive()

    def release(self):
        if self._release is not None:
            release, self._release = self._release, None
            release()


class SqliteBackend:
    name = "sqlite"
    lock_dir = None

    def __init__(self, path, busy_timeout_ms, proxy):
        self.path = path
        self.proxy = proxy  # appliance.db.database, pointed at a dump's copy while read() runs
        self.db = peewee.SqliteDatabase(str(path), pragmas=dict(SQLITE_PRAGMAS, busy_timeout=busy_timeout_ms),
                                        timeout=busy_timeout_ms / 1000, check_same_thread=False)

    @staticmethod
    def refusal(exc):
        code = getattr(driver_error(exc), "sqlite_errorcode", None)
        code = None if code is None else code & 0xFF
        if code in (SQLITE_BUSY, SQLITE_LOCKED):
            return Busy()
        if code == SQLITE_FULL:
            return InsufficientStorage()
        return None

    @staticmethod
    def lost(_exc):
        return False  # a file, not a server

    def drop_connection(self):
        pass

    def unavailable(self, _exc):
        return None

    def write_atomic(self, bump=True):
        # A deferred transaction that reads first and writes later can fail with "database is
        # locked" when another writer got in between; IMMEDIATE waits (busy_timeout) instead.
        return self.db.atomic("IMMEDIATE")

    def snapshot_atomic(self):
        return self.db.atomic()

    def close_all(self):
        # Other threads' SQLite connections close when their threads end.
        if not self.db.is_closed():
            self.db.close()

    def foreign_key_violations(self):
        return self.db.execute_sql("PRAGMA foreign_key_check").fetchall()

    dump_suffix = ".db"

    def dump(self, path, read):
        source = sqlite3.connect(self.path)
        target = sqlite3.connect(path)
        try:
            source.backup(target)
            # One self-contained file to copy back: no -wal/-shm beside it.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
            source.close()
        if read is None:
            return None
        # The copy, read-only and without the WAL pragma, so nothing is added beside it.
        copy = peewee.SqliteDatabase(f"file:{path}?mode=ro", uri=True)
        self.proxy.initialize(copy)
        try:
            with copy.connection_context():
                return read()
        finally:
            self.proxy.initialize(self.db)

    def load(self, path):
        shutil.copy2(path, self.path)

    def _open(self, name):
        self.lock_dir.mkdir(exist_ok=True)
        return open(self.lock_dir / f"{name}.lock", "a")

    @contextlib.contextmanager
    def lock(self, name):
        with self._open(name) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def try_lock(self, name):
        fh = self._open(name)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        return Held(fh.close)


# libpq's TCP settings for every connection: a server gone silent is noticed within about
# idle + interval * count seconds, and data it never acknowledges fails after tcp_user_timeout.
TCP_TIMEOUTS = dict(keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                    tcp_user_timeout=10_000)


class PostgresqlBackend:
    name = "postgresql"
    lock_dir = None
    generation = None  # the DatabaseGeneration its write transactions move (set by init_database)

    def __init__(self, url, busy_timeout_ms):
        self.url = url
        self._waiting = {}  # lock name -> the session of this process's last failed try_lock
        self._waiting_guard = threading.Lock()
        self.busy_timeout_ms = int(busy_timeout_ms)
        # Each waitress thread keeps the connection it took (as it does with SQLite); the pool
        # is what lets close_all reach the connections of other threads.
        # A server that stops answering (a cut network, a frozen host) fails queries after a
        # bounded time instead of holding request threads forever (libpq's TCP settings; a unix
        # socket ignores them).
        self.db = PooledPostgresqlDatabase(url, prefer_psycopg3=True, max_connections=None, connect_timeout=10,
                                           **TCP_TIMEOUTS)

    def close_all(self):
        self.db.close_all()
        with self._waiting_guard:
            waiting, self._waiting = self._waiting, {}
        for conn in waiting.values():
            conn.close()

    @contextlib.contextmanager
    def write_atomic(self, bump=True):
        with self.db.atomic() as tx:
            outermost = self.db.transaction_depth() == 1
            if outermost:
                # Waiting for the write lock is bounded as SQLite's busy_timeout bounds it.
                self.db.execute_sql(f"SET LOCAL lock_timeout = {self.busy_timeout_ms}")
                self.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_id(WRITE_LOCK),))
            yield tx
            if outermost and bump:
                # Under the write lock already held, so it costs no extra waiting.
                self.generation.bump_in_transaction()

    def refusal(self, exc):
        state = getattr(driver_error(exc), "sqlstate", None)
        if state == PG_LOCK_NOT_AVAILABLE:
            return Busy()
        if state == PG_DISK_FULL:
            return InsufficientStorage()
        return self.unavailable(exc)

    def unavailable(self, exc):
        """DatabaseUnavailable when ``exc`` says the server is gone (see ``lost``); this thread's
        dead connection is dropped, so its next query connects afresh."""
        if not self.lost(exc):
            return None
        self.drop_connection()
        return DatabaseUnavailable()

    @staticmethod
    def lost(exc):
        """A connection-level failure: the server refused or ended the connection (SQLSTATE
        class 08, or 57P01-57P03 for a shutdown or restart), or psycopg found it closed."""
        import psycopg

        if not isinstance(exc, (peewee.OperationalError, peewee.InterfaceError)):
            return False
        driver = driver_error(exc)
        if not isinstance(driver, (psycopg.OperationalError, psycopg.InterfaceError)):
            return False
        state = getattr(driver, "sqlstate", None)
        return state is None or state.startswith("08") or state in PG_SERVER_GONE

    def drop_connection(self):
        with contextlib.suppress(Exception):
            self.db.manual_close()

    def snapshot_atomic(self):
        return self.db.atomic(isolation_level="REPEATABLE READ")

    @contextlib.contextmanager
    def lock(self, name):
        self.db.connect(reuse_if_open=True)
        key = lock_id(name)
        self.db.execute_sql("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            self.db.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))

    def foreign_key_violations(self):
        return []

    dump_suffix = ".pgdump"

    def dump(self, path, read):
        if read is None:
            # pg_dump's own snapshot (a pre-migration copy: the caller holds the write lock).
            _pg_tool(self.url, "pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={path}")
            return None
        self.db.connect(reuse_if_open=True)
        with self.db.atomic(isolation_level="REPEATABLE READ"):
            # pg_dump works in the snapshot this transaction exports, so ``read`` sees its state.
            snapshot = self.db.execute_sql("SELECT pg_export_snapshot()").fetchone()[0]
            _pg_tool(self.url, "pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                     f"--snapshot={snapshot}", f"--file={path}")
            return read() if read is not None else None

    def load(self, path):
        _pg_tool(self.url, "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                 str(path))

    def try_lock(self, name):
        # A connection of its own: the lock lives as long as the session, whatever the
        # request threads do with theirs; it goes with the process (or node) that holds it.
        # A try that fails keeps its connection for the next try (every few seconds, in every
        # process that does not hold the lock) instead of opening a new session each time.
        with self._waiting_guard:
            conn = self._waiting.pop(name, None)
        if conn is None or conn.closed or conn.broken:
            conn = self._lock_session(name)
        try:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_id(name),)).fetchone()[0]:
                return Held(conn.close, lambda: _answers(conn))
        except BaseException:
            conn.close()
            raise
        with self._waiting_guard:
            self._waiting[name] = conn
        return None

    def _lock_session(self, name):
        import psycopg

        # Named, so pg_stat_activity shows which process holds (or waits for) which lock.
        conn = psycopg.connect(self.url, autocommit=True, application_name=f"hexvault {name} pid {os.getpid()}",
                               connect_timeout=10, **TCP_TIMEOUTS)
        try:
            # The server ends (and so unlocks) a session whose node went silent after about
            # idle + interval * count seconds; the holder, probing every few seconds with a bounded
            # wait (tcp_user_timeout), has given the work up before then.
            for setting, value in LOCK_SESSION_SERVER.items():
                conn.execute(f"SET {setting} = {int(value)}")
        except BaseException:
            conn.close()
            raise
        return conn


LOCK_SESSION_SERVER = dict(tcp_keepalives_idle=10, tcp_keepalives_interval=5, tcp_keepalives_count=3)


def _answers(conn):
    try:
        conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def _pg_tool(url, name, *args):
    """Run pg_dump/pg_restore (Debian's postgresql-client) on the database ``url`` names; its
    error is the message. The password goes in the environment (PGPASSWORD), not on the command
    line, where every local user could read it (ps)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if shutil.which(name) is None:
        raise DatabaseToolMissing(f"{name} is not installed; install PostgreSQL's client tools "
                                  "(Debian: apt-get install postgresql-client)")
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = dict(os.environ, PGPASSWORD=str(password)) if password is not None else None
    done = subprocess.run([name, f"--dbname={make_conninfo(**params)}", *args], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise DatabaseToolFailed(f"{name} failed: {done.stderr.strip()[-500:]}")
