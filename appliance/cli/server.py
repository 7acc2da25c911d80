"""Set-up and serving: ``hexvault init``, ``serve`` and ``show-config``."""

import logging
import os
import shutil

import click

from appliance import accounts, clientsetup, db, orgs, registry_builder
from appliance.cli.group import fail, fail_if_unreachable, main
from appliance.cli.keys import new_key
from appliance.config import describe
from appliance.db import database
from appliance.errors import HexvaultError
from appliance.models import SigningKey
from appliance.version import __version__


@main.command()
@click.option("--admin", "admin_name", default="admin", show_default=True, help="Username of the first admin.")
@click.option("--admin-password", envvar="HEXVAULT_ADMIN_PASSWORD",
              help="Password of the first admin (env HEXVAULT_ADMIN_PASSWORD); generated when absent.")
@click.option("--admin-email", help="E-mail of the first admin (what `mix hex.owner list` shows).")
@click.option("--admin-full-name", help="Full name of the first admin (`rebar3 hex user whoami` shows it).")
@click.option("--org", "org_name", default="acme", show_default=True, help="First organization.")
@click.pass_obj
def init(ctx, admin_name, admin_password, admin_email, admin_full_name, org_name):
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
            admin = accounts.create_user(admin_name, password, email=admin_email, full_name=admin_full_name,
                                         is_admin=True, rounds=config.bcrypt_rounds)
            org = orgs.create(org_name)
            orgs.add_member(org, admin, "admin")
            registry_builder.ensure_index(rt, org)
            _key, repo_secret = new_key(rt, f"{org.name}-repository", [f"repository:{org.name}"], organization=org)
            _key, api_secret = new_key(rt, f"{admin.username}-api", ["api:write"], user=admin)
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
                                repo_key=repo_secret, api_key=api_secret, ca=clientsetup.company_ca(config))
    click.echo(clientsetup.render_text(setup))


@main.command()
@click.option("--host", help="Listen address (setting host).")
@click.option("--port", type=int, help="Listen port (setting port).")
@click.option("--workers", type=click.IntRange(min=1), help="waitress processes (setting workers).")
@click.pass_obj
def serve(ctx, host, port, workers):
    """Serve the repository, API and admin UI with waitress."""

    from appliance import create_app, serving
    from appliance.workers import Supervisor, listen

    changes = (("host", host), ("port", port), ("workers", workers))
    config = ctx.config.with_updates(**{k: v for k, v in changes if v})
    # Before anything imports prometheus_client.
    given_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" in os.environ
    metrics_dir = serving.prepare_metrics(config, workers=config.workers)
    try:
        from appliance.runtime import open_runtime

        rt = open_runtime(config)
        serving.prepare(rt)
        # Built before the socket listens (a connection accepted early would wait for it) and
        # before any fork, so every worker inherits it.
        app = create_app(config, rt)
        sock = listen(config.host, config.port)
    except HexvaultError as exc:
        fail(exc.message)
    except Exception as exc:
        fail_if_unreachable(config, exc)
        if not isinstance(exc, OSError):
            raise
        # the port is taken, or the address is not this machine's: one line
        fail(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; stop what uses it "
             "or choose another port (--port, or port in the config file)")
    # waitress warns "Task queue depth is N" on every queued request under load; that is
    # normal for a busy appliance and the logging itself would slow it down.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # A log record, not a print: with log_format = "json" every line a shipper reads is JSON.
    logging.getLogger("hexvault").info("Hexvault %s serving on http://%s:%s (external URL %s, %d worker(s))",
                                       __version__, config.host, config.port, config.external_url, config.workers)

    def run_worker():
        background = serving.start(rt)
        try:
            serving.create_server(app, config, sockets=[sock]).run()
        finally:
            background.stop()
            db.close_all()

    if config.workers == 1:
        run_worker()
        return
    # No database connection may cross the fork: every worker would talk on the same session,
    # mixing their queries' results and their transactions (and so the write lock).
    db.close_all()
    try:
        Supervisor(config.workers, run_worker).run()
    finally:
        if metrics_dir and not given_metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@main.command("show-config")
@click.pass_obj
def show_config(ctx):
    """Print the config file read and the effective settings."""
    source = ctx.config.source
    click.echo(f"# config file: {source}" if source else "# config file: none (defaults and HEXVAULT_* variables)")
    for name, value in describe(ctx.config):
        click.echo(f"{name} = {value!r}")


