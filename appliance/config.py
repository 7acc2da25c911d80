"""Hexvault settings: one table, one file, ``HEXVAULT_*`` environment variables.

Precedence, lowest first: the default in ``SETTINGS``, the TOML config file, then
``HEXVAULT_<NAME>`` environment variables. An unknown key or a value that does not parse stops
start-up with the setting's name. The ``hexvault`` command finds the file with
``find_config_file``: ``--config``, else ``HEXVAULT_CONFIG`` (set but empty: no file), else
``hexvault.toml`` in the current directory or its nearest parent holding one (the file
``install.sh --dev`` writes into the checkout). ``load_config`` itself never searches, so an
application built by ``create_app()`` reads only what it is told.

To add a setting: add one ``Setting`` row below (name, default, parser, help), read it as
``config.<name>`` where it is needed, and document it in README.md's Configuration section: a
line at its default in the example hexvault.toml and a row in the table (tests/test_config.py
loads the example and checks both).
"""

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
import urllib.parse
from pathlib import Path

from appliance.errors import ConfigError

MiB = 1024 * 1024


def _bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _trusted_proxy(value):
    """true/false, or the one address whose forwarding headers are believed."""
    try:
        return _bool(value)
    except ValueError:
        pass
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"expected true, false or the proxy's IP address, got {value!r}") from None


def _int(value):
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    return int(value)


def _float(value):
    if isinstance(value, bool):
        raise ValueError("expected a number")
    return float(value)


def _size_or_auto(value):
    """A byte count, or "auto" (None) for the default rule of the setting that uses it."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    number = _int(value)
    if number < 0:
        raise ValueError("expected a number of bytes or \"auto\"")
    return number


def _positive_int(value):
    number = _int(value)
    if number < 1:
        raise ValueError("expected a positive integer")
    return number


def _database_url(value):
    text = _str(value)
    if text and not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected empty (SQLite in data_dir) or a postgresql:// URL")
    return text


def _str(value):
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _base_url(value):
    """Empty (http://HOST:PORT) or an absolute http(s) URL: clients are told this URL, and one
    without a scheme would be read as a path."""
    value = _str(value).strip()
    if not value:
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an absolute URL such as https://hex.corp.example, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError("expected a URL without ? or #")
    return value


def _log_format(value):
    value = _str(value).strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"expected \"text\" or \"json\", got {value!r}")
    return value


def _networks(value):
    """A list of networks (TOML array, or comma-separated in an environment variable) as a tuple
    of normalized CIDR strings."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("expected a list of networks such as [\"127.0.0.1/32\", \"10.0.0.0/8\"]")
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected a network such as \"10.0.0.0/8\", got {item!r}")
        if item.strip():
            try:
                networks.append(str(ipaddress.ip_network(item.strip())))
            except ValueError as exc:  # host bits set, or not an address at all
                raise ValueError(f"{item.strip()!r} is not a network ({exc})") from None
    return tuple(networks)


def _sha256_hex(value):
    value = _str(value).strip().lower()
    if value and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("expected the SHA-256 of the token as 64 hexadecimal digits")
    return value


def _strings(value):
    """A list of strings (TOML array, or comma-separated in an environment variable)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected a list of strings")
    return tuple(i.strip() for i in items if i.strip())


def _ldap_urls(value):
    urls = _strings(value)
    for url in urls:
        if not re.fullmatch(r"ldaps?://[^/\s]+/?", url):
            raise ValueError(f"{url!r} is not an ldap://HOST[:PORT] or ldaps://HOST[:PORT] URL")
    return urls


def _group_roles(value):
    """{group DN: "org:role" or a list of them} (a TOML table, or JSON in an environment variable)."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, dict):
        raise ValueError('expected a table such as {"cn=devs,ou=groups,dc=corp" = "acme:write"}')
    for group, grants in value.items():
        for grant in ([grants] if isinstance(grants, str) else grants if isinstance(grants, list) else [None]):
            org, _, role = grant.partition(":") if isinstance(grant, str) else ("", "", "")
            if not org or role not in ("read", "write", "admin"):
                raise ValueError(f"group {group!r}: expected \"ORG:read\", \"ORG:write\" or \"ORG:admin\", "
                                 f"got {grants!r}")
    # A tuple of (group, (grant, ...)) pairs: Config stays hashable.
    return tuple((group, (grants,) if isinstance(grants, str) else tuple(grants)) for group, grants in value.items())


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: object
    parse: object
    help: str
    secret: bool = False


