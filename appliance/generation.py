"""The change counter in-memory caches compare on every request (appliance.db.generation):
a memory-mapped file on SQLite (one machine), a database row on PostgreSQL (every node)."""

import contextlib
import fcntl
import mmap
import os
import threading

import peewee

from appliance.errors import DatabaseUnavailable


class FileGeneration:
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


class DatabaseGeneration:
    """The ``meta`` row ``generation``, moved inside every write transaction: it commits (and
    becomes visible to every node) together with the change it announces. A reader reads it before
    the data it caches, so a cache is never labelled newer than what it holds.

    Read once per request (``request_scope``); outside requests (background work, the CLI) it is
    read every time."""

    _READ = "SELECT value FROM meta WHERE key = 'generation'"
    # A fresh random value, not a count: after a failover to a replica that missed the last
    # commits, a count would repeat values some node's cache is already labelled with.
    _BUMP = ("INSERT INTO meta (key, value) VALUES ('generation', md5(random()::text || clock_timestamp()::text)) "
             "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")

    def __init__(self, backend):
        self._db = backend.db
        self._backend = backend
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
                return row[0] if row else ""
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                refusal = self._backend.unavailable(exc)  # drops the dead connection
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
