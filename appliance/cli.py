"""The ``hexvault`` command: init, serve, and administration of organizations, users and keys.

Every command reads the config from ``--config``/``HEXVAULT_CONFIG`` plus ``HEXVAULT_*``
variables. Failures print one ``error:`` line and exit 1.
"""

import functools
import logging
import os
import sys

import click

from appliance import __version__, accounts, clientsetup, keys, orgs, registry_builder
from appliance.config import describe, load_config
from appliance.db import database
from appliance.errors import HexvaultError
from appliance.models import SigningKey


class Context:
    def __init__(self, config_path):
        self.config_path = config_path
        self._config = None
        self._runtime = None

    @property
    def config(self):
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except HexvaultError as exc:  # a bad file or HEXVAULT_* value: one line, no traceback
                fail(exc.message)
        return self._config

    @property
    def runtime(self):
        if self._runtime is None:
            from appliance.runtime import open_runtime

            self._runtime = open_runtime(self.config)
        return self._runtime


def fail(message):
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def command(group, *args, **kwargs):
    """A subcommand that opens the database and turns HexvaultError into one error line."""

    def decorator(fn):
        @group.command(*args, **kwargs)
        @click.pass_obj
        @functools.wraps(fn)
        def wrapper(ctx, *a, **kw):
            try:
                rt = ctx.runtime
                with database.connection_context():
                    return fn(rt, *a, **kw)
            except HexvaultError as exc:
                details = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
                fail(exc.message + (f" ({details})" if details else ""))

        return wrapper

    return decorator


@click.group()
@click.version_option(__version__, prog_name="hexvault")
@click.option("--config", "config_path", envvar="HEXVAULT_CONFIG", type=click.Path(dir_okay=False),
              help="TOML config file (env HEXVAULT_CONFIG).")
@click.pass_context
def main(click_ctx, config_path):
    """Hexvault: a private Hex package registry for mix and rebar3."""
    click_ctx.obj = Context(config_path)


def _new_key(rt, name, permissions, **owner):
    return keys.create(rt.app_secret, name, [keys.parse_permission(p) for p in permissions], **owner)


@main.command()
@click.option("--admin", "admin_name", default="admin", show_default=True, help="Username of the first admin.")
@click.option("--admin-password", envvar="HEXVAULT_ADMIN_PASSWORD",
              help="Password of the first admin (env HEXVAULT_ADMIN_PASSWORD); generated when absent.")
@click.option("--org", "org_name", default="acme", show_default=True, help="First organization.")
@click.pass_obj
def init(ctx, admin_name, admin_password, org_name):
    """Create the data directory, signing key, first admin, organization and keys."""
    from appliance.runtime import initialize, is_initialized

    config = ctx.config
    if is_initialized(config):
        fail(f"{config.data_dir} is already initialized")
    try:
        initialize(config)
        rt = ctx.runtime
        with database.connection_context():
            generated = admin_password is None
            password = admin_password or accounts.generate_password()
            admin = accounts.create_user(admin_name, password, is_admin=True, rounds=config.bcrypt_rounds)
            org = orgs.create(org_name)
            orgs.add_member(org, admin, "admin")
            registry_builder.ensure_index(rt, org)
            _key, repo_secret = _new_key(rt, f"{org.name}-repository", [f"repository:{org.name}"], organization=org)
            _key, api_secret = _new_key(rt, f"{admin.username}-api", ["api:write"], user=admin)
            signing = SigningKey.current()
    except HexvaultError as exc:
        fail(exc.message)
    click.echo(f"Hexvault initialized in {config.data_dir}\n")
    click.echo(f"Admin user:      {admin_name}")
    if generated:
        click.echo(f"Admin password:  {password}    (shown once; change it with `hexvault user set-password`)")
    click.echo(f"Repository key:  {repo_secret}    (read access to {org.name}; shown once)")
    click.echo(f"API key:         {api_secret}    (publish as {admin_name}; shown once)")
    click.echo(f"Signing key:     {signing.fingerprint}\n")
    setup = clientsetup.for_org(config.external_url, org.name, signing.public_pem, signing.fingerprint,
                                repo_key=repo_secret, api_key=api_secret)
    click.echo(clientsetup.render_text(setup))


@main.command()
@click.option("--host", help="Listen address (setting host).")
@click.option("--port", type=int, help="Listen port (setting port).")
@click.pass_obj
def serve(ctx, host, port):
    """Serve the repository, API and admin UI with waitress."""

    from appliance import create_app, serving

    config = ctx.config.with_updates(**{k: v for k, v in (("host", host), ("port", port)) if v})
    try:
        from appliance.runtime import open_runtime

        rt = open_runtime(config)
        app = create_app(config, rt)
        background = serving.start(rt)
    except HexvaultError as exc:
        fail(exc.message)
    # waitress warns "Task queue depth is N" on every queued request under load; that is
    # normal for a busy appliance and the logging itself would slow it down.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    click.echo(f"Hexvault {__version__} serving on http://{config.host}:{config.port} "
               f"(external URL {config.external_url})", err=True)
    try:
        server = serving.create_server(app, config, host=config.host, port=config.port)
        server.print_listen("Serving on http://{}:{}")
        server.run()
    finally:
        background.stop()


