"""Schema versions and migrations: the runner on real SQLite files, `hexvault migrate`, and
start-up on a database made by the first release (tests/fixtures/v1, see make_v1.py there).

Tests that need migrations of their own write a small migration package into tmp_path and hand
it to the runner (its `package` parameter); the first module of each re-uses the real 0001.
"""

import datetime
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import textwrap
from pathlib import Path

import psycopg
import pytest
import requests
from click.testing import CliRunner

from appliance import db, migrations
from appliance.cli import main
from appliance.config import load_config
from appliance.db import database, init_database
from appliance.errors import MigrationFailed, SchemaTooNew
from appliance.models import ALL_MODELS, AuditLog, Key, Membership, Release, User
from appliance.protocol import registry, signing
from appliance.runtime import initialize, open_runtime
from tests.conftest import make_world
from tests.procserver import ServerProcess

INITIAL = '"""The real first schema."""\nfrom appliance.migrations.m0001_initial import upgrade  # noqa: F401\n'
# Test migrations come after the real ones, whatever their number: a fresh data directory is at LATEST.
LATEST = migrations.latest_version()


def after_real(**test_modules):
    """The real migrations, then ``test_modules`` (name without number -> source) numbered on from LATEST."""
    modules = {m.name: f'"""The real {m.name}."""\nfrom appliance.migrations.{m.name} import upgrade  # noqa: F401\n'
               for m in migrations.discover()}
    for offset, (what, source) in enumerate(test_modules.items(), 1):
        modules[f"m{LATEST + offset:04d}_{what}"] = source
    return modules


def migration_package(tmp_path, monkeypatch, name, **modules):
    """A migration package `name` in tmp_path holding mNNNN modules given as source text."""
    package = tmp_path / "migration_sets" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path / "migration_sets"))
    return name


def normalized_condition(sql):
    """A partial index's WHERE clause without quoting, spacing or one pair of enclosing
    parentheses, which peewee writes and hand-written DDL may not."""
    text = " ".join(sql.replace('"', "").split())
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and i < len(text) - 1:
            return text  # the first parenthesis closes early: not one enclosing pair
    return text[1:-1].strip() if text.startswith("(") else text


def schema(path):
    """Tables with their columns, foreign keys and indexes, in a form that ignores column order
    and DDL spelling, read from SQLite's own catalogue."""
    conn = sqlite3.connect(path)
    try:
        result = {}
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            columns = {r[1]: (r[2].upper(), r[3], r[4], r[5]) for r in conn.execute(f'PRAGMA table_info("{table}")')}
            fks = sorted(r[2:] for r in conn.execute(f'PRAGMA foreign_key_list("{table}")'))
            indexes = {}
            for _seq, index, unique, origin, partial in conn.execute(f'PRAGMA index_list("{table}")'):
                cols = [r[2] for r in conn.execute(f'PRAGMA index_info("{index}")')]
                sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).fetchone()[0]
                where = normalized_condition(sql.split(" WHERE ", 1)[1]) if partial else None
                indexes[index] = (cols, unique, origin, where)
            result[table] = (columns, fks, indexes)
        return result
    finally:
        conn.close()


def counts(path):
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                for t in ("user", "organization", "membership", "key", "package", "release", "requirement",
                          "audit_log", "signing_key")}
    finally:
        conn.close()


def stamped_version(path):
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


def test_migrations_build_the_schema_the_models_declare(config, tmp_path):
    """A new database is built by the migrations; it must be exactly what models.py declares,
    so a model change without a migration (or a migration unlike its model) fails here."""
    config.data_path.mkdir(parents=True)
    init_database(tmp_path / "migrated.db")
    with database.connection_context():
        outcome = migrations.upgrade(config)
    assert outcome.version == migrations.latest_version() and outcome.copy_path is None
    init_database(tmp_path / "declared.db")
    with database.connection_context():
        database.create_tables(ALL_MODELS)
    migrated, declared = schema(tmp_path / "migrated.db"), schema(tmp_path / "declared.db")
    assert migrated.keys() == declared.keys()
    for table in declared:
        assert migrated[table] == declared[table], table


