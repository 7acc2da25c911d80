"""``hexvault user ...``: user accounts."""

import sys

import click

from appliance import accounts, loginlimit
from appliance.cli.group import command, fail, main


@main.group()
def user():
    """User accounts."""


def _password_option(fn):
    return click.option("--password", envvar="HEXVAULT_PASSWORD", default=None,
                        help="Password (env HEXVAULT_PASSWORD); prompted for when absent.")(fn)


def _read_password(password):
    if password:
        return password
    if not sys.stdin.isatty():
        fail("no password given: use --password or HEXVAULT_PASSWORD")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@command(user, "create")
@click.argument("username")
@_password_option
@click.option("--email")
@click.option("--admin", is_flag=True, help="Appliance administrator (all organizations).")
def user_create(rt, username, password, email, admin):
    created = accounts.create_user(username, _read_password(password), email=email, is_admin=admin,
                                   rounds=rt.config.bcrypt_rounds)
    click.echo(f"created user {created.username}" + (" (admin)" if admin else ""))


@command(user, "list")
def user_list(rt):
    for u in accounts.list_users():
        flags = ",".join(f for f, on in (("admin", u.is_admin), ("disabled", u.disabled_at)) if on)
        click.echo(f"{u.username}\t{u.email or '-'}\t{flags or '-'}")


@command(user, "disable")
@click.argument("username")
def user_disable(rt, username):
    """Refuse the user's logins, sessions and keys (until enabled again); nothing is deleted."""
    accounts.set_disabled(accounts.get_user(username), True)
    click.echo(f"{username} disabled: logins, sessions and keys refused")


@command(user, "enable")
@click.argument("username")
def user_enable(rt, username):
    accounts.set_disabled(accounts.get_user(username), False)
    click.echo(f"{username} enabled")


@command(user, "set-password")
@click.argument("username")
@_password_option
def user_set_password(rt, username, password):
    accounts.set_password(accounts.get_user(username), _read_password(password), rounds=rt.config.bcrypt_rounds)
    click.echo(f"password of {username} changed")


@command(user, "unlock")
@click.argument("username")
def user_unlock(rt, username):
    """Let USERNAME log in again from every address at once (failed logins age out by themselves
    after 15 minutes)."""
    cleared = loginlimit.unlock(accounts.get_user(username).username)
    click.echo(f"unlocked {username} ({cleared} failed logins forgotten)")
