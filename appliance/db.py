"""The database: SQLite under the data directory by default, PostgreSQL when ``database_url``
names one. Domain code never asks which: it uses ``database``, ``write_tx``, ``lock`` and
``try_lock``, which mean the same on both. Its schema version and migrations live in
``appliance.migrations``.

- ``write_tx``: one writer at a time. SQLite takes its write lock at BEGIN (IMMEDIATE); on
  PostgreSQL the transaction first takes a transaction-level advisory lock, so code that reads
  and then writes sees exactly the serialization it has on SQLite.
- ``lock(name)``: a blocking lock across threads and processes (registry builds of one
  organization, migrations). SQLite: an flock on ``locks/NAME.lock`` beside the database;
  PostgreSQL: a session advisory lock, which also holds between nodes.
- ``try_lock(name)``: the same without waiting, held until released or the process dies, for
  work exactly one process may do (the drop-folder watcher).
- ``generation()``: a number every committed write moves, which in-memory caches compare on
  every request. SQLite: a counter in a file every process on the machine maps into memory.
  PostgreSQL: a row in the database, moved inside each write transaction, so every node sees a
  change with the commit that made it (a key revoked on one node is refused by all on their next
  request).
"""

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import re
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from appliance import events
from appliance.errors import Busy, DatabaseToolFailed, DatabaseToolMissing, DatabaseUnavailable, InsufficientStorage

# Bound by init_database(); models refer to this object from import time on.
database = peewee.DatabaseProxy()

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

_generation = None  # the _FileGeneration or _DatabaseGeneration of the bound database
_backend = None  # the _Sqlite or _Postgresql behind the bound database


def is_postgresql_url(target):
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def without_password(url):
    """A database URL fit for messages and logs."""
    return re.sub(r"(://[^/:@]*):[^@/]*@", r"\1:***@", url)


def init_database(target, state_dir=None, busy_timeout_ms=SQLITE_PRAGMAS["busy_timeout"]):
    """Bind ``database`` to ``target``: a SQLite file path or a ``postgresql://`` URL.

    ``state_dir`` holds what belongs to this installation rather than to the database (the
    generation counter, lock files); it defaults to the SQLite file's directory.
    ``busy_timeout_ms``: how long a write waits for the write lock before errors.Busy."""
    global _generation, _backend
    if _backend is not None:
        _backend.close_all()
    if is_postgresql_url(target):
        if state_dir is None:
            raise ValueError("a PostgreSQL database needs a state directory")
        _backend = _Postgresql(target, busy_timeout_ms)
        state = Path(state_dir)
    else:
        _backend = _Sqlite(Path(target), busy_timeout_ms)
        state = Path(state_dir) if state_dir is not None else Path(target).parent
    database.initialize(_backend.db)
    if is_postgresql_url(target):
        _generation = _DatabaseGeneration(_backend.db)
    else:
        _generation = _FileGeneration(str(state / "hexvault.db.generation"))
    _backend.generation = _generation
    _backend.lock_dir = state / "locks"
    return database


@contextlib.contextmanager
def bound(target, state_dir):
    """Bind ``database`` to another database for the block, then back to the one bound before
    (for tools that move data between two databases: hexvault db copy)."""
    global _generation, _backend
    saved = _backend, _generation
    _backend = None  # init_database would close the saved one's connections
    init_database(target, state_dir)
    try:
        yield database
    finally:
        _backend.close_all()
        _backend, _generation = saved
        database.initialize(_backend.db if _backend is not None else None)


def close_all():
    """Close every connection this process holds to the bound database, in every thread (a
    stopping worker, a test tearing its server down)."""
    if _backend is not None:
        _backend.close_all()


def backend_name():
    """'sqlite' or 'postgresql': for messages and the tools that copy whole databases
    (backup, db copy, pre-migration copies), never for domain logic."""
    return _backend.name


