"""The SQLite database: late-bound, WAL, writes in IMMEDIATE transactions. Its schema version
and migrations live in ``appliance.migrations``."""

import contextlib
import fcntl
import mmap
import os
import threading

import peewee

from appliance import events
from appliance.errors import Busy, InsufficientStorage

# Bound to a file by init_database(); models refer to this object from import time on.
database = peewee.SqliteDatabase(None)

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    # FULL makes every commit durable before the client hears "published".
    "synchronous": "full",
    "busy_timeout": 10000,  # replaced by the busy_timeout setting (init_database)
    "cache_size": -16000,
}


_generation = None  # the _Generation beside the bound database file

# Primary result codes (sqlite.org/rescode.html) that are no bug: another writer, a full disk.
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13


def init_database(path, busy_timeout_ms=PRAGMAS["busy_timeout"]):
    global _generation
    database.init(str(path), pragmas=dict(PRAGMAS, busy_timeout=busy_timeout_ms), timeout=busy_timeout_ms / 1000,
                  check_same_thread=False)
    _generation = _Generation(str(path) + ".generation")
    return database


@contextlib.contextmanager
def write_tx():
    """A write transaction that takes SQLite's write lock at BEGIN, and after it commits bumps
    the generation and emits the events held for it (events.emit_after_commit).

    A deferred transaction that reads first and writes later can fail with "database is locked"
    when another writer got in between; IMMEDIATE waits (busy_timeout) instead. A lock held past
    busy_timeout raises errors.Busy (503 with Retry-After) and a full disk errors.InsufficientStorage
    (507); either way the transaction is rolled back.
    """
    mark = events.transaction_started()
    try:
        with database.atomic("IMMEDIATE") as tx:
            yield tx
    except peewee.OperationalError as exc:
        events.transaction_failed(mark)
        code = _sqlite_code(exc)
        if code in (SQLITE_BUSY, SQLITE_LOCKED):
            raise Busy() from exc
        if code == SQLITE_FULL:
            raise InsufficientStorage() from exc
        raise
    except BaseException:
        events.transaction_failed(mark)
        raise
    try:
        if database.transaction_depth() == 0:
            bump_generation()
    finally:
        events.transaction_committed()


def _sqlite_code(exc):
    """The primary SQLite result code behind a peewee error (peewee wraps sqlite3's error as its
    first argument), or None."""
    original = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc.__context__
    code = getattr(original, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def generation():
    """A number that changes after every committed write, in any process using this database.

    Caches of authentication data compare it on every request (see lookupcache.py), so reading it
    must be nearly free: it is a counter in a small file that every process maps into memory.
    """
    return _generation.read() if _generation is not None else 0


def bump_generation():
    if _generation is not None:
        _generation.bump()


class _Generation:
    """An 8-byte counter in a file, shared through mmap: a read is a memory access (no system
    call), and a bump by any process is seen by every other at once. Bumps take an flock so two
    processes never write the same value."""

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

    def bump(self):
        counter = self._mapped()
        with self._lock, open(self._path, "rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            counter[:self.SIZE] = (int.from_bytes(counter[:self.SIZE], "little") + 1).to_bytes(self.SIZE, "little")
