"""``hexvault audit``: read and export the audit log with the web UI's filters."""

import json

import click

from appliance import audit as audit_log
from appliance.cli.group import command, main


@command(main, "audit")
@click.option("--org", "org_name", help="Only this organization's rows.")
@click.option("--user", "username", help="Only what this user did, or what was done to their account (exact name).")
@click.option("--action", help="Only this action (key.revoke), or a family ending in a dot (key.).")
@click.option("--since", metavar="YYYY-MM-DD", help="From the start of this day (UTC).")
@click.option("--until", metavar="YYYY-MM-DD", help="Up to the end of this day (UTC).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "jsonl"]), default="text", show_default=True,
              help="text: one tab-separated line per row, newest first; csv and jsonl: every row, oldest first.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many rows the text format prints (csv and jsonl print all).")
def audit(rt, org_name, username, action, since, until, fmt, limit):
    """Who did what, when and from where."""
    filters = audit_log.Filters.parse(org_name, username, action, since, until)
    if fmt != "text":
        export = audit_log.export_csv if fmt == "csv" else audit_log.export_jsonl
        for chunk in export(audit_log.iter_entries(**filters.query())):
            click.echo(chunk, nl=False)
        return
    for e in audit_log.entries(**filters.query(), limit=limit):
        details = json.dumps(e.details, sort_keys=True)
        click.echo("\t".join([e.created_at.isoformat(timespec="seconds"), e.actor, e.action, e.organization or "-",
                              e.target or "-", details, e.ip or "-"]))
