"""The ``hexvault`` click group and what every subcommand shares: the lazily loaded config and
runtime, the one-line ``error:`` exit, and the ``command`` decorator that opens the database."""

import functools
import sys

import click

from appliance import db
from appliance.config import find_config_file, load_config
from appliance.db import database
from appliance.dbbackends import driver_error
from appliance.errors import HexvaultError
from appliance.version import __version__


class Context:
    def __init__(self, config_path):
        self.config_path = config_path
        self._config = None
        self._runtime = None

    @property
    def config(self):
        if self._config is None:
            try:
                self._config = load_config(self.config_path or find_config_file())
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


def fail_if_unreachable(config, exc):
    """Exit with one line when ``exc`` says PostgreSQL cannot be reached: what libpq said,
    without the password; return for any other error."""
    if db.unavailable(exc) is not None:
        reason = " ".join(str(driver_error(exc)).split())
        fail(f"cannot reach the database {db.without_password(config.database_url)}: {reason}")


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
            except Exception as exc:
                fail_if_unreachable(ctx.config, exc)
                raise

        return wrapper

    return decorator


@click.group()
@click.version_option(__version__, prog_name="hexvault")
@click.option("--config", "config_path", envvar="HEXVAULT_CONFIG", type=click.Path(dir_okay=False),
              help="TOML config file (env HEXVAULT_CONFIG); without either, the nearest hexvault.toml in "
                   "this directory or a parent.")
@click.pass_context
def main(click_ctx, config_path):
    """Hexvault: a private Hex package registry for mix and rebar3."""
    click_ctx.obj = Context(config_path)
