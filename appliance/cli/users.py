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


def _email_option(fn):
    return click.option("--email", help="E-mail the Hex API shows (`mix hex.owner list`, whoami).")(fn)


def _full_name_option(fn):
    return click.option("--full-name", help="Full name the Hex API shows (`rebar3 hex user whoami`).")(fn)


@command(user, "create")
@click.argument("username")
@_password_option
@_email_option
@_full_name_option
@click.option("--admin", is_flag=True, help="Appliance administrator (all organizations).")
def user_create(rt, username, password, email, full_name, admin):
    """Create user USERNAME (the password is prompted for unless given)."""
    created = accounts.create_user(username, _read_password(password), email=email, full_name=full_name,
                                   is_admin=admin, rounds=rt.config.bcrypt_rounds)
    click.echo(f"created user {created.username}" + (" (admin)" if admin else ""))


@command(user, "update")
@click.argument("username")
@_email_option
@_full_name_option
def user_update(rt, username, email, full_name):
    """Set a user's e-mail and/or full name ("" clears one)."""
    changes = {k: v for k, v in (("email", email), ("full_name", full_name)) if v is not None}
    if not changes:
        fail("nothing to change: give --email and/or --full-name")
    updated = accounts.update_profile(accounts.get_user(username), **changes)
    click.echo(f"{updated.username}\t{updated.email or '-'}\t{updated.full_name or '-'}")


@command(user, "list")
def user_list(rt):
    """List the users: name, e-mail and flags (admin, disabled)."""
    for u in accounts.list_users():
        flags = ",".join(f for f, on in (("admin", u.is_admin), ("disabled", u.disabled_at)) if on)
        click.echo(f"{u.username}\t{u.email or '-'}\t{u.full_name or '-'}\t{flags or '-'}")


@command(user, "disable")
@click.argument("username")
def user_disable(rt, username):
    """Refuse the user's logins, sessions and keys (until enabled again); nothing is deleted."""
    accounts.set_disabled(accounts.get_user(username), True)
    click.echo(f"{username} disabled: logins, sessions and keys refused")


@command(user, "enable")
@click.argument("username")
def user_enable(rt, username):
    """Let a disabled user log in and use their keys again (their memberships were kept)."""
    accounts.set_disabled(accounts.get_user(username), False)
    click.echo(f"{username} enabled")


@command(user, "set-password")
@click.argument("username")
@_password_option
def user_set_password(rt, username, password):
    """Set USERNAME's password; every web session of theirs ends."""
    accounts.set_password(accounts.get_user(username), _read_password(password), rounds=rt.config.bcrypt_rounds)
    click.echo(f"password of {username} changed")


@command(user, "unlock")
@click.argument("username")
def user_unlock(rt, username):
    """Let USERNAME log in again from every address at once (failed logins age out by themselves
    after 15 minutes)."""
    cleared = loginlimit.unlock(accounts.get_user(username).username)
    click.echo(f"unlocked {username} ({cleared} failed logins forgotten)")


@command(user, "reset-2fa")
@click.argument("username")
def user_reset_2fa(rt, username):
    """Turn off USERNAME's two-factor authentication (a lost phone, no recovery codes left)."""
    from appliance.identity import totp

    totp.reset(accounts.get_user(username))
    click.echo(f"two-factor authentication of {username} is off: they log in with the password and set it up again")


@command(user, "delete")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def user_delete(rt, username, yes):
    """Delete USERNAME for good: their keys are revoked, sessions and memberships removed; the
    audit log keeps their rows. (To keep the account for later, use `user disable`.)"""
    target = accounts.get_user(username)
    if not yes:
        click.confirm(f"Delete {target.username} and revoke every key of theirs?", abort=True)
    accounts.delete_user(target)
    click.echo(f"deleted user {target.username}; their keys no longer work")