def postgresql_schema(url):
    """Columns, indexes and constraints of a PostgreSQL database, from its catalogue."""
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, character_maximum_length, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public'").fetchall()
        indexes = conn.execute("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'").fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace").fetchall()
    return sorted(columns), sorted(indexes), sorted(constraints)


def test_migrations_build_the_schema_the_models_declare_on_postgresql(config, postgres):
    config.data_path.mkdir(parents=True)
    migrated, declared = postgres.create_database("migrated"), postgres.create_database("declared")
    init_database(migrated, state_dir=config.data_path)
    with database.connection_context():
        outcome = migrations.upgrade(config)
    assert outcome.version == migrations.latest_version()
    init_database(declared, state_dir=config.data_path)
    with database.connection_context():
        database.create_tables(ALL_MODELS)
    db.close_all()
    migrated_schema, declared_schema = postgresql_schema(migrated), postgresql_schema(declared)
    assert migrated_schema[0] and migrated_schema == declared_schema


def test_on_postgresql_a_failing_migration_rolls_back_and_a_pending_one_applies_after_a_pg_dump_copy(
        config, postgres, tmp_path, monkeypatch):
    config = config.with_updates(database_url=postgres.create_database())
    initialize(config)
    runtime = open_runtime(config)
    database.connect(reuse_if_open=True)
    make_world(runtime)
    failing = migration_package(tmp_path, monkeypatch, "pg_failing", **after_real(half_done='''
        """Adds a column and a table, then fails."""
        import peewee
        from playhouse.migrate import migrate

        def upgrade(migrator, database):
            migrate(migrator.add_column("user", "nickname", peewee.CharField(null=True)))
            database.execute_sql('CREATE TABLE "scratch" ("id" INTEGER PRIMARY KEY)')
            raise ValueError("disk on fire")
        '''))
    with pytest.raises(MigrationFailed):
        migrations.upgrade(config, failing)
    assert migrations.schema_version() == LATEST and not database.table_exists("scratch")
    assert "nickname" not in [c.name for c in database.get_columns("user")]

    adding = migration_package(tmp_path, monkeypatch, "pg_adding", **after_real(user_nickname='''
        """Users get a nickname, filled from the username."""
        import peewee
        from playhouse.migrate import migrate

        def upgrade(migrator, database):
            migrate(migrator.add_column("user", "nickname", peewee.CharField(null=True)))
            database.execute_sql('UPDATE "user" SET "nickname" = "username"')
        '''))
    outcome = migrations.upgrade(config, adding)
    assert outcome.version == LATEST + 1 and outcome.copy_path.suffix == ".pgdump"
    assert stat.S_IMODE(os.stat(outcome.copy_path).st_mode) == 0o600
    assert database.execute_sql('SELECT "nickname" FROM "user"').fetchall() == [("admin",)]
    db.close_all()
    # The copy is the database as it was: restorable, one version earlier, without the column.
    restored = postgres.create_database()
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={restored}", str(outcome.copy_path)], check=True)
    with psycopg.connect(restored) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(LATEST),)
        assert conn.execute('SELECT "username" FROM "user"').fetchall() == [("admin",)]
        assert not conn.execute("SELECT 1 FROM information_schema.columns WHERE column_name = 'nickname'").fetchall()


def test_migrations_are_numbered_in_order_with_a_docstring_each():
    found = migrations.discover()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "m0001_initial" and all(m.summary for m in found)


def test_a_misnumbered_migration_package_is_refused(tmp_path, monkeypatch):
    package = migration_package(tmp_path, monkeypatch, "gap", m0001_initial=INITIAL,
                                m0003_skipped='"""Skips 2."""\ndef upgrade(migrator, database):\n    pass\n')
    with pytest.raises(RuntimeError, match="without gaps"):
        migrations.discover(package)


