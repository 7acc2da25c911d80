"""The SQLite database: late-bound, WAL, one schema version, writes in IMMEDIATE transactions."""

import contextlib
import os
import time

import peewee

SCHEMA_VERSION = 1

# Bound to a file by init_database(); models refer to this object from import time on.
database = peewee.SqliteDatabase(None)

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    # FULL makes every commit durable before the client hears "published".
    "synchronous": "full",
    "busy_timeout": 10000,
    "cache_size": -16000,
}


_generation_path = None


def init_database(path):
    global _generation_path
    database.init(str(path), pragmas=PRAGMAS, timeout=10, check_same_thread=False)
    _generation_path = str(path) + ".generation"
    return database


@contextlib.contextmanager
def write_tx():
    """A write transaction that takes SQLite's write lock at BEGIN, and bumps the generation
    after it commits.

    A deferred transaction that reads first and writes later can fail with "database is locked"
    when another writer got in between; IMMEDIATE waits (busy_timeout) instead.
    """
    with database.atomic("IMMEDIATE") as tx:
        yield tx
    if database.transaction_depth() == 0:
        bump_generation()


def generation():
    """A number that changes after every committed write, in any process using this database.

    It is the mtime of a stamp file beside the database, so reading it costs one stat: caches
    of authentication data check it on every request (see authcache.py).
    """
    try:
        return os.stat(_generation_path).st_mtime_ns
    except FileNotFoundError:
        return 0


def bump_generation():
    now = time.time_ns()
    try:
        now = max(now, os.stat(_generation_path).st_mtime_ns + 1)
    except FileNotFoundError:
        open(_generation_path, "a").close()
    os.utime(_generation_path, ns=(now, now))
