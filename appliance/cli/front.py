"""The TLS front: ``hexvault front config`` writes the nginx site, ``hexvault front self-signed``
makes a local CA and server certificate. install.sh --tls-cert/--tls-self-signed runs both."""

import os
from urllib.parse import urlsplit

import click

from appliance import front
from appliance.cli.group import fail, main
from appliance.errors import HexvaultError


@main.group("front")
def front_group():
    """The TLS front (Debian's nginx) before Hexvault."""


@front_group.command("config")
@click.option("--cert", required=True, help="Certificate chain (PEM) nginx presents.")
@click.option("--key", required=True, help="Its private key (PEM), readable by nginx's master (root).")
@click.option("--server-name", help="Host name nginx answers for (default: base_url's host).")
@click.option("--https-listen", default="443", show_default=True, help="nginx listen address for HTTPS.")
@click.option("--http-listen", default="80", show_default=True, help="nginx listen address for plain HTTP.")
@click.option("--upstream", multiple=True,
              help="Hexvault's address as host:port (default: the host and port settings); repeat it for "
                   "every node of several sharing one database and data directory.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the site here instead of printing it.")
@click.option("--standalone", type=click.Path(file_okay=False),
              help="Write the site and a whole nginx.conf for a hand-run nginx into this directory.")
@click.pass_obj
def front_config(ctx, cert, key, server_name, https_listen, http_listen, upstream, output, standalone):
    """Print (or write) the nginx site for this Hexvault's settings."""
    config = ctx.config
    try:
        site = front.render_site(config, cert=os.path.abspath(cert), key=os.path.abspath(key),
                                 server_name=server_name or urlsplit(config.external_url).hostname,
                                 https_listen=https_listen, http_listen=http_listen, upstream=upstream)
    except HexvaultError as exc:
        fail(exc.message)
    if standalone:
        path = front.write_standalone(standalone, site)
        click.echo(f"wrote {path}; run: nginx -c {path} -p {os.path.abspath(standalone)} -e stderr", err=True)
        return
    if not output:
        click.echo(site, nl=False)
        return
    tmp = output + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(site)
    os.replace(tmp, output)  # nginx -s reload never reads half a file
    click.echo(f"wrote {output}", err=True)


@front_group.command("self-signed")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
              help="Where the CA and the server certificate go (an existing CA there is kept).")
@click.option("--host", "hosts", multiple=True,
              help="Host name or IP address the certificate is for (repeatable; default: base_url's host).")
@click.pass_obj
def front_self_signed(ctx, directory, hosts):
    """Make a local CA (once) and a new server certificate signed by it."""
    from appliance.front import selfsigned

    hosts = list(hosts) or [urlsplit(ctx.config.external_url).hostname]
    files = selfsigned.ensure(directory, hosts)
    click.echo(f"CA certificate:     {files.ca_cert}")
    click.echo(f"CA SHA-256:         {files.ca_fingerprint}")
    click.echo(f"server certificate: {files.cert} (for {', '.join(hosts)})")
    click.echo(f"server key:         {files.key}")
