"""Schema versions and the migrations between them.

The database records its schema version in the ``meta`` row ``schema_version``. Each module
``mNNNN_what_it_does.py`` here upgrades version NNNN-1 to NNNN, and the highest number is the
version this Hexvault needs. ``upgrade`` applies the pending ones in order; it runs from
``hexvault migrate``, at every start-up (``runtime.open_runtime``), and for a new data directory
(``runtime.initialize``, from version 0, so new and upgraded databases have one schema).

How to change the schema
------------------------
1. Change the model in ``appliance/models.py``.
2. Add ``appliance/migrations/mNNNN_what_it_does.py`` with the next number. The first paragraph of
   its docstring says what it does (``hexvault migrate`` prints it). It defines::

       def upgrade(migrator, database):
           migrate(migrator.add_column("key", "note", peewee.CharField(null=True)))

   ``migrator`` is playhouse.migrate's ``SchemaMigrator.from_database(database)`` (add_column,
   drop_column, rename_column, add_index, add_not_null, ...); use ``database.execute_sql`` for what
   it cannot say (``CREATE UNIQUE INDEX ... WHERE ...``) and for data changes. Spell table,
   column and field definitions out in the migration: never import ``appliance.models``, which
   will have moved on by the time an old database meets this migration.
3. Run ``tests/test_migrations.py``: ``test_migrations_build_the_schema_the_models_declare``
   fails until the migrations produce what ``models.py`` declares, and
   ``test_a_first_release_database_upgrades_with_nothing_lost`` takes a database made by the
   first release (``tests/fixtures/v1``) through your migration.
Never edit or renumber a migration that has been released: add another one.

Both backends: a migration must run on SQLite and on PostgreSQL (``database_url``). Write DDL
as peewee writes it for SQLite and pass it through ``spelled_for_backend(statements,
booleans=(...))``, which gives PostgreSQL its own spelling of the same fields (SERIAL ids,
TIMESTAMP, BOOLEAN); or use the migrator, which speaks both. ``tests/test_migrations.py`` checks
the migrated schema against the models on both.

Guarantees: each migration runs in its own write transaction (``db.write_lock_tx``) together
with its version stamp (DDL is transactional on both), so one that fails leaves the database as
it was, one version earlier. On SQLite foreign keys are off while a migration runs (table
rebuilds would otherwise cascade deletes) and ``PRAGMA foreign_key_check`` must be clean before
it commits; PostgreSQL checks every statement. A lock (``db.lock("migrate")``: a file lock, an
advisory lock on PostgreSQL) keeps two processes from migrating at once. Before the first pending
migration of an existing database, a copy is made in ``pre-migration/hexvault-vN-TIMESTAMP.db``
(SQLite's online backup) or ``.pgdump`` (pg_dump's custom format), owner-only, to go back to the
previous release.
"""

import dataclasses
import datetime
import importlib
import os
import pkgutil
import re
import sys
import typing
from pathlib import Path

from playhouse.migrate import SchemaMigrator

from appliance import db
from appliance.db import bump_generation, database
from appliance.errors import MigrationFailed, SchemaTooNew

