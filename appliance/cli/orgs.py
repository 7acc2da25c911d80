"""``hexvault org ...``: organizations and their members."""

import click

from appliance import accounts, clientsetup, orgs, registry_builder
from appliance.cli.group import command, main
from appliance.models import SigningKey


@main.group()
def org():
    """Organizations (one private repository each)."""


@command(org, "create")
@click.argument("name")
def org_create(rt, name):
    """Create organization NAME with its own private repository at /repos/NAME."""
    created = orgs.create(name)
    registry_builder.ensure_index(rt, created)
    click.echo(f"created organization {created.name}; repository at {rt.config.external_url}/repos/{created.name}")


@command(org, "list")
def org_list(rt):
    """List the organizations and how many members each has."""
    for o in orgs.list_all():
        click.echo(f"{o.name}\t{len(orgs.members(o))} members")


@command(org, "add-member")
@click.argument("org_name")
@click.argument("username")
@click.option("--role", type=click.Choice(["read", "write", "admin"]), default="write", show_default=True,
              help="read: fetch packages; write: also publish; admin: also manage members and keys.")
def org_add_member(rt, org_name, username, role):
    """Give USERNAME a role in ORG_NAME (read: fetch; write: also publish; admin: also manage)."""
    orgs.add_member(orgs.get(org_name), accounts.get_user(username), role)
    click.echo(f"{username} is now {role} in {org_name}")


@command(org, "remove-member")
@click.argument("org_name")
@click.argument("username")
def org_remove_member(rt, org_name, username):
    """Take USERNAME out of ORG_NAME (their keys stop reading its repository)."""
    orgs.remove_member(orgs.get(org_name), accounts.get_user(username))
    click.echo(f"{username} removed from {org_name}")


@command(org, "members")
@click.argument("org_name")
def org_members(rt, org_name):
    """List the members of ORG_NAME with their roles."""
    for m in orgs.members(orgs.get(org_name)):
        click.echo(f"{m.user.username}\t{m.role}")


@command(org, "client-setup")
@click.argument("org_name")
def org_client_setup(rt, org_name):
    """Print the mix and rebar3 set-up commands for an organization."""
    organization = orgs.get(org_name)
    signing = SigningKey.current()
    click.echo(clientsetup.render_text(clientsetup.for_org(
        rt.config.external_url, organization.name, signing.public_pem, signing.fingerprint,
        ca=clientsetup.company_ca(rt.config))))


@command(org, "delete")
@click.argument("org_name")
@click.option("--confirm", "confirm", metavar="NAME",
              help="The organization's name again: required when it still holds packages, which are deleted too.")
def org_delete(rt, org_name, confirm):
    """Delete an organization with its members, keys and webhooks (and packages, with --confirm)."""
    organization = orgs.get(org_name)
    orgs.delete(organization, confirm=confirm)
    click.echo(f"deleted organization {organization.name}")