@contextlib.contextmanager
def write_tx():
    """A write transaction holding the single write lock from its first statement on (see the
    module docstring); after it commits it bumps the generation and emits the events held for it
    (events.emit_after_commit). A lock not granted within busy_timeout raises errors.Busy (503
    with Retry-After) and a full disk errors.InsufficientStorage (507); either way the
    transaction is rolled back."""
    mark = events.transaction_started()
    try:
        with _backend.write_atomic() as tx:
            yield tx
    except peewee.OperationalError as exc:
        events.transaction_failed(mark)
        refusal = _backend.refusal(exc)
        if refusal is not None:
            raise refusal from exc
        raise
    except BaseException:
        events.transaction_failed(mark)
        raise
    try:
        if database.transaction_depth() == 0:
            _generation.after_commit()
    finally:
        events.transaction_committed()


def unavailable(exc):
    """errors.DatabaseUnavailable when ``exc`` says the database server is gone (PostgreSQL
    down, restarting, the connection cut), else None. This thread's dead connection is dropped,
    so its next query connects afresh."""
    if _backend is None or not _backend.lost(exc):
        return None
    _backend.drop_connection()
    return DatabaseUnavailable()


def _driver_error(exc):
    """The driver's exception behind a peewee error: peewee wraps it as its first argument, or
    (a failed connect) raises its own error while handling another peewee error that does."""
    seen = 0
    while isinstance(exc, peewee.PeeweeException) and seen < 5:
        exc = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc.__context__
        seen += 1
    return exc


def write_lock_tx():
    """A write transaction that does not bump the generation: for writes no cache depends on
    (deleting blobs nothing references)."""
    return _backend.write_atomic(bump=False)


def snapshot_tx():
    """A read transaction whose every query sees the same moment (SQLite in WAL mode keeps a
    reader's snapshot; PostgreSQL needs REPEATABLE READ for that)."""
    return _backend.snapshot_atomic()


def lock(name):
    """A blocking exclusive lock named ``name`` across threads, processes (and, on PostgreSQL,
    nodes). The caller serializes its own threads first: the lock is per process or session."""
    return _backend.lock(name)


def try_lock(name):
    """A held ``_Held`` lock named ``name``, or None when another process holds it."""
    return _backend.try_lock(name)


def foreign_key_violations():
    """Rows whose foreign keys point nowhere: SQLite's foreign_key_check (its table rebuilds run
    with foreign keys off); PostgreSQL refuses such rows at each statement, so none."""
    return _backend.foreign_key_violations()


def dump(path, read=None):
    """Write a consistent snapshot of the whole database to the file ``path`` while the server
    may keep writing: SQLite's online backup, or pg_dump's custom format. ``read()``, if given,
    runs against exactly the state dumped (SQLite: the copy; PostgreSQL: the snapshot pg_dump
    was handed) and its result is returned."""
    return _backend.dump(Path(path), read)


def dump_suffix():
    return _backend.dump_suffix


def load(path):
    """Fill the bound (new, empty) database from a ``dump`` file."""
    _backend.load(Path(path))