MODULE_NAME = re.compile(r"m(\d{4})_[a-z0-9_]+$")
COPY_DIR = "pre-migration"


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the module name, e.g. m0002_live_key_names
    summary: str  # the first paragraph of its docstring
    upgrade: typing.Callable


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What ``upgrade`` did: the versions before and after, the migrations it applied and the
    copy of the database it made first (None when nothing was pending or the database was new)."""

    from_version: int
    version: int
    applied: tuple
    copy_path: Path | None


# SQLite spelling (as peewee's create_tables writes it) -> PostgreSQL spelling of the same field.
_POSTGRESQL_SPELLING = (
    ('"id" INTEGER NOT NULL PRIMARY KEY', '"id" SERIAL NOT NULL PRIMARY KEY'),  # AutoField
    (" DATETIME", " TIMESTAMP"),  # DateTimeField
)


def spelled_for_backend(statements, booleans=(), doubles=()):
    """``statements`` (SQLite DDL, no parameters) as the bound backend spells them. ``booleans``
    names the BooleanField columns (INTEGER on SQLite, BOOLEAN on PostgreSQL), ``doubles`` the
    DoubleField ones (REAL on SQLite, where it has 8 bytes; DOUBLE PRECISION on PostgreSQL, whose
    REAL has 4). A literal % is doubled for psycopg, which reads placeholders in every statement."""
    if db.backend_name() != "postgresql":
        return tuple(statements)
    rules = (_POSTGRESQL_SPELLING + tuple((f'"{name}" INTEGER', f'"{name}" BOOLEAN') for name in booleans)
             + tuple((f'"{name}" REAL', f'"{name}" DOUBLE PRECISION') for name in doubles) + (("%", "%%"),))
    spelled = []
    for statement in statements:
        for sqlite_form, postgresql_form in rules:
            statement = statement.replace(sqlite_form, postgresql_form)
        spelled.append(statement)
    return tuple(spelled)


def discover(package=None):
    """The migrations of ``package`` (this package by default; tests pass their own), in order.
    Their numbers must run 1, 2, ... N without gaps, so a misnamed module fails loudly."""
    package = package or sys.modules[__name__]
    if isinstance(package, str):
        package = importlib.import_module(package)
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        match = MODULE_NAME.match(info.name)
        if not match:
            raise RuntimeError(f"{package.__name__}.{info.name} is not named mNNNN_what_it_does")
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        summary = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
        if not summary or not callable(getattr(module, "upgrade", None)):
            raise RuntimeError(f"{module.__name__} needs a docstring and an upgrade(migrator, database) function")
        found.append(Migration(int(match.group(1)), info.name, summary, module.upgrade))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 0001, 0002, ... without gaps or repeats: "
                           f"{[m.name for m in found]}")
    return found


def latest_version(package=None):
    migrations = discover(package)
    return migrations[-1].version if migrations else 0


def schema_version():
    """The version stamped in the bound database; 0 for a database without tables."""
    if not database.table_exists("meta"):
        return 0
    row = database.execute_sql(f'SELECT "value" FROM "meta" WHERE "key" = {database.param}',
                               ("schema_version",)).fetchone()
    return int(row[0]) if row else 0


def pending(config, package=None):
    """(current version, migrations not yet applied); refuses a database newer than the code."""
    migrations = discover(package)
    current = schema_version()
    _refuse_newer(config, current, migrations[-1].version if migrations else 0)
    return current, [m for m in migrations if m.version > current]


def upgrade(config, package=None):
    """Apply every pending migration to the bound, connected database of ``config``."""
    with db.lock("migrate"):
        current, todo = pending(config, package)
        copy_path = None
        migrator = SchemaMigrator.from_database(database)
        applied = []
        for migration in todo:
            # The copy is taken inside the first migration's write transaction, so no other
            # process can commit between the copy and the migration.
            copy = _copy_database if current and not applied else None
            copy_path = _apply(config, migrator, migration, copy) or copy_path
            applied.append(migration)
    if applied:
        # Other processes' caches of authentication data must not outlive a schema change.
        bump_generation()
    return Outcome(current, applied[-1].version if applied else current, tuple(applied), copy_path)


def _apply(config, migrator, migration, copy):
    previous = migration.version - 1
    copy_path = None
    try:
        # For SQLite this turns foreign keys off; that only works outside a transaction.
        with migrator.migration_context(atomic=False), db.write_lock_tx():
            if copy:
                copy_path = copy(config, previous)
            migration.upgrade(migrator, database)
            violations = db.foreign_key_violations()
            if violations:
                raise RuntimeError(f"it leaves {len(violations)} rows with broken foreign keys "
                                   f"(first: table {violations[0][0]}, row {violations[0][1]})")
            database.execute_sql(
                f'INSERT INTO "meta" ("key", "value") VALUES ({database.param}, {database.param}) '
                'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value"',
                ("schema_version", str(migration.version)))
    except Exception as exc:
        raise MigrationFailed(f"migration {migration.name} failed ({type(exc).__name__}: {exc}); "
                              f"the database is unchanged at schema version {previous}") from exc
    return copy_path


def _copy_database(config, version):
    """Copy the database (a consistent snapshot) to an owner-only file in pre-migration/."""
    folder = config.data_path / COPY_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffix = db.dump_suffix()
    for n in range(1000):
        path = folder / f"hexvault-v{version}-{stamp}{f'-{n}' if n else ''}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            continue
    db.dump(path)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _refuse_newer(config, current, latest):
    if current <= latest:
        return
    copies = sorted((config.data_path / COPY_DIR).glob(f"hexvault-v{latest}-*"), key=lambda p: p.stat().st_mtime_ns)
    where = (f"restore the pre-upgrade copy at {copies[-1]}" if copies
             else f"restore a backup made by this version (no pre-upgrade copy in {config.data_path / COPY_DIR})")
    raise SchemaTooNew(f"schema version {current} of {config.database_name} is newer than this Hexvault "
                       f"({latest}); upgrade Hexvault or {where}")