@main.command("show-config")
@click.pass_obj
def show_config(ctx):
    """Print the effective settings."""
    for name, value in describe(ctx.config):
        click.echo(f"{name} = {value!r}")


# -- organizations -------------------------------------------------------------------------------

@main.group()
def org():
    """Organizations (one private repository each)."""


@command(org, "create")
@click.argument("name")
def org_create(rt, name):
    created = orgs.create(name)
    registry_builder.ensure_index(rt, created)
    click.echo(f"created organization {created.name}; repository at {rt.config.external_url}/repos/{created.name}")


@command(org, "list")
def org_list(rt):
    for o in orgs.list_all():
        click.echo(f"{o.name}\t{len(orgs.members(o))} members")


@command(org, "add-member")
@click.argument("org_name")
@click.argument("username")
@click.option("--role", type=click.Choice(["read", "write", "admin"]), default="write", show_default=True)
def org_add_member(rt, org_name, username, role):
    orgs.add_member(orgs.get(org_name), accounts.get_user(username), role)
    click.echo(f"{username} is now {role} in {org_name}")


@command(org, "remove-member")
@click.argument("org_name")
@click.argument("username")
def org_remove_member(rt, org_name, username):
    orgs.remove_member(orgs.get(org_name), accounts.get_user(username))
    click.echo(f"{username} removed from {org_name}")


@command(org, "members")
@click.argument("org_name")
def org_members(rt, org_name):
    for m in orgs.members(orgs.get(org_name)):
        click.echo(f"{m.user.username}\t{m.role}")


@command(org, "client-setup")
@click.argument("org_name")
def org_client_setup(rt, org_name):
    """Print the mix and rebar3 set-up commands for an organization."""
    organization = orgs.get(org_name)
    signing = SigningKey.current()
    click.echo(clientsetup.render_text(clientsetup.for_org(
        rt.config.external_url, organization.name, signing.public_pem, signing.fingerprint)))


# -- users ---------------------------------------------------------------------------------------

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


@command(user, "set-password")
@click.argument("username")
@_password_option
def user_set_password(rt, username, password):
    accounts.set_password(accounts.get_user(username), _read_password(password), rounds=rt.config.bcrypt_rounds)
    click.echo(f"password of {username} changed")


# -- keys ----------------------------------------------------------------------------------------

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
    created, secret = _new_key(rt, name, perms, **_owner(username, org_name))
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


# -- registry ------------------------------------------------------------------------------------

@main.group()
def registry():
    """The signed registry files."""


@command(registry, "rebuild")
@click.argument("org_name", required=False)
def registry_rebuild(rt, org_name):
    """Rebuild and re-sign the registry of one organization, or of all."""
    targets = [orgs.get(org_name)] if org_name else orgs.list_all()
    for organization in targets:
        count = registry_builder.full(rt, organization)
        click.echo(f"{organization.name}: {count} packages")


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


@command(main, "backup")
@click.argument("dest", type=click.Path(file_okay=False))
def backup_command(rt, dest):
    """Write a consistent online backup to DEST (a new directory)."""
    from appliance import backup

    manifest = backup.backup(rt, dest)
    click.echo(f"backup written to {dest}: {len(manifest['files'])} files")


@main.command("restore")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.pass_obj
def restore_command(ctx, src):
    """Restore the backup SRC into a new, empty data directory and rebuild its registries."""
    from appliance import backup, check
    from appliance.runtime import open_runtime

    try:
        backup.restore(src, ctx.config)
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
    click.echo(f"restored {src} into {ctx.config.data_dir}; every registry file verifies")


@command(main, "check")
@click.option("--repair", is_flag=True, help="Rebuild registries that are wrong.")
def check(rt, repair):
    """Verify every stored file against the database and the signing key."""
    from appliance import check as checker

    problems = checker.run(rt)
    for problem in problems:
        click.echo(f"{problem.org}: {problem.what}")
    if problems and repair:
        for name in sorted({p.org for p in problems if p.repairable}):
            registry_builder.full(rt, orgs.get(name))
            click.echo(f"{name}: registry rebuilt")
        problems = checker.run(rt)
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("ok: every registry file verifies and matches the database")


if __name__ == "__main__":
    main(prog_name=os.path.basename(sys.argv[0]))