def test_a_failing_migration_rolls_back_and_leaves_the_version(runtime, tmp_path, monkeypatch):
    make_world(runtime)
    package = migration_package(tmp_path, monkeypatch, "failing", **after_real(half_done='''
        """Adds a column and a table, fills them, then fails."""
        import peewee
        from playhouse.migrate import migrate

        def upgrade(migrator, database):
            migrate(migrator.add_column("user", "nickname", peewee.CharField(null=True)))
            database.execute_sql('CREATE TABLE "scratch" ("id" INTEGER PRIMARY KEY)')
            database.execute_sql('UPDATE "user" SET "nickname" = "username"')
            database.execute_sql('DELETE FROM "key"')
            raise ValueError("disk on fire")
        '''))
    before = counts(runtime.config.database_path)
    with pytest.raises(MigrationFailed) as failed:
        migrations.upgrade(runtime.config, package)
    assert failed.value.message == (f"migration m{LATEST + 1:04d}_half_done failed (ValueError: disk on fire); "
                                    f"the database is unchanged at schema version {LATEST}")
    assert migrations.schema_version() == LATEST
    assert "nickname" not in [c.name for c in database.get_columns("user")]
    assert not database.table_exists("scratch")
    assert counts(runtime.config.database_path) == before


def test_pending_migrations_apply_once_after_an_owner_only_copy(runtime, tmp_path, monkeypatch):
    world = make_world(runtime)
    package = migration_package(tmp_path, monkeypatch, "two_more", **after_real(user_nickname='''
        """Users get a nickname, filled from the username."""
        import peewee
        from playhouse.migrate import migrate

        def upgrade(migrator, database):
            migrate(migrator.add_column("user", "nickname", peewee.CharField(null=True)))
            database.execute_sql('UPDATE "user" SET "nickname" = "username"')
        ''', nickname_required='''
        """Nicknames are required (a table rebuild in SQLite)."""
        from playhouse.migrate import migrate

        def upgrade(migrator, database):
            migrate(migrator.add_not_null("user", "nickname"))
        '''))
    before = counts(runtime.config.database_path)
    current, todo = migrations.pending(runtime.config, package)
    assert current == LATEST and [m.name for m in todo] == [
        f"m{LATEST + 1:04d}_user_nickname", f"m{LATEST + 2:04d}_nickname_required"]

    outcome = migrations.upgrade(runtime.config, package)
    assert (outcome.from_version, outcome.version) == (LATEST, LATEST + 2)
    assert [m.summary for m in outcome.applied] == [
        "Users get a nickname, filled from the username.", "Nicknames are required (a table rebuild in SQLite)."]
    assert migrations.schema_version() == LATEST + 2
    assert database.execute_sql('SELECT "nickname" FROM "user" WHERE "username" = ?', ("admin",)).fetchone() == ("admin",)
    # Rebuilding "user" drops the old table: with foreign keys on, SQLite would have deleted the
    # admin's memberships and keys by cascade.
    assert counts(runtime.config.database_path) == before
    assert Membership.select().where(Membership.user == world["admin"].id).count() == 1
    assert Key.select().where(Key.user == world["admin"].id).count() == 1

    copy = outcome.copy_path
    assert copy.parent == runtime.config.data_path / "pre-migration"
    assert re.fullmatch(rf"hexvault-v{LATEST}-\d{{8}}T\d{{6}}Z\.db", copy.name)
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(copy.parent).st_mode) == 0o700
    assert stamped_version(copy) == LATEST and counts(copy) == before
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # no -wal/-journal beside it

    again = migrations.upgrade(runtime.config, package)
    assert again.applied == () and again.copy_path is None and again.version == LATEST + 2
    assert len(list(copy.parent.iterdir())) == 1


def test_the_migrate_lock_is_held_while_a_migration_runs(runtime, tmp_path, monkeypatch):
    package = migration_package(tmp_path, monkeypatch, "probe", **after_real(probe_lock=f'''
        """Records whether another process could take the migrate lock now."""
        import fcntl

        def upgrade(migrator, database):
            with open({str(runtime.config.data_path / "locks" / "migrate.lock")!r}, "a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = 0
                except BlockingIOError:
                    held = 1
            database.execute_sql('CREATE TABLE "probe" ("held" INTEGER)')
            database.execute_sql('INSERT INTO "probe" VALUES (?)', (held,))
        '''))
    migrations.upgrade(runtime.config, package)
    assert database.execute_sql('SELECT "held" FROM "probe"').fetchone() == (1,)


