"""The SQLite database: late-bound, WAL, one schema version, writes in IMMEDIATE transactions."""

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


def init_database(path):
    database.init(str(path), pragmas=PRAGMAS, timeout=10, check_same_thread=False)
    return database


def write_tx():
    """A write transaction that takes SQLite's write lock at BEGIN.

    A deferred transaction that reads first and writes later can fail with "database is locked"
    when another writer got in between; IMMEDIATE waits (busy_timeout) instead.
    """
    return database.atomic("IMMEDIATE")