class JSONField(peewee.TextField):
    """JSON kept as compact text in a TEXT column, the same on both backends (queries never look
    inside it). Compact separators are what SQLite's json() stored for earlier releases."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


def _lock_id(name):
    """A stable 64-bit advisory lock key for a name (the same in every process and node)."""
    return int.from_bytes(hashlib.sha256(f"hexvault:{name}".encode()).digest()[:8], "big", signed=True)


class _Held:
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


class _Sqlite:
    name = "sqlite"
    lock_dir = None

    def __init__(self, path, busy_timeout_ms):
        self.path = path
        self.db = peewee.SqliteDatabase(str(path), pragmas=dict(SQLITE_PRAGMAS, busy_timeout=busy_timeout_ms),
                                        timeout=busy_timeout_ms / 1000, check_same_thread=False)

    @staticmethod
    def refusal(exc):
        code = getattr(_driver_error(exc), "sqlite_errorcode", None)
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
        database.initialize(copy)
        try:
            with copy.connection_context():
                return read()
        finally:
            database.initialize(self.db)

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
        return _Held(fh.close)


class _Postgresql:
    name = "postgresql"
    lock_dir = None

    def __init__(self, url, busy_timeout_ms):
        self.url = url
        self.busy_timeout_ms = int(busy_timeout_ms)
        # Each waitress thread keeps the connection it took (as it does with SQLite); the pool
        # is what lets close_all reach the connections of other threads.
        self.db = PooledPostgresqlDatabase(url, prefer_psycopg3=True, max_connections=None)

    def close_all(self):
        self.db.close_all()

    @contextlib.contextmanager
    def write_atomic(self, bump=True):
        with self.db.atomic() as tx:
            outermost = self.db.transaction_depth() == 1
            if outermost:
                # Waiting for the write lock is bounded as SQLite's busy_timeout bounds it.
                self.db.execute_sql(f"SET LOCAL lock_timeout = {self.busy_timeout_ms}")
                self.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_lock_id(WRITE_LOCK),))
            yield tx
            if outermost and bump:
                # Under the write lock already held, so it costs no extra waiting.
                self.generation.bump_in_transaction()

    @staticmethod
    def refusal(exc):
        state = getattr(_driver_error(exc), "sqlstate", None)
        if state == PG_LOCK_NOT_AVAILABLE:
            return Busy()
        if state == PG_DISK_FULL:
            return InsufficientStorage()
        return unavailable(exc)

    @staticmethod
    def lost(exc):
        """A connection-level failure: the server refused or ended the connection (SQLSTATE
        class 08, or 57P01-57P03 for a shutdown or restart), or psycopg found it closed."""
        import psycopg

        if not isinstance(exc, (peewee.OperationalError, peewee.InterfaceError)):
            return False
        driver = _driver_error(exc)
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
        key = _lock_id(name)
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
            _pg_tool("pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={path}",
                     f"--dbname={self.url}")
            return None
        self.db.connect(reuse_if_open=True)
        with self.db.atomic(isolation_level="REPEATABLE READ"):
            # pg_dump works in the snapshot this transaction exports, so ``read`` sees its state.
            snapshot = self.db.execute_sql("SELECT pg_export_snapshot()").fetchone()[0]
            _pg_tool("pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                     f"--file={path}", f"--dbname={self.url}")
            return read() if read is not None else None

    def load(self, path):
        _pg_tool("pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                 f"--dbname={self.url}", str(path))

    def try_lock(self, name):
        import psycopg

        # A connection of its own: the lock lives as long as the session, whatever the
        # request threads do with theirs; it goes with the process (or node) that holds it.
        # Named, so pg_stat_activity shows which process holds it.
        conn = psycopg.connect(self.url, autocommit=True, application_name=f"hexvault {name} pid {os.getpid()}",
                               connect_timeout=10, **LOCK_SESSION_TCP)
        try:
            # The server ends (and so unlocks) a session whose node went silent after about
            # idle + interval * count seconds; the holder, probing every few seconds with a bounded
            # wait (tcp_user_timeout), has given the work up before then.
            for setting, value in LOCK_SESSION_SERVER.items():
                conn.execute(f"SET {setting} = {int(value)}")
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_id(name),)).fetchone()[0]:
                return _Held(conn.close, lambda: _answers(conn))
        except BaseException:
            conn.close()
            raise
        conn.close()
        return None


# Keepalives of the connections that hold try_lock's session locks (libpq parameters; a unix
# socket ignores them).
LOCK_SESSION_TCP = dict(keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                        tcp_user_timeout=10_000)
LOCK_SESSION_SERVER = dict(tcp_keepalives_idle=10, tcp_keepalives_interval=5, tcp_keepalives_count=3)


def _answers(conn):
    try:
        conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def _pg_tool(name, *args):
    """Run pg_dump/pg_restore (Debian's postgresql-client); its error is the message."""
    if shutil.which(name) is None:
        raise DatabaseToolMissing(f"{name} is not installed; install PostgreSQL's client tools "
                                  "(Debian: apt-get install postgresql-client)")
    done = subprocess.run([name, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise DatabaseToolFailed(f"{name} failed: {done.stderr.strip()[-500:]}")


def generation():
    """A number that changes after every committed write, in any process (and, on PostgreSQL,
    any node) using this database.

    Caches of authentication data compare it on every request (see lookupcache.py), so reading it
    must be cheap: on SQLite a memory access, on PostgreSQL one small query per request (see
    ``new_request``)."""
    return _generation.read() if _generation is not None else 0


@contextlib.contextmanager
def request_scope():
    """Around the handling of one HTTP request: PostgreSQL's generation is read at most once in
    it. Outside any scope every read asks the database, so a path that forgets the scope is
    slower, never stale."""
    if _generation is None:
        yield
        return
    _generation.enter_request()
    try:
        yield
    finally:
        _generation.leave_request()


def bump_generation():
    """Move the generation outside any write transaction (after migrations)."""
    if _generation is not None:
        _generation.bump()


class _FileGeneration:
    """An 8-byte counter in a file, shared through mmap: a read is a memory access (no system
    call), and a bump by any process is seen by every other at once. Bumps take an flock so two
    processes never write the same value. One machine only: a mapped file does not carry changes
    between machines, even on a shared file system."""

    SIZE = 8

    def __init__(self, path):
        self._path = path
        self._map = None
        self._lock = threading.Lock()

    def _mapped(self):
        if self._map is None:
            with self._lock:
                if self._map is None:
                    fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o640)
                    try:
                        if os.fstat(fd).st_size < self.SIZE:
                            os.ftruncate(fd, self.SIZE)
                        self._map = mmap.mmap(fd, self.SIZE)
                    finally:
                        os.close(fd)
        return self._map

    def read(self):
        return int.from_bytes(self._mapped()[:self.SIZE], "little")

    def enter_request(self):
        pass

    def leave_request(self):
        pass

    def bump_in_transaction(self):
        pass  # SQLite's counter moves after the commit: the file is not part of the transaction

    def after_commit(self):
        self.bump()

    def bump(self):
        counter = self._mapped()
        with self._lock, open(self._path, "rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            counter[:self.SIZE] = (int.from_bytes(counter[:self.SIZE], "little") + 1).to_bytes(self.SIZE, "little")


class _DatabaseGeneration:
    """The ``meta`` row ``generation``, moved inside every write transaction: it commits (and
    becomes visible to every node) together with the change it announces. A reader reads it before
    the data it caches, so a cache is never labelled newer than what it holds.

    Read once per request (``request_scope``); outside requests (background work, the CLI) it is
    read every time."""

    _READ = "SELECT value FROM meta WHERE key = 'generation'"
    _BUMP = ("INSERT INTO meta (key, value) VALUES ('generation', '1') ON CONFLICT (key) "
             "DO UPDATE SET value = (CAST(meta.value AS BIGINT) + 1)::text")

    def __init__(self, db):
        self._db = db
        self._request = threading.local()

    def enter_request(self):
        self._request.active, self._request.value = True, None
        # Read now: this also finds a connection the server ended while the thread was idle (a
        # PostgreSQL restart) and replaces it before the request's own queries run into it.
        with contextlib.suppress(DatabaseUnavailable):
            self._request.value = self._read()

    def leave_request(self):
        self._request.active, self._request.value = False, None

    def read(self):
        request = self._request
        if getattr(request, "value", None) is not None:
            return request.value
        value = self._read()
        if getattr(request, "active", False):
            request.value = value
        return value

    def _read(self):
        for attempt in (1, 2):
            try:
                row = self._db.execute_sql(self._READ).fetchone()
                return int(row[0]) if row else 0
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                refusal = unavailable(exc)  # drops the dead connection
                if refusal is None:
                    raise
                if attempt == 2 or self._db.transaction_depth() > 0:
                    raise refusal from exc
                # once more, on a new connection

    def bump_in_transaction(self):
        self._db.execute_sql(self._BUMP)

    def after_commit(self):
        pass  # moved by the transaction itself

    def bump(self):
        with self._db.atomic():
            self.bump_in_transaction()