def run_cli(data_dir, *args, database_url=None):
    env = {"HEXVAULT_DATA_DIR": str(data_dir), "HEXVAULT_BCRYPT_ROUNDS": "4", "HEXVAULT_CONFIG": ""}
    if database_url is not None:
        env["HEXVAULT_DATABASE_URL"] = database_url
    return CliRunner().invoke(main, list(args), env=env)


def test_a_database_newer_than_the_code_is_refused_in_one_line(runtime):
    latest = migrations.latest_version()
    with database.atomic():
        database.execute_sql("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(latest + 6),))
    database.close()
    data = runtime.config.data_path
    for args in (["org", "list"], ["migrate"], ["migrate", "--dry-run"], ["serve"]):
        result = run_cli(data, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output == (
            f"error: schema version {latest + 6} of {data / 'hexvault.db'} is newer than this Hexvault ({latest}); "
            f"upgrade Hexvault or restore a backup made by this version (no pre-upgrade copy in {data / 'pre-migration'})\n")
    (data / "pre-migration").mkdir()
    copy = data / "pre-migration" / f"hexvault-v{latest}-20260101T000000Z.db"
    copy.write_bytes(b"")
    result = run_cli(data, "org", "list")
    assert result.exit_code == 1 and result.output.endswith(f"upgrade Hexvault or restore the pre-upgrade copy at {copy}\n")
    with pytest.raises(SchemaTooNew):
        migrations.upgrade(runtime.config)
    assert migrations.schema_version() == latest + 6


def test_migrate_command_reports_up_to_date(runtime):
    database.close()
    data = runtime.config.data_path
    latest = migrations.latest_version()
    for args in (["migrate"], ["migrate", "--dry-run"]):
        result = run_cli(data, *args)
        assert result.exit_code == 0 and result.output == f"schema version {latest}: up to date\n"
    assert not (data / "pre-migration").exists()


def test_migrate_refuses_an_uninitialized_data_dir(tmp_path):
    result = run_cli(tmp_path / "nothing", "migrate")
    assert result.exit_code == 1 and "not initialized" in result.output and "hexvault init" in result.output


# -- a data directory initialized on PostgreSQL, met with another database_url --------------------
# What a second node (or an upgrade) meets when its config names the wrong database, or none.

def initialized_on_postgresql(postgres, tmp_path):
    url = postgres.create_database()
    initialize(load_config(environ={}, data_dir=str(tmp_path / "data"), bcrypt_rounds=4, database_url=url))
    return tmp_path / "data"


def test_migrate_refuses_an_empty_or_unreachable_database_beside_an_initialized_data_dir(postgres, tmp_path):
    """An empty database is a wrong URL: migrating it from version 0 would give the data directory
    a schema without its users and signing keys. An unreachable one is one line, no traceback."""
    data = initialized_on_postgresql(postgres, tmp_path)
    empty = postgres.create_database()
    for args in (["migrate"], ["migrate", "--dry-run"], ["org", "list"]):
        result = run_cli(data, *args, database_url=empty)
        assert result.exit_code == 1, (args, result.output)
        assert result.output == (f"error: database {empty} holds no Hexvault schema, but {data} is initialized; "
                                 "check database_url (or move a database there with `hexvault db copy`)\n")
    with psycopg.connect(empty) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                            ).fetchone() == (0,)
    unreachable = f"postgresql://hexvault:pw-s3cret@/hexvault?host={tmp_path / 'no-server'}&port=5432"
    for args in (["migrate"], ["org", "list"]):
        result = run_cli(data, *args, database_url=unreachable)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith(f"error: cannot reach the database postgresql://hexvault:***@/hexvault"
                                        f"?host={tmp_path / 'no-server'}&port=5432: "), result.output
        assert result.output.count("\n") == 1 and "pw-s3cret" not in result.output


def test_init_refuses_a_data_dir_initialized_on_postgresql_when_database_url_is_missing(postgres, tmp_path):
    """A node sharing the data directory without database_url must not make a SQLite database, a
    new app secret and a new signing key there: every node would lose its sessions and the keys
    its registry files are signed with."""
    data = initialized_on_postgresql(postgres, tmp_path)
    before = {p: p.read_bytes() for p in [data / "secret_key", *(data / "keys").iterdir()]}
    result = run_cli(data, "init", database_url="")
    assert result.exit_code == 1, result.output
    assert result.output == (f"error: {data} is already initialized (it has a secret_key), but its database is not "
                             f"{data / 'hexvault.db'}; set the database_url it was initialized with\n")
    result = run_cli(data, "migrate", database_url="")
    assert result.exit_code == 1 and "set the database_url it was initialized with" in result.output, result.output
    assert "hexvault init" not in result.output  # the advice for an empty directory would overwrite this one
    assert {p: p.read_bytes() for p in [data / "secret_key", *(data / "keys").iterdir()]} == before
    assert not (data / "hexvault.db").exists()


def test_new_databases_are_stamped_with_the_newest_version(runtime):
    assert migrations.schema_version() == migrations.latest_version()
    assert User.select().count() == 0 and Release.select().count() == 0



# -- a database made by the first release --------------------------------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "v1"


def columns_of(path):
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}
    finally:
        conn.close()


