"""The registry and its contents: ``hexvault registry rebuild``, ``import`` and ``check``."""

import sys

import click

from appliance import orgs, registry_builder
from appliance.cli.group import command, fail, main
from appliance.errors import HexvaultError
from appliance.protocol.names import shown


@main.group()
def registry():
    """The signed registry files."""


@command(registry, "rebuild")
@click.argument("org_name", required=False)
def registry_rebuild(rt, org_name):
    """Rebuild and re-sign the registry of one organization, or of all."""
    targets = [orgs.get(org_name)] if org_name else orgs.list_all()
    failed = 0
    for organization in targets:
        count, problems = registry_builder.full(rt, organization)
        click.echo(f"{organization.name}: {count} packages")
        for package, reason in problems.items():
            click.echo(f"{organization.name}: cannot build packages/{shown(package)}: {reason}", err=True)
        failed += len(problems)
    if failed:
        fail(f"{failed} package(s) could not be built; `hexvault check --repair` quarantines them")


@command(main, "import")
@click.argument("org_name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def import_command(rt, org_name, paths):
    """Publish package tarballs into ORG_NAME, or import hex.pm mirror bundles with ORG_NAME
    `hexpm` (what the drop folder does, without moving the files)."""
    from pathlib import Path

    from appliance import audit, importer, mirror

    failures = 0
    for path in paths:
        actor = audit.AuditContext(via="import", key_name=f"hexvault import {Path(path).name}")
        try:
            if org_name == importer.MIRROR_DIR:
                message = mirror.import_bundle(rt, path, actor=actor)
            else:
                message = importer.publish_path(rt, org_name, path, actor)
        except HexvaultError as exc:
            failures += 1
            message = f"failed: {importer.describe_error(exc)}"
        click.echo(f"{path}: {message}")
    if failures:
        fail(f"{failures} of {len(paths)} file(s) not imported")


@command(main, "check")
@click.option("--repair", is_flag=True, help="Rebuild registries that are wrong; quarantine packages no registry file can be built for.")
def check(rt, repair):
    """Verify every stored file against the database and the signing key."""
    from appliance import check as checker
    from appliance.cli import gc as gc_cli
    from appliance.ops import gc

    problems = checker.run(rt)
    for problem in problems:
        click.echo(f"{problem.org}: {problem.what}")
    if problems and repair:
        from appliance import quarantine

        for name in sorted({p.org for p in problems if p.repairable}):
            organization = orgs.get(name)
            for package, reason, folder in quarantine.quarantine_unservable(rt, organization):
                click.echo(f"{name}: quarantined {shown(package)} ({reason})" + (f" into {folder}" if folder else ""))
            registry_builder.full(rt, organization)
            click.echo(f"{name}: registry rebuilt")
        problems = checker.run(rt)
    # Unreferenced blobs are garbage, not damage: reported, never a failure (see `hexvault gc`).
    garbage = gc.collect(rt)
    if garbage.orphans or garbage.young:
        click.echo(f"note: {gc_cli.describe(garbage)}; `hexvault gc --delete` removes the old ones")
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("ok: every registry file verifies and matches the database")
