"""``hexvault key ...``: API and repository keys."""

import click

from appliance import accounts, keys, orgs
from appliance.cli.group import command, fail, main


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
    created, secret = new_key(rt, name, perms, **_owner(username, org_name))
    click.echo(f"key {created.name}: {secret}")
    click.echo("The secret is shown only this once.", err=True)


@command(key, "list")
@click.option("--user", "username")
@click.option("--org", "org_name")
def key_list(rt, username, org_name):
    for k in keys.list_for(**_owner(username, org_name)):
        perms = ",".join(d if not r else f"{d}:{r}" for d, r in k.permissions)
        state = "revoked" if not k.is_active() else "active"
        used = k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "never"
        click.echo(f"{k.name}\t{perms}\t{state}\tlast used {used}")


@command(key, "revoke")
@click.argument("name")
@click.option("--user", "username")
@click.option("--org", "org_name")
def key_revoke(rt, name, username, org_name):
    keys.revoke(keys.get(name, **_owner(username, org_name)))
    click.echo(f"key {name} revoked")
