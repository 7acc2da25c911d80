"""``hexvault migrate``: bring the database schema to this Hexvault's version; ``hexvault db copy``.

Start-up does the same on its own (every command that opens the runtime migrates first); this
command lets an upgrade (install.sh) migrate before the service restarts, and shows what is
pending with ``--dry-run``.
"""

import click

from appliance import migrations
from appliance.cli.group import command, fail, fail_if_unreachable, main
from appliance.db import database
from appliance.errors import HexvaultError


@main.command("migrate")
@click.option("--dry-run", is_flag=True, help="List the pending migrations without applying them.")
@click.pass_obj
def migrate(ctx, dry_run):
    """Apply pending schema migrations (a copy of the database is kept first)."""
    from appliance.runtime import check_schema, open_database

    try:
        open_database(ctx.config)
        with database.connection_context():
            # Before anything is applied: migrating an empty database from version 0 would give
            # an initialized data directory a schema without its signing keys and users.
            check_schema(ctx.config)
            if dry_run:
                current, todo = migrations.pending(ctx.config)
            else:
                outcome = migrations.upgrade(ctx.config)
                current, todo = outcome.version, outcome.applied
    except HexvaultError as exc:
        fail(exc.message)
    except Exception as exc:
        fail_if_unreachable(ctx.config, exc)
        raise
    if dry_run:
        for migration in todo:
            click.echo(f"pending {migration.name}: {migration.summary}")
        click.echo(f"schema version {current}: " + (
            f"{len(todo)} migration(s) pending; run `hexvault migrate`" if todo else "up to date"))
        return
    if outcome.copy_path:
        click.echo(f"copied the database (schema version {outcome.from_version}) to {outcome.copy_path}")
    for migration in todo:
        click.echo(f"applied {migration.name}: {migration.summary}")
    click.echo(f"schema version {current}: up to date")


@main.group("db")
def db_group():
    """Move the database between backends."""


@command(db_group, "copy")
@click.option("--to", "url", required=True, help="An empty PostgreSQL database: postgresql://USER:PASSWORD@HOST/DB")
def db_copy(rt, url):
    """Copy the database into an empty PostgreSQL database and prove the copy (row counts per
    table, registry files rebuilt from it byte-identical). Stop the server first."""
    from appliance import dbcopy
    from appliance.db import without_password

    report = dbcopy.copy(rt, url)
    for table, rows in report.rows.items():
        click.echo(f"{table}: {rows} rows copied, {rows} in the target")
    click.echo(f"{report.registry_files} registry files rebuilt from the copy are byte-identical to the stored ones")
    click.echo(f"done: set database_url = \"{without_password(url)}\" (with its password) in the config, "
               "then start Hexvault")
