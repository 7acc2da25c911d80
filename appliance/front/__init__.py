"""The TLS front: Debian's nginx before Hexvault, and the one function that writes its site.

``render_site`` fills ``nginx-site.conf.in``; `hexvault front config` and install.sh's
``--tls-cert``/``--tls-self-signed`` both call it (through the CLI), so there is one template.
What the site does (the template's comments say why):

* HTTPS with TLS 1.2 and 1.3 only, HSTS; plain HTTP redirects browsers and refuses client paths;
* request bodies buffered by nginx up to the tarball limit; X-Forwarded-For/-Proto for
  ``trusted_proxy``;
* authorized tarballs and docs leave through ``X-Accel-Redirect``: Hexvault checks the key and
  answers with an empty body and the blob's path under ``ACCEL_LOCATION``; nginx streams it;
* the open hex.pm mirror's files (when ``mirror_requires_key`` is off) are served by nginx
  straight from the data directory, with the same ETags as Hexvault's (storage.static_etag);
  a file nginx does not find falls back to Hexvault, which gives its usual answer.
"""

from importlib import resources

from appliance.errors import ConfigError
from appliance.packages import REGISTRY_CACHE, TARBALL_CACHE

# Sent by the front on every proxied request; only then does Hexvault answer by path.
ACCEL_REQUEST_HEADER = "X-Hexvault-Front"
ACCEL_REQUEST_ENVIRON = "HTTP_X_HEXVAULT_FRONT"
ACCEL_REQUEST_VALUE = "accel"
ACCEL_LOCATION = "/_hexvault_blobs/"

_MIRROR_LOCATIONS = """
    # The open hex.pm mirror (mirror_requires_key = false): public files, straight from disk.
    location ~ "^/mirror/hexpm/(names|versions|packages/[a-z][a-z0-9_]{1,99})$" {
        alias @BLOB_DIR@/mirror/hexpm/$1;
        types { }
        default_type application/octet-stream;
        add_header Cache-Control "@REGISTRY_CACHE@";
        add_header Strict-Transport-Security "max-age=31536000" always;
        error_page 404 = @hexvault;
    }
    location ~ "^/mirror/hexpm/(tarballs/[a-z][a-z0-9_]{1,99}-[0-9A-Za-z.+-]{1,128}\\.tar)$" {
        alias @BLOB_DIR@/mirror/hexpm/$1;
        types { }
        default_type application/octet-stream;
        add_header Cache-Control "@TARBALL_CACHE@";
        add_header Strict-Transport-Security "max-age=31536000" always;
        error_page 404 = @hexvault;
    }
    location @hexvault {
        proxy_pass http://hexvault_app;
    }
"""


_STANDALONE = """# A whole nginx configuration around the site, for an nginx run by hand (install.sh --dev
# --tls-self-signed, the tests): in the foreground, everything under @DIR@.
daemon off;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log @DIR@/access.log;
    sendfile on;
    client_body_temp_path @DIR@/tmp/body;
    proxy_temp_path @DIR@/tmp/proxy;
    fastcgi_temp_path @DIR@/tmp/fastcgi;
    uwsgi_temp_path @DIR@/tmp/uwsgi;
    scgi_temp_path @DIR@/tmp/scgi;
    include @DIR@/site.conf;
}
"""


def write_standalone(directory, site, user=None):
    """Write ``site`` and a whole nginx.conf around it into ``directory``; returns nginx.conf's
    path (run ``nginx -c PATH -p DIRECTORY -e stderr``). ``user`` names the workers' user when
    the master runs as root."""
    import os

    directory = os.path.abspath(directory)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(directory, "tmp", sub), exist_ok=True)
    with open(os.path.join(directory, "site.conf"), "w") as fh:
        fh.write(site)
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w") as fh:
        fh.write((f"user {user};\n" if user else "") + _fill(_STANDALONE, {"DIR": directory}))
    return path


def _fill(template, values):
    for name, value in values.items():
        template = template.replace(f"@{name}@", str(value))
    return template


def _own_address(config):
    """Hexvault's own host:port as nginx on this machine reaches it (a wildcard listen address
    is reached on loopback; an IPv6 address is bracketed)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(config.host, config.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{config.port}"


def render_site(config, *, cert, key, server_name, https_listen="443", http_listen="80", upstream=None):
    """The nginx site for ``config``'s data directory and limits. ``cert``/``key`` are PEM paths
    nginx reads; ``upstream`` is one host:port or a list of them (several nodes), by default
    Hexvault's own host:port."""
    if not config.external_url.startswith("https://"):
        raise ConfigError(f"base_url must be an https:// URL behind the TLS front (it is {config.external_url})")
    upstreams = [upstream] if isinstance(upstream, str) else list(upstream or ())
    upstreams = upstreams or [_own_address(config)]
    for label, value in (("certificate", cert), ("key", key), ("server name", server_name),
                         *(("upstream", u) for u in upstreams)):
        if not value or any(c in str(value) for c in " ;{}'\"\n\t$"):
            raise ConfigError(f"the {label} {value!r} cannot be written into an nginx site")
    values = {
        # A node that refuses connections is left out for a few seconds; requests go to the
        # others (nginx retries a request on the next node only if it could not send it).
        "UPSTREAM": "\n    ".join(f"server {u} max_fails=1 fail_timeout=5s;" for u in upstreams),
        "HTTP_LISTEN": http_listen,
        "HTTPS_LISTEN": https_listen,
        "SERVER_NAME": server_name,
        "BASE_URL": config.external_url,
        "CERT": cert,
        "KEY": key,
        "MAX_BODY": config.max_tarball_size + 1024 * 1024,
        "ACCEL_HEADER": ACCEL_REQUEST_HEADER,
        "ACCEL_VALUE": ACCEL_REQUEST_VALUE,
        "ACCEL_LOCATION": ACCEL_LOCATION,
        "BLOB_DIR": config.blob_path.resolve(),
        "REGISTRY_CACHE": REGISTRY_CACHE,
        "TARBALL_CACHE": TARBALL_CACHE,
    }
    mirror = "" if config.mirror_requires_key else _fill(_MIRROR_LOCATIONS, values)
    template = resources.files(__package__).joinpath("nginx-site.conf.in").read_text()
    return _fill(template, dict(values, MIRROR=mirror))