SETTINGS = (
    Setting("data_dir", "/var/lib/hexvault", _str, "Directory holding the database, blobs, signing keys and import folder."),
    Setting("host", "127.0.0.1", _str, "Address `hexvault serve` listens on."),
    Setting("port", 8000, _int, "Port `hexvault serve` listens on."),
    Setting("base_url", "", _base_url, "External URL clients use (e.g. http://hex.corp:8000); defaults to http://HOST:PORT."),
    Setting("connection_limit", 1000, _positive_int,
            "Open client connections served at once; when all are taken, the longest idle one is closed "
            "for a new one, so idle or slow clients never lock others out."),
    Setting("channel_timeout", 15, _positive_int,
            "Seconds a client connection may stay idle (keep-alive, or a stalled request) before it is closed."),
    Setting("busy_timeout", 5000, _positive_int,
            "Milliseconds a write waits for another writer's database lock before answering 503 with "
            "Retry-After (reads never wait)."),
    Setting("min_free_bytes", None, _size_or_auto,
            "Free space kept on the data directory's disk: below it publishes, docs, imports and backups "
            "are refused with 507 (reads go on); \"auto\" = the larger of 1 GiB and 5% of the disk, 0 = off."),
    Setting("threads", 8, _int, "Worker threads of each waitress process."),
    Setting("workers", 1, _positive_int,
            "waitress processes sharing the listening socket, supervised by `hexvault serve` (one per core)."),
    Setting("database_url", "", _database_url,
            "Empty for SQLite in data_dir, or a postgresql://USER@HOST/DB URL (psycopg 3 connection string).",
            secret=True),
    Setting("read_cache_size", 32 * MiB, _int,
            "Memory for recently served small registry files and tarballs, in bytes (0 turns it off)."),
    Setting("default_organization", "", _str,
            "Organization that receives API calls without /repos/ORG (and /api/repos/hexpm); defaults to the one made by init."),
    Setting("max_tarball_size", 16 * MiB, _int, "Largest package or docs tarball accepted, in bytes (hex.pm: 16 MiB)."),
    Setting("max_uncompressed_size", 128 * MiB, _int, "Largest uncompressed package contents or docs, in bytes (hex.pm: 128 MiB)."),
    Setting("bcrypt_rounds", 12, _int, "bcrypt cost for passwords; tests lower it."),
    Setting("secure_cookies", False, _bool, "Mark session cookies Secure; turn on when served over HTTPS."),
    Setting("trusted_proxy", False, _trusted_proxy,
            "Take the client address from the last X-Forwarded-For hop: true believes whoever connects (when "
            "every request comes through your own proxy, e.g. Hexvault on 127.0.0.1 behind the TLS front), or "
            "the proxy's IP address, so only requests from it are believed (nodes the front reaches over a "
            "network)."),
    Setting("log_level", "INFO", _str, "Logging level: DEBUG, INFO, WARNING or ERROR."),
    Setting("log_format", "text", _log_format,
            "\"text\" for people, \"json\" for log shippers: one JSON object per line."),
    Setting("access_log", False, _bool, "Log one line per request (method, path, status, ms); never credentials."),
    Setting("metrics_allow", ("127.0.0.1/32", "::1/128"), _networks,
            "Networks that may read /metrics without the metrics token."),
    Setting("metrics_token_sha256", "", _sha256_hex,
            "SHA-256 (hex) of a token that also opens /metrics (Authorization: Bearer TOKEN); empty: none."),
    Setting("mirror_requires_key", False, _bool,
            "Require a valid key (any organization's) to read /mirror/hexpm; off by default, as it holds only "
            "public packages and mix sends no key to a plain HEX_MIRROR."),
    Setting("mirror_public_key", "", _str,
            "PEM file of the key hex.pm mirror bundles must be signed with; empty means hex.pm's own key."),
    Setting("tls_ca_file", "", _str,
            "PEM file of the CA that signed the TLS front's certificate, when clients do not already trust it: "
            "served at /ca.pem and shown with its fingerprint in the client set-up (install.sh --tls-self-signed "
            "sets it)."),
    Setting("gc_grace_seconds", 3600, _int,
            "`hexvault gc` leaves unreferenced blobs younger than this alone (a publish in flight stores its "
            "tarball before it commits), in seconds."),
    Setting("pending_build_sweep", 10.0, _float,
            "Seconds between looks, by one process among all workers and nodes, for registry builds a stopped "
            "process left unfinished; found twice in a row, they are finished."),
    Setting("webhook_timeout", 10.0, _float,
            "Seconds a webhook receiver gets to accept the connection, and again to answer, before the attempt "
            "counts as failed."),
    Setting("webhook_retry_seconds", 10.0, _float, "Delay before the first retry of a failed webhook delivery; "
            "it doubles with every further attempt."),
    Setting("webhook_retry_max_seconds", 3600.0, _float, "Longest delay between two webhook delivery attempts."),
    Setting("webhook_max_attempts", 15, _int,
            "Attempts before a webhook delivery is marked failed (the admin UI can redeliver it)."),
    Setting("webhook_workers", 2, _int, "Threads of `hexvault serve` sending webhook deliveries."),
    Setting("ldap_urls", (), _ldap_urls,
            "LDAP / Active Directory servers, tried in this order (failover): ldap://HOST:PORT (with StartTLS) or "
            "ldaps://HOST:PORT. Empty: no directory logins."),
    Setting("ldap_start_tls", True, _bool, "Upgrade ldap:// connections with StartTLS (refused if the server cannot)."),
    Setting("ldap_ca_file", "", _str, "PEM file of the CA that signed the directory's certificate; empty: the system's CAs."),
    Setting("ldap_timeout", 5.0, _float, "Seconds to wait for one directory server before trying the next."),
    Setting("ldap_bind_dn", "", _str, "DN of the service account that searches the directory."),
    Setting("ldap_bind_password_file", "", _str, "File holding the service account's password (one line)."),
    Setting("ldap_base_dn", "", _str, "Where people are searched, e.g. ou=people,dc=corp,dc=example."),
    Setting("ldap_user_filter", "(uid={username})", _str,
            "Filter finding a person by the name typed at login ({username}, escaped); AD: (sAMAccountName={username})."),
    Setting("ldap_email_attribute", "mail", _str, "Attribute holding the email address."),
    Setting("ldap_name_attribute", "displayName", _str, "Attribute holding the display name."),
    Setting("ldap_group_base_dn", "", _str, "Where groups are searched; empty: ldap_base_dn."),
    Setting("ldap_group_filter", "(member={dn})", _str,
            "Filter finding a person's groups ({dn}, escaped); AD with nested groups: "
            "(member:1.2.840.113556.1.4.1941:={dn})."),
    Setting("ldap_group_roles", (), _group_roles,
            "Directory group DN -> organization role, e.g. {\"cn=elixir-devs,ou=groups,dc=corp\" = \"acme:write\"}; "
            "a directory user must be in one of these groups to log in."),
    Setting("oidc_issuer", "", _str,
            "OpenID Connect issuer URL for single sign-on to the web UI (discovery at "
            "ISSUER/.well-known/openid-configuration); empty: no SSO."),
    Setting("oidc_client_id", "", _str, "The client id Hexvault is registered under at the OpenID Provider."),
    Setting("oidc_client_secret_file", "", _str,
            "File holding the client secret (confidential client); empty: a public client (PKCE only)."),
    Setting("oidc_ca_file", "", _str, "PEM file of the CA to trust for the provider's HTTPS; empty: the system's."),
    Setting("oidc_display_name", "your company account", _str, "Shown on the login page as \"Sign in with ...\"."),
    Setting("oidc_username_claim", "preferred_username", _str,
            "ID token claim that names the user (an e-mail's domain is dropped); falls back to email."),
    Setting("oidc_groups_claim", "groups", _str, "ID token claim listing the user's groups."),
    Setting("oidc_group_roles", (), _group_roles,
            "Group (from the groups claim) -> organization role, like ldap_group_roles; SSO users must be in one "
            "of these groups when any is given."),
    Setting("sso_only", False, _bool,
            "With SSO configured, only appliance administrators may log in to the web UI with a password."),
    Setting("require_2fa_for_admins", False, _bool,
            "Local admins must set up two-factor authentication (TOTP) before the admin UI lets them do anything else, "
            "and cannot use their password for HTTP Basic auth."),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: str
    host: str
    port: int
    base_url: str
    threads: int
    connection_limit: int
    channel_timeout: int
    busy_timeout: int
    min_free_bytes: object  # int, or None for "auto"
    workers: int
    database_url: str
    read_cache_size: int
    default_organization: str
    max_tarball_size: int
    max_uncompressed_size: int
    bcrypt_rounds: int
    secure_cookies: bool
    trusted_proxy: bool | str  # True, False or the proxy's address
    log_level: str
    log_format: str
    access_log: bool
    metrics_allow: tuple
    metrics_token_sha256: str
    mirror_requires_key: bool
    mirror_public_key: str
    tls_ca_file: str
    gc_grace_seconds: int
    pending_build_sweep: float
    webhook_timeout: float
    webhook_retry_seconds: float
    webhook_retry_max_seconds: float
    webhook_max_attempts: int
    webhook_workers: int
    ldap_urls: tuple
    ldap_start_tls: bool
    ldap_ca_file: str
    ldap_timeout: float
    ldap_bind_dn: str
    ldap_bind_password_file: str
    ldap_base_dn: str
    ldap_user_filter: str
    ldap_email_attribute: str
    ldap_name_attribute: str
    ldap_group_base_dn: str
    ldap_group_filter: str
    ldap_group_roles: tuple
    oidc_issuer: str
    oidc_client_id: str
    oidc_client_secret_file: str
    oidc_ca_file: str
    oidc_display_name: str
    oidc_username_claim: str
    oidc_groups_claim: str
    oidc_group_roles: tuple
    sso_only: bool
    require_2fa_for_admins: bool
    source: str = ""

    @property
    def data_path(self):
        return Path(self.data_dir)

    @property
    def database_path(self):
        return self.data_path / "hexvault.db"

    @property
    def database_target(self):
        """What appliance.db.init_database binds: the PostgreSQL URL, else the SQLite file."""
        return self.database_url or self.database_path

    @property
    def database_name(self):
        """The database for messages: the SQLite path, or the URL without its password."""
        if not self.database_url:
            return str(self.database_path)
        from appliance.db import without_password

        return without_password(self.database_url)

    @property
    def blob_path(self):
        return self.data_path / "blobs"

    @property
    def keys_path(self):
        return self.data_path / "keys"

    @property
    def import_path(self):
        return self.data_path / "import"

    @property
    def external_url(self):
        """URL printed in client set-up commands, without a trailing slash."""
        if self.base_url:
            return self.base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def with_updates(self, **changes):
        return dataclasses.replace(self, **changes)


def _parse(setting, value, origin):
    try:
        return setting.parse(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {setting.name} from {origin}: {exc}") from None


CONFIG_FILE_NAME = "hexvault.toml"


def find_config_file(environ=None, cwd=None):
    """The config file a ``hexvault`` command reads when no ``--config`` is given, or None.

    ``HEXVAULT_CONFIG`` names it (set but empty: no file at all); else the nearest
    ``hexvault.toml`` in ``cwd`` or a parent directory, as pytest and ruff find theirs, so a
    command run anywhere in a development checkout uses the port and data directory
    ``install.sh --dev`` wrote there.
    """
    environ = os.environ if environ is None else environ
    if "HEXVAULT_CONFIG" in environ:
        return environ["HEXVAULT_CONFIG"] or None
    here = Path(cwd or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE_NAME).is_file():
            return str(folder / CONFIG_FILE_NAME)
    return None


def load_config(path=None, environ=None, **overrides):
    """Build the effective Config from defaults, the file at ``path`` and the environment."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("HEXVAULT_CONFIG") or None
    values = {s.name: s.default for s in SETTINGS}
    if path:
        try:
            with open(path, "rb") as fh:
                from_file = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, value in from_file.items():
            setting = SETTINGS_BY_NAME.get(key)
            if setting is None:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _parse(setting, value, path)
    for setting in SETTINGS:
        env_name = "HEXVAULT_" + setting.name.upper()
        if env_name in environ:
            values[setting.name] = _parse(setting, environ[env_name], env_name)
    for key, value in overrides.items():
        if value is None:
            continue
        setting = SETTINGS_BY_NAME.get(key)
        if setting is None:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _parse(setting, value, "command line")
    values["data_dir"] = os.path.abspath(values["data_dir"])
    return Config(source=str(path or ""), **values)


def describe(config):
    """(name, value) pairs of the effective settings, for `hexvault show-config`; an unset
    base_url shows the URL actually used, a default rule shows as "auto"."""
    def shown(setting):
        if setting.name == "base_url":
            return config.external_url
        if setting.name == "database_url":
            return config.database_url and config.database_name
        value = getattr(config, setting.name)
        return "auto" if value is None else value

    return [(s.name, shown(s)) for s in SETTINGS]
