"""``hexvault key ...``: API and repository keys."""

import re

import click

from appliance import accounts, keys, orgs, permissions
from appliance.cli.group import command, fail, main
from appliance.errors import NotFound
from appliance.permissions import Principal

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def new_key(rt, name, permissions, **owner):
    return keys.create(rt.app_secret, name, [keys.parse_permission(p) for p in permissions], **owner)


@main.group()
def key():
    """API and repository keys."""


def _owner(username, org_name):
    if bool(username) == bool(org_name):
        fail("give exactly one of --user or --org")
    return {"user": accounts.get_user(username)} if username else {"organization": orgs.get(org_name)}


@command(key, "create")
@click.argument("name")
@click.option("--user", "username", help="Owner: a user.")
@click.option("--org", "org_name", help="Owner: an organization.")
@click.option("--permission", "-p", "perms", multiple=True, required=True,
              help="api, api:read, api:write, repository:ORG, repositories, docs:ORG (repeatable).")
def key_create(rt, name, username, org_name, perms):
    """Create key NAME for a user or an organization and print its secret (once)."""
    owner = _owner(username, org_name)
    if "user" in owner:  # a user's key never reads more than the user: refused now, not at first use
        permissions.grantable(Principal(user=owner["user"]), [keys.parse_permission(p) for p in perms],
                              orgs.role_of, orgs.get)
    created, secret = new_key(rt, name, perms, **owner)
    click.echo(f"key {created.name}: {secret}")
    click.echo("The secret is shown only this once.", err=True)


@command(key, "list")
@click.option("--user", "username", help="Owner: a user.")
@click.option("--org", "org_name", help="Owner: an organization.")
def key_list(rt, username, org_name):
    """List the keys of a user or an organization, revoked ones too."""
    for k in keys.list_for(**_owner(username, org_name)):
        perms = ",".join(d if not r else f"{d}:{r}" for d, r in k.permissions)
        state = "revoked" if not k.is_active() else "active"
        used = k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "never"
        click.echo(f"{k.name}\t{perms}\t{state}\tlast used {used}")


def _live_key(name, owner):
    """The owner's live key NAME; a revoked one is named as such instead of "no key"."""
    try:
        return keys.get(name, **owner)
    except NotFound:
        if any(k.name == name for k in keys.list_for(**owner)):
            fail(f"key {name} is already revoked")
        raise


@command(key, "revoke")
@click.argument("name")
@click.option("--user", "username", help="Owner: a user.")
@click.option("--org", "org_name", help="Owner: an organization.")
def key_revoke(rt, name, username, org_name):
    """Revoke key NAME: it is refused from the next request on."""
    keys.revoke(_live_key(name, _owner(username, org_name)))
    click.echo(f"key {name} revoked")


def parse_duration(text):
    """'24h', '30m', '7d', '90s' or '0' -> seconds."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([smhd]?)\s*", text or "")
    if match is None:
        raise click.BadParameter("use a number with s, m, h or d, e.g. 24h or 0")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


@command(key, "rotate")
@click.argument("name")
@click.option("--user", "username", help="Owner: a user.")
@click.option("--org", "org_name", help="Owner: an organization.")
@click.option("--grace", default="24h", show_default=True, metavar="DURATION",
              help="How long the old secret keeps working (e.g. 1h, 7d; 0 stops it now).")
def key_rotate(rt, name, username, org_name, grace):
    """Give key NAME a new secret (printed once); the old one stops after the grace period."""
    seconds = parse_duration(grace)
    old = _live_key(name, _owner(username, org_name))
    new, secret = keys.rotate(rt.app_secret, old, grace_seconds=seconds)
    click.echo(f"key {new.name} rotated: {secret}")
    retired = keys.find_by_id(old.id)
    if retired.expires_at:
        click.echo(f"The old secret works until {retired.expires_at.isoformat(timespec='minutes')} UTC "
                   f"(listed as {retired.name}).", err=True)
    else:
        click.echo("The old secret has stopped working.", err=True)
    click.echo("The new secret is shown only this once.", err=True)