def snapshot(path, columns):
    """Every row of the given tables in the given columns, except the schema version stamp."""
    conn = sqlite3.connect(path)
    try:
        return {table: sorted(conn.execute(
                    f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)} FROM "{table}"'
                    + (" WHERE key != 'schema_version'" if table == "meta" else "")).fetchall(), key=repr)
                for table, cols in columns.items()}
    finally:
        conn.close()


def public_key(path):
    conn = sqlite3.connect(path)
    try:
        pem = conn.execute("SELECT public_pem FROM signing_key WHERE retired_at IS NULL").fetchone()[0]
    finally:
        conn.close()
    return signing.load_public_key(pem.encode())


def assert_served_as_before(url, db, facts):
    """The first release's packages, keys and passwords work on the upgraded server."""
    key = facts["keys"]
    http = requests.Session()

    def repo(path, auth):
        headers = {"authorization": auth} if isinstance(auth, str) else {}
        return http.get(f"{url}/repos/acme/{path}", headers=headers, auth=None if isinstance(auth, str) else auth)

    pub = public_key(db)
    names = registry.decode_names(registry.decode_signed(repo("names", key["acme-read"]).content, pub), "acme")
    assert [p["name"] for p in names["packages"]] == ["hello", "world"]
    versions = registry.decode_versions(registry.decode_signed(repo("versions", key["acme-read"]).content, pub), "acme")
    assert versions["packages"][0] == {"name": "hello", "versions": ["0.1.0", "0.2.0"], "retired": [0]}
    hello = registry.decode_package(registry.decode_signed(repo("packages/hello", key["alice-repo"]).content, pub),
                                    "acme", "hello")
    assert [(r["version"], r["retired"]) for r in hello["releases"]] == [
        ("0.1.0", {"reason": "security", "message": "use 0.2.0"}), ("0.2.0", None)]
    tarball = repo("tarballs/hello-0.2.0.tar", key["acme-read"])
    assert tarball.status_code == 200
    assert hashlib.sha256(tarball.content).digest() == hello["releases"][1]["outer_checksum"]
    assert repo("docs/hello-0.2.0.tar.gz", key["acme-read"]).status_code == 200
    assert repo("names", key["old-ci"]).status_code == 401  # revoked stays revoked
    assert repo("names", ("alice", facts["passwords"]["alice"])).status_code == 200
    assert repo("names", ("bob", facts["passwords"]["bob"])).status_code == 401  # disabled stays disabled
    me = http.get(f"{url}/api/users/me", headers={"authorization": key["admin-write"], "accept": "application/json"})
    assert me.status_code == 200 and me.json()["username"] == "admin"


