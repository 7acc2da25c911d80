"""Hexvault settings: one table, one file, ``HEXVAULT_*`` environment variables.

Precedence, lowest first: the default in ``SETTINGS``, the TOML config file, then
``HEXVAULT_<NAME>`` environment variables. An unknown key or a value that does not parse stops
start-up with the setting's name. The ``hexvault`` command finds the file with
``find_config_file``: ``--config``, else ``HEXVAULT_CONFIG`` (set but empty: no file), else
``hexvault.toml`` in the current directory or its nearest parent holding one (the file
``install.sh --dev`` writes into the checkout). ``load_config`` itself never searches, so an
application built by ``create_app()`` reads only what it is told.

To add a setting: add one ``Setting`` row below (name, default, a parser from
appliance/setting_values.py, help), read it as ``config.<name>`` where it is needed, and document
it in README.md's Configuration section: a line at its default in the example hexvault.toml and
a row in the table (tests/test_config.py loads the example and checks both).
"""

import dataclasses
import os
import tomllib
from pathlib import Path

from appliance import setting_values as parse
from appliance.errors import ConfigError

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: object
    parse: object
    help: str
    secret: bool = False


SETTINGS = (
    Setting("data_dir", "/var/lib/hexvault", parse.string, "Directory holding the database, blobs, signing keys and import folder."),
    Setting("host", "127.0.0.1", parse.string, "Address `hexvault serve` listens on."),
    Setting("port", 8000, parse.integer, "Port `hexvault serve` listens on."),
    Setting("base_url", "", parse.base_url, "External URL clients use (e.g. http://hex.corp:8000); defaults to http://HOST:PORT."),
    Setting("connection_limit", 1000, parse.positive_integer,
            "Open client connections served at once; when all are taken, the longest idle one is closed "
            "for a new one, so idle or slow clients never lock others out."),
    Setting("channel_timeout", 15, parse.positive_integer,
            "Seconds a client connection may stay idle (keep-alive, or a stalled request) before it is closed."),
    Setting("busy_timeout", 5000, parse.positive_integer,
            "Milliseconds a write waits for another writer's database lock before answering 503 with "
            "Retry-After (reads never wait)."),
    Setting("min_free_bytes", None, parse.size_or_auto,
            "Free space kept on the data directory's disk: below it publishes, docs, imports and backups "
            "are refused with 507 (reads go on); \"auto\" = the larger of 1 GiB and 5% of the disk, 0 = off."),
    Setting("threads", 8, parse.integer, "Worker threads of each waitress process."),
    Setting("workers", 1, parse.positive_integer,
            "waitress processes sharing the listening socket, supervised by `hexvault serve` (one per core)."),
    Setting("database_url", "", parse.database_url,
            "Empty for SQLite in data_dir, or a postgresql://USER@HOST/DB URL (psycopg 3 connection string).",
            secret=True),
    Setting("read_cache_size", 32 * MiB, parse.integer,
            "Memory for recently served small registry files and tarballs, in bytes (0 turns it off)."),
    Setting("default_organization", "", parse.string,
            "Organization that receives API calls without /repos/ORG (and /api/repos/hexpm); defaults to the one made by init."),
    Setting("max_tarball_size", 16 * MiB, parse.integer, "Largest package or docs tarball accepted, in bytes (hex.pm: 16 MiB)."),
    Setting("max_uncompressed_size", 128 * MiB, parse.integer, "Largest uncompressed package contents or docs, in bytes (hex.pm: 128 MiB)."),
    Setting("bcrypt_rounds", 12, parse.integer, "bcrypt cost for passwords; tests lower it."),
    Setting("secure_cookies", False, parse.boolean, "Mark session cookies Secure; turn on when served over HTTPS."),
    Setting("trusted_proxy", False, parse.proxy_trust,
            "Take the client address from the last X-Forwarded-For hop: true believes whoever connects (when "
            "every request comes through your own proxy, e.g. Hexvault on 127.0.0.1 behind the TLS front), or "
            "the proxy's IP address, so only requests from it are believed (nodes the front reaches over a "
            "network)."),
    Setting("log_level", "INFO", parse.string, "Logging level: DEBUG, INFO, WARNING or ERROR."),
    Setting("log_format", "text", parse.log_format,
            "\"text\" for people, \"json\" for log shippers: one JSON object per line."),
    Setting("access_log", False, parse.boolean, "Log one line per request (method, path, status, ms); never credentials."),
    Setting("metrics_allow", ("127.0.0.1/32", "::1/128"), parse.networks,
            "Networks that may read /metrics without the metrics token."),
    Setting("metrics_token_sha256", "", parse.sha256_hex,
            "SHA-256 (hex) of a token that also opens /metrics (Authorization: Bearer TOKEN); empty: none."),
    Setting("mirror_requires_key", False, parse.boolean,
            "Require a valid key (any organization's) to read /mirror/hexpm; off by default, as it holds only "
            "public packages and mix sends no key to a plain HEX_MIRROR."),
    Setting("mirror_public_key", "", parse.string,
            "PEM file of the key hex.pm mirror bundles must be signed with; empty means hex.pm's own key."),
    Setting("tls_ca_file", "", parse.string,
            "PEM file of the CA that signed the TLS front's certificate, when clients do not already trust it: "
            "served at /ca.pem and shown with its fingerprint in the client set-up (install.sh --tls-self-signed "
            "sets it)."),
    Setting("gc_grace_seconds", 3600, parse.integer,
            "`hexvault gc` leaves unreferenced blobs younger than this alone (a publish in flight stores its "
            "tarball before it commits), in seconds."),
    Setting("pending_build_sweep", 10.0, parse.number,
            "Seconds between looks, by one process among all workers and nodes, for registry builds a stopped "
            "process left unfinished; found twice in a row, they are finished."),
    Setting("webhook_timeout", 10.0, parse.number,
            "Seconds a webhook receiver gets to accept the connection, and again to answer, before the attempt "
            "counts as failed."),
    Setting("webhook_retry_seconds", 10.0, parse.number, "Delay before the first retry of a failed webhook delivery; "
            "it doubles with every further attempt."),
    Setting("webhook_retry_max_seconds", 3600.0, parse.number, "Longest delay between two webhook delivery attempts."),
    Setting("webhook_max_attempts", 15, parse.integer,
            "Attempts before a webhook delivery is marked failed (the admin UI can redeliver it)."),
    Setting("webhook_workers", 2, parse.integer, "Threads of `hexvault serve` sending webhook deliveries."),
    Setting("ldap_urls", (), parse.ldap_urls,
            "LDAP / Active Directory servers, tried in this order (failover): ldap://HOST:PORT (with StartTLS) or "
            "ldaps://HOST:PORT. Empty: no directory logins."),
    Setting("ldap_start_tls", True, parse.boolean, "Upgrade ldap:// connections with StartTLS (refused if the server cannot)."),
    Setting("ldap_ca_file", "", parse.string, "PEM file of the CA that signed the directory's certificate; empty: the system's CAs."),
    Setting("ldap_timeout", 5.0, parse.number, "Seconds to wait for one directory server before trying the next."),
    Setting("ldap_bind_dn", "", parse.string, "DN of the service account that searches the directory."),
    Setting("ldap_bind_password_file", "", parse.string, "File holding the service account's password (one line)."),
    Setting("ldap_base_dn", "", parse.string, "Where people are searched, e.g. ou=people,dc=corp,dc=example."),
    Setting("ldap_user_filter", "(uid={username})", parse.string,
            "Filter finding a person by the name typed at login ({username}, escaped); AD: (sAMAccountName={username})."),
    Setting("ldap_email_attribute", "mail", parse.string, "Attribute holding the email address."),
    Setting("ldap_name_attribute", "displayName", parse.string, "Attribute holding the display name."),
    Setting("ldap_group_base_dn", "", parse.string, "Where groups are searched; empty: ldap_base_dn."),
    Setting("ldap_group_filter", "(member={dn})", parse.string,
            "Filter finding a person's groups ({dn}, escaped); AD with nested groups: "
            "(member:1.2.840.113556.1.4.1941:={dn})."),
    Setting("ldap_group_roles", (), parse.group_roles,
            "Directory group DN -> organization role, e.g. {\"cn=elixir-devs,ou=groups,dc=corp\" = \"acme:write\"}; "
            "a directory user must be in one of these groups to log in."),
    Setting("oidc_issuer", "", parse.string,
            "OpenID Connect issuer URL for single sign-on to the web UI (discovery at "
            "ISSUER/.well-known/openid-configuration); empty: no SSO."),
    Setting("oidc_client_id", "", parse.string, "The client id Hexvault is registered under at the OpenID Provider."),
    Setting("oidc_client_secret_file", "", parse.string,
            "File holding the client secret (confidential client); empty: a public client (PKCE only)."),
    Setting("oidc_ca_file", "", parse.string, "PEM file of the CA to trust for the provider's HTTPS; empty: the system's."),
    Setting("oidc_display_name", "your company account", parse.string, "Shown on the login page as \"Sign in with ...\"."),
    Setting("oidc_username_claim", "preferred_username", parse.string,
            "ID token claim that names the user (an e-mail's domain is dropped); falls back to email."),
    Setting("oidc_groups_claim", "groups", parse.string, "ID token claim listing the user's groups."),
    Setting("oidc_group_roles", (), parse.group_roles,
            "Group (from the groups claim) -> organization role, like ldap_group_roles; SSO users must be in one "
            "of these groups when any is given."),
    Setting("sso_only", False, parse.boolean,
            "With SSO configured, only appliance administrators may log in to the web UI with a password."),
    Setting("require_2fa_for_admins", False, parse.boolean,
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
