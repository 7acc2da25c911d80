"""``hexvault gc``: remove stored blobs nothing references (see appliance/ops/gc.py)."""

import click

from appliance.cli.group import command, main


def describe(report):
    """One line about a gc report, for gc itself and for ``hexvault check``."""
    young = (f"; {report.young} younger than gc_grace_seconds kept (a publish may be storing them)"
             if report.young else "")
    if report.deleted:
        return f"deleted {len(report.orphans)} unreferenced blobs, freed {report.bytes} bytes{young}"
    return f"{len(report.orphans)} unreferenced blobs, {report.bytes} bytes{young}"


@command(main, "gc")
@click.option("--delete", is_flag=True, help="Delete them (without it, only list them).")
def gc_command(rt, delete):
    """List blobs no release, docs upload or mirror record references; --delete removes them."""
    from appliance.ops import gc

    report = gc.collect(rt, delete=delete)
    for orphan in report.orphans:
        click.echo(f"{orphan.key}\t{orphan.size}")
    click.echo(describe(report) + ("" if delete or not report.orphans else
                                   "; dry run, nothing deleted: `hexvault gc --delete` removes them"))
