"""``hexvault health``: ask the running server whether it is alive or ready (systemd, scripts)."""

import json
import time
import urllib.error
import urllib.request

import click

from appliance.cli.group import main

POLL_SECONDS = 0.5


def _local_url(config, path):
    """The server's own address from this machine (a wildcard listen address is not one)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.host, config.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.port}{path}"


def _ask(url):
    """(HTTP status or None, decoded JSON body or an error text)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:  # /readyz answers 503 with a body worth printing
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc))


@main.command()
@click.option("--ready", is_flag=True, help="Check /readyz (database, storage, disk, registry) instead of /healthz.")
@click.option("--wait", "wait_seconds", type=float, default=0, show_default=True,
              help="Keep asking for up to this many seconds until the answer is good.")
@click.pass_obj
def health(ctx, ready, wait_seconds):
    """Ask the server on this machine (host and port settings) whether it is alive, or ready.
    Exits 0 when it is (ready includes "degraded"), 1 otherwise."""
    url = _local_url(ctx.config, "/readyz" if ready else "/healthz")
    deadline = time.monotonic() + wait_seconds
    while True:
        status, body = _ask(url)
        if status == 200 or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    if isinstance(body, dict):
        click.echo(f"{url}: {body.get('status')}")
        for name, check in body.get("checks", {}).items():
            click.echo(f"  {name}: {check.get('status')}" + (f" ({check['message']})" if check.get("message") else ""))
    else:
        click.echo(f"{url}: {body}", err=True)
    raise SystemExit(0 if status == 200 else 1)
