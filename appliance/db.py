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
import json
import os
import re
from pathlib import Path

import peewee

from appliance import events
from appliance.dbbackends import SQLITE_PRAGMAS, PostgresqlBackend, SqliteBackend
from appliance.generation import DatabaseGeneration, FileGeneration

# Bound by init_database(); models refer to this object from import time on.
database = peewee.DatabaseProxy()

_generation = None  # the FileGeneration or DatabaseGeneration of the bound database
_backend = None  # the SqliteBackend or PostgresqlBackend behind the bound database


def _name_connections():
    """PostgreSQL connections carry the process they belong to (pg_stat_activity, and a test
    that no session is shared between processes), unless the operator named them (PGAPPNAME)."""
    if os.environ.get("PGAPPNAME", "hexvault pid ").startswith("hexvault pid "):
        os.environ["PGAPPNAME"] = f"hexvault pid {os.getpid()}"


_name_connections()
os.register_at_fork(after_in_child=_name_connections)


def is_postgresql_url(target):
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def without_password(url):
    """A database URL fit for messages and logs: the password masked, in the user part or as a
    ``password=`` parameter."""
    url = re.sub(r"(://[^/:@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


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
        _backend = PostgresqlBackend(target, busy_timeout_ms)
        state = Path(state_dir)
    else:
        _backend = SqliteBackend(Path(target), busy_timeout_ms, database)
        state = Path(state_dir) if state_dir is not None else Path(target).parent
    database.initialize(_backend.db)
    if is_postgresql_url(target):
        _generation = DatabaseGeneration(_backend)
    else:
        _generation = FileGeneration(str(state / "hexvault.db.generation"))
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
def write_tx(announce=True):
    """A write transaction holding the single write lock from its first statement on (see the
    module docstring); after it commits it bumps the generation and emits the events held for it
    (events.emit_after_commit). A lock not granted within busy_timeout raises errors.Busy (503
    with Retry-After) and a full disk errors.InsufficientStorage (507); either way the
    transaction is rolled back. ``announce=False``: a change no cache holds (key last-use times)
    leaves the generation alone, so every process's caches stay warm."""
    mark = events.transaction_started()
    try:
        with _backend.write_atomic(bump=announce) as tx:
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
        if announce and database.transaction_depth() == 0:
            _generation.after_commit()
    finally:
        events.transaction_committed()


def unavailable(exc):
    """errors.DatabaseUnavailable when ``exc`` says the database server is gone (PostgreSQL
    down, restarting, the connection cut), else None. This thread's dead connection is dropped,
    so its next query connects afresh."""
    return None if _backend is None else _backend.unavailable(exc)


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


def generation():
    """A value that changes after every committed write, in any process (and, on PostgreSQL,
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
