"""``hexvault backup`` and ``hexvault restore``."""

import click

from appliance import orgs, registry_builder
from appliance.cli.group import command, fail, main
from appliance.db import database
from appliance.errors import HexvaultError


@command(main, "backup")
@click.argument("dest", type=click.Path(file_okay=False))
def backup_command(rt, dest):
    """Write a consistent online backup to DEST (a new directory)."""
    from appliance import backup

    manifest = backup.backup(rt, dest)
    click.echo(f"backup written to {dest}: {len(manifest['files'])} files")


@main.command("restore")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.pass_obj
def restore_command(ctx, src):
    """Restore the backup SRC into a new, empty data directory and rebuild its registries."""
    from appliance import backup, check
    from appliance.runtime import open_runtime

    try:
        backup.restore(src, ctx.config)
        rt = open_runtime(ctx.config)
        with database.connection_context():
            for organization in orgs.list_all():
                registry_builder.full(rt, organization)
            problems = check.run(rt)
    except HexvaultError as exc:
        fail(exc.message)
    for problem in problems:
        click.echo(f"{problem.org}: {problem.what}")
    if problems:
        fail(f"restored, but `hexvault check` found {len(problems)} problem(s)")
    click.echo(f"restored {src} into {ctx.config.data_dir}; every registry file verifies")
