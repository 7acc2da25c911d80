"""``hexvault backup`` and ``hexvault restore``."""

import click

from appliance import orgs, registry_builder
from appliance.cli.group import command, fail, main
from appliance.db import database
from appliance.errors import HexvaultError


@command(main, "backup")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--sign", "sign_key_path", envvar="HEXVAULT_BACKUP_KEY", type=click.Path(dir_okay=False),
              help="Sign the manifest with the HMAC key in this file, kept outside the data directory and the "
                   "backups (env HEXVAULT_BACKUP_KEY).")
def backup_command(rt, dest, sign_key_path):
    """Write a consistent online backup to DEST (a new directory)."""
    from appliance import backup

    sign_key = backup.read_sign_key(sign_key_path, rt.config, dest) if sign_key_path else None
    manifest = backup.backup(rt, dest, sign_key)
    click.echo(f"backup written to {dest}: {len(manifest['files'])} files" + (", signed" if sign_key else ""))


@main.command("restore")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option("--verify", "verify_key_path", envvar="HEXVAULT_BACKUP_KEY", type=click.Path(dir_okay=False),
              help="Restore only if the manifest is signed with the HMAC key in this file "
                   "(env HEXVAULT_BACKUP_KEY).")
@click.pass_obj
def restore_command(ctx, src, verify_key_path):
    """Restore the backup SRC into a new, empty data directory and rebuild its registries."""
    from appliance import backup, check
    from appliance.runtime import open_runtime

    try:
        sign_key = backup.read_sign_key(verify_key_path, ctx.config) if verify_key_path else None
        manifest = backup.restore(src, ctx.config, sign_key)
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
    made = f"made {manifest['created']}, " if manifest.get("created") else ""
    signed = "signature verified" if verify_key_path else "signature not checked (no --verify)"
    click.echo(f"restored {src} ({made}{signed}) into {ctx.config.data_dir}; every registry file verifies")