@pytest.mark.parametrize("via", ["migrate", "serve"])
def test_a_first_release_database_upgrades_with_nothing_lost(tmp_path, via):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    facts = json.loads(FIXTURE.with_suffix(".json").read_text())
    db = data / "hexvault.db"
    assert stamped_version(db) == 1
    columns = columns_of(db)
    before = snapshot(db, columns)
    # Renamed on purpose (m0007): the first release audited revoking a key as key.remove.
    upgraded = dict(before, audit_log=sorted((tuple("key.revoke" if v == "key.remove" else v for v in row)
                                              for row in before["audit_log"]), key=repr))
    latest = migrations.latest_version()
    pending = latest - 1

    if via == "migrate":
        dry = run_cli(data, "migrate", "--dry-run")
        assert dry.exit_code == 0 and stamped_version(db) == 1
        assert dry.output.count("pending m") == pending
        assert dry.output.endswith(f"{pending} migration(s) pending; run `hexvault migrate`\n" if pending
                                   else "schema version 1: up to date\n")
        migrated = run_cli(data, "migrate")
        assert migrated.exit_code == 0, migrated.output
        assert migrated.output.count("applied m") == pending
        assert migrated.output.endswith(f"schema version {latest}: up to date\n")
        assert run_cli(data, "migrate").output == f"schema version {latest}: up to date\n"
    server = ServerProcess(data).start()  # serve migrates before it listens
    try:
        assert stamped_version(db) == latest
        assert snapshot(db, columns) == upgraded
        copies = list((data / "pre-migration").glob("*")) if pending else []
        assert len(copies) == (1 if pending else 0)
        for copy in copies:
            assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
            assert stamped_version(copy) == 1 and snapshot(copy, columns) == before
        assert_served_as_before(server.url, db, facts)
    finally:
        log = server.stop()
    if via == "serve":
        assert log.count("applied schema migration m") == pending
    checked = run_cli(data, "check")
    assert checked.exit_code == 0 and checked.output.startswith("ok"), checked.output


# -- the data each migration carries over ------------------------------------------------------

@pytest.fixture
def first_release(tmp_path):
    """The config of a copy of tests/fixtures/v1 (schema version 1) with its database bound and
    connected, for tests that put rows in an old database before migrating it."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    config = load_config(environ={}, data_dir=str(data), bcrypt_rounds=4, port=8000)
    init_database(config.database_path)
    database.connect(reuse_if_open=True)
    yield config
    if not database.is_closed():
        database.close()


def test_live_key_names_renames_the_duplicates_racing_rotations_left(first_release):
    """m0003: an older database may hold several live keys of one name (issue 14.5); the newest
    keeps it, the others are renamed and keep working, and the audit log says so."""
    database.execute_sql(
        'INSERT INTO "key" ("name", "organization_id", "secret_first", "secret_second", "permissions", "created_at") '
        'SELECT "name", "organization_id", ?, "secret_second", "permissions", "created_at" FROM "key" '
        'WHERE "name" = ?', ("f" * 32, "acme-read"))
    [older, newer] = [k.id for k in Key.select().where(Key.name == "acme-read").order_by(Key.id)]
    migrations.upgrade(first_release)
    assert Key.get_by_id(newer).name == "acme-read"
    assert Key.get_by_id(older).name == f"acme-read-duplicate-{older}" and Key.get_by_id(older).is_active()
    [entry] = AuditLog.select().where(AuditLog.action == "key.rename")
    assert (entry.actor, entry.organization, entry.target) == ("system", "acme", f"acme-read-duplicate-{older}")
    assert entry.details["from"] == "acme-read" and isinstance(entry.created_at, datetime.datetime)


def test_user_sessions_drops_the_old_session_counters(first_release):
    """m0005: sessions move to the user_session table; the first release's per-user counters in
    meta mean nothing any more."""
    database.execute_sql("INSERT INTO meta (key, value) VALUES ('sessions:1', '3')")
    migrations.upgrade(first_release)
    assert database.execute_sql("SELECT key FROM meta WHERE key LIKE 'sessions:%'").fetchall() == []
    assert database.execute_sql("SELECT value FROM meta WHERE key = 'default_organization'").fetchone() == ("acme",)


def test_audit_action_names_renames_key_remove_to_key_revoke(first_release):
    """m0007: the UI's Revoke is audited as key.revoke; rows of older releases are renamed."""
    database.execute_sql("INSERT INTO audit_log (created_at, actor, action, target, details) "
                         "VALUES ('2026-01-01 00:00:00', 'admin', 'key.remove', 'old-ci', '{}')")
    migrations.upgrade(first_release)
    actions = [r[0] for r in database.execute_sql("SELECT action FROM audit_log WHERE target = 'old-ci'")]
    assert "key.revoke" in actions and "key.remove" not in actions
