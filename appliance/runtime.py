"""The running appliance: config, database, blob store, app secret and registry signing key.

``initialize`` creates a data directory once (``hexvault init``); ``open_runtime`` opens an
existing one and refuses anything else with one clear sentence. Every process that opens the
runtime (``hexvault serve`` and each CLI command) first applies pending schema migrations and
logs them, so an upgraded Hexvault never runs on the old schema; a database newer than the code
is refused (see ``appliance.migrations``).
"""

import contextlib
import logging
import os
import secrets
import threading

from appliance import audit, db, migrations
from appliance.keyuse import KeyUses
from appliance.loginlimit import LoginLimits
from appliance.lookupcache import LookupCache
from appliance.db import database, init_database, write_tx
from appliance.errors import NotInitialized
from appliance.identity import ldap
from appliance.models import OAuthGrant, SigningKey, utcnow
from appliance.ops import disk
from appliance.protocol import signing
from storage import open_store

log = logging.getLogger("hexvault")


class Runtime:
    """What services need besides the database: a small bag of collaborators, no behaviour of
    its own beyond loading keys and handing out per-organization locks."""

    def __init__(self, config):
        self.config = config
        self.store = open_store(config.blob_path, cache_bytes=config.read_cache_size)
        self.app_secret = (config.data_path / "secret_key").read_bytes().strip()
        self._signing = None  # (SigningKey.id, private key)
        self._locks = {}
        # registry_builder's encoded names/versions entries per organization (see build_index).
        self.index_cache = {}
        self.lookups = LookupCache()
        self.login_limits = LoginLimits()
        self.directory = ldap.from_config(config)  # None without ldap_urls
        self.key_uses = KeyUses()
        self.grant_uses = KeyUses(OAuthGrant)
        self._locks_guard = threading.Lock()

    def signing_key(self):
        """(SigningKey row, private key) of the active registry key, loaded once per rotation."""
        row = SigningKey.current()
        if self._signing is None or self._signing[0].id != row.id:
            pem = private_key_path(self.config, row.id).read_bytes()
            self._signing = (row, signing.load_private_key(pem))
        return self._signing

    @contextlib.contextmanager
    def registry_lock(self, org_name):
        """Serialise registry builds of one organization, across threads and processes (the CLI
        and the server may both write), so the last writer always wrote the newest state."""
        with self._locks_guard:
            lock = self._locks.setdefault(org_name, threading.Lock())
        with lock, db.lock(f"registry-{org_name}"):
            yield


def private_key_path(config, key_id):
    return config.keys_path / f"registry-{key_id}.pem"


def is_initialized(config):
    """The app secret is written last by init: with it, the data directory is complete (and, for
    SQLite, its database file is there)."""
    has_database = bool(config.database_url) or config.database_path.exists()
    return has_database and (config.data_path / "secret_key").exists()


def write_private(path, data):
    """Write a file only its owner can read, atomically (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@disk.full_disk_refused()
def create_signing_key(config, *, actor=audit.CLI, bits=2048):
    """Make a new registry signing key active and keep the old ones as history."""
    private = signing.generate_private_key(bits)
    public_pem = signing.public_key_pem(private).decode()
    with write_tx():
        SigningKey.update(retired_at=utcnow()).where(SigningKey.retired_at.is_null()).execute()
        row = SigningKey.create(public_pem=public_pem, fingerprint=signing.fingerprint(private.public_key()))
        # Written inside the transaction: if this fails, the row is rolled back with it.
        write_private(private_key_path(config, row.id), signing.private_key_to_pem(private))
        audit.record(actor, "signing_key.create", target=row.fingerprint)
    return row


def initialize(config):
    """Create the data directory layout, database schema, app secret and first signing key."""
    data = config.data_path
    if is_initialized(config):
        raise NotInitialized(f"{data} is already initialized")
    if (data / "secret_key").exists():
        # Written last, so the directory is complete; its database is elsewhere: a PostgreSQL
        # one (a node sharing the directory without database_url). A new secret and signing key
        # here would lock every node out of the sessions and registry files made so far.
        raise NotInitialized(f"{data} is already initialized (it has a secret_key), but its database is not "
                             f"{config.database_name}; set the database_url it was initialized with")
    # No secret_key means an earlier init was interrupted before it finished: nothing in it is
    # worth keeping, so start over rather than fail on half-created tables.
    for leftover in ("hexvault.db", "hexvault.db-wal", "hexvault.db-shm"):
        (data / leftover).unlink(missing_ok=True)
    for path in (data, config.keys_path, config.blob_path, config.import_path):
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
    os.chmod(data, 0o750)  # it may exist already, made with the umask's 0755
    os.chmod(config.keys_path, 0o700)
    init_database(config.database_target, state_dir=data, busy_timeout_ms=config.busy_timeout)
    with database.connection_context():
        if config.database_url and migrations.schema_version():
            raise NotInitialized(f"database {config.database_name} already holds a Hexvault schema; "
                                 "init needs an empty database")
        migrations.upgrade(config)  # from version 0: the same schema an upgraded database has
        create_signing_key(config)
    # The secret is written last: its presence marks a complete initialization.
    write_private(data / "secret_key", secrets.token_hex(32).encode())


def not_initialized_message(config):
    """Which directory was looked at and how to point at another: a wrong directory is far more
    likely than a missing installation, and a second `init` would make a second, empty one."""
    where = config.data_path
    if (where / "secret_key").exists():  # see initialize
        return (f"data directory {where} is initialized (it has a secret_key), but its database is not "
                f"{config.database_name}; set the database_url it was initialized with in "
                f"{config.source or 'a config file'} or HEXVAULT_DATABASE_URL")
    state = "does not exist" if not where.exists() else "holds no Hexvault database"
    config_file = config.source or "a config file (--config, HEXVAULT_CONFIG or ./hexvault.toml)"
    return (f"data directory {where} is not initialized ({state}); if Hexvault lives elsewhere, set data_dir "
            f"in {config_file} or HEXVAULT_DATA_DIR; to set up a new one here, run `hexvault init`")


def open_database(config):
    """Bind the database of an initialized data directory (no migration: see open_runtime)."""
    if not is_initialized(config):
        raise NotInitialized(not_initialized_message(config))
    init_database(config.database_target, state_dir=config.data_path, busy_timeout_ms=config.busy_timeout)


def check_schema(config):
    """Refuse an empty PostgreSQL database beside an initialized data directory (which holds keys
    and blobs): a wrong database_url, not something to create a fresh schema in. Connected."""
    if config.database_url and not migrations.schema_version():
        raise NotInitialized(f"database {config.database_name} holds no Hexvault schema, but "
                             f"{config.data_dir} is initialized; check database_url "
                             "(or move a database there with `hexvault db copy`)")


def open_runtime(config):
    """The Runtime of an initialized data directory, its schema migrated to this version."""
    open_database(config)
    with database.connection_context():
        check_schema(config)
        outcome = migrations.upgrade(config)
    if outcome.copy_path:
        log.warning("copied the database (schema version %d) to %s before migrating",
                    outcome.from_version, outcome.copy_path)
    for migration in outcome.applied:
        log.warning("applied schema migration %s: %s", migration.name, migration.summary)
    return Runtime(config)
