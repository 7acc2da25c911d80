"""``hexvault db copy --to postgresql://...``: move an appliance's database to PostgreSQL, and
prove the copy.

Run it with the server stopped (nothing may write the source meanwhile), into an empty
database. It builds the schema there with the same migrations, copies every table in
foreign-key order through the models (so booleans, timestamps and JSON are converted by the same
fields the application uses) keeping every id, then moves each id sequence past the highest id.
The proof: every table has as many rows on both sides, and every organization's registry files,
rebuilt from the new database and signed with the same key, are byte-for-byte the files the
blob store holds (signing and gzip are deterministic). Only then is the new ``database_url``
worth putting into the config.
"""

import dataclasses

import peewee

from appliance import db, migrations, registry_builder
from appliance.db import database
from appliance.errors import HexvaultError
from appliance.models import ALL_MODELS, Meta, Organization, Package
from appliance.protocol.names import is_package_name

BATCH = 500


class CopyFailed(HexvaultError):
    """The target is not empty, or the copy does not match its source."""

    status = 500


@dataclasses.dataclass(frozen=True)
class CopyReport:
    rows: dict  # table name -> rows copied (equal on both sides)
    registry_files: int  # registry files rebuilt from the target and found byte-identical


def _tables():
    return peewee.sort_models(ALL_MODELS)


def _counts():
    return {model._meta.table_name: model.select().count() for model in _tables()}


def copy(rt, url):
    """Copy the bound (source) database of ``rt`` to the empty PostgreSQL database ``url``."""
    config = rt.config
    if not db.is_postgresql_url(url):
        raise CopyFailed("--to must be a postgresql:// URL")
    with database.connection_context():
        unknown = set(database.get_tables()) - {m._meta.table_name for m in _tables()}
        if unknown:
            raise CopyFailed(f"the source has tables this Hexvault does not know: {', '.join(sorted(unknown))}")
        source_counts = _counts()
        data = {model: list(model.select().order_by(*model._meta.get_primary_keys()).dicts())
                for model in _tables()}
    with db.bound(url, config.data_path):
        with database.connection_context():
            if database.get_tables():
                raise CopyFailed(f"database {db.without_password(url)} is not empty; copy only into a new database")
            migrations.upgrade(config)
            with db.write_lock_tx():
                Meta.delete().execute()  # the version stamp comes from the source, with the rest
                for model, rows in data.items():
                    for start in range(0, len(rows), BATCH):
                        model.insert_many(rows[start:start + BATCH]).execute()
                    _advance_sequence(model)
            target_counts = _counts()
            if target_counts != source_counts:
                differ = [t for t in source_counts if source_counts[t] != target_counts.get(t)]
                raise CopyFailed(f"row counts differ after the copy in {', '.join(differ)}")
            files = _registry_files_identical(rt)
    return CopyReport(rows=source_counts, registry_files=files)


def _advance_sequence(model):
    pk = model._meta.primary_key
    if isinstance(pk, peewee.AutoField):
        table, column = model._meta.table_name, pk.column_name
        database.execute_sql(
            f'SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(MAX("{column}"), 1), MAX("{column}") IS NOT NULL) '
            f'FROM "{table}"', (f'"{table}"', column))


def _registry_files_identical(rt):
    """Rebuild every registry file from the bound database; each must equal the stored one."""
    _row, private_key = rt.signing_key()
    checked = 0
    for org in Organization.select():
        names, versions = registry_builder.build_index(org, private_key)
        expected = {registry_builder.names_key(org.name): names, registry_builder.versions_key(org.name): versions}
        for (name,) in Package.select(Package.name).where(Package.organization == org.id).tuples():
            if not is_package_name(name):
                continue  # never served (see registry_builder._write_package)
            data = registry_builder.build_package(org, name, private_key)
            if data is not None:
                expected[registry_builder.package_key(org.name, name)] = data
        for key, data in expected.items():
            try:
                stored = rt.store.get(key)
            except KeyError:
                stored = None
            if stored != data:
                raise CopyFailed(f"{key} rebuilt from the copy differs from the stored file; "
                                 "run `hexvault check` on the source, then copy into a new database")
            checked += 1
    return checked
