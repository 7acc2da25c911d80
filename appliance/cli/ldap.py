"""``hexvault ldap ...``: the company directory (appliance/identity/ldap.py)."""

import click

from appliance.cli.group import command, fail, main
from appliance.identity import sync as directory_sync


@main.group()
def ldap():
    """The company directory (LDAP / Active Directory)."""


@command(ldap, "sync")
def ldap_sync(rt):
    """Disable directory users who left it or every mapped group (keys revoked, sessions ended);
    update the others' memberships."""
    if rt.directory is None:
        fail("no directory configured (set ldap_urls)")
    report = directory_sync.sync(rt.directory)
    for username, reason in report.disabled:
        click.echo(f"disabled {username}: {reason}")
    click.echo(f"checked {report.checked} directory users, disabled {len(report.disabled)}, "
               f"revoked {report.keys_revoked} keys")


@command(ldap, "check")
@click.argument("username")
def ldap_check(rt, username):
    """Look USERNAME up in the directory as a login would (no password): DN, email, groups, roles."""
    from appliance.identity import roles_for_groups

    if rt.directory is None:
        fail("no directory configured (set ldap_urls)")
    found = rt.directory.find(username)
    if found is None:
        fail(f"{username} is not in the directory (or matches more than one entry)")
    group_dns = rt.directory.groups(found)
    click.echo(f"dn\t{found.subject}\nemail\t{found.email or '-'}\nname\t{found.full_name or '-'}")
    for dn in group_dns:
        click.echo(f"group\t{dn}")
    for org, role in sorted(roles_for_groups(rt.directory.group_roles, group_dns).items()):
        click.echo(f"role\t{org}:{role}")
