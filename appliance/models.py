"""Peewee models of Hexvault and their named queries. Data only: operations live in the
plural service modules (accounts, orgs, keys, packages)."""

import datetime
import json

import peewee

from appliance.db import JSONField, database

ROLES = ("read", "write", "admin")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Meta(BaseModel):
    """Key/value facts about the installation (schema version, default organization)."""

    key = peewee.CharField(primary_key=True)
    value = peewee.TextField()


class User(BaseModel):
    username = peewee.CharField(unique=True)
    email = peewee.CharField(null=True)
    full_name = peewee.CharField(null=True)
    password_hash = peewee.CharField(null=True)
    is_admin = peewee.BooleanField(default=False)
    disabled_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    # "local" (password here) or "ldap" (the directory checks the password, decides memberships).
    auth_source = peewee.CharField(default="local", constraints=[peewee.SQL("DEFAULT 'local'")])
    directory_dn = peewee.CharField(null=True)
    # TOTP (identity/totp.py): the secret Fernet-encrypted; set but not enabled while enrolling.
    totp_secret_encrypted = peewee.TextField(null=True)
    totp_enabled_at = peewee.DateTimeField(null=True)
    totp_last_step = peewee.IntegerField(null=True)  # the last accepted code's time step: no replays

    @classmethod
    def active(cls):
        return cls.select().where(cls.disabled_at.is_null())


class Organization(BaseModel):
    name = peewee.CharField(unique=True)
    created_at = peewee.DateTimeField(default=utcnow)


class Membership(BaseModel):
    user = peewee.ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    organization = peewee.ForeignKeyField(Organization, backref="memberships", on_delete="CASCADE")
    role = peewee.CharField()
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "organization"), True),)


class Key(BaseModel):
    """An API / repository key. Only HMAC-SHA256(app secret, secret) is stored, split in two:
    the first half is looked up by index, the second compared in constant time."""

    name = peewee.CharField()
    user = peewee.ForeignKeyField(User, null=True, backref="keys", on_delete="CASCADE")
    organization = peewee.ForeignKeyField(Organization, null=True, backref="keys", on_delete="CASCADE")
    secret_first = peewee.CharField(unique=True)
    secret_second = peewee.CharField()
    permissions = JSONField(default=list)  # [[domain, resource-or-null], ...]
    created_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)
    # A rotated key keeps working until this moment (grace period), then counts as revoked.
    expires_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    last_used_ip = peewee.CharField(null=True)
    last_used_user_agent = peewee.CharField(null=True)

    @classmethod
    def active(cls, now=None):
        now = now or utcnow()
        return cls.select().where(
            cls.revoked_at.is_null() & (cls.expires_at.is_null() | (cls.expires_at > now)))

    @property
    def owner_name(self):
        return self.user.username if self.user_id else self.organization.name

    def is_active(self, now=None):
        now = now or utcnow()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


# One live (unrevoked) key per owner and name: of several rotations of one key, one commits and
# the others fail here (keys.rotate). A rotated key with a grace period is renamed, so it and its
# replacement never clash. Partial indexes: peewee's Meta.indexes cannot say WHERE.
Key.add_index(Key.index(Key.user, Key.name, unique=True, name="key_live_user_name",
                        where=Key.revoked_at.is_null() & Key.user.is_null(False)))
Key.add_index(Key.index(Key.organization, Key.name, unique=True, name="key_live_organization_name",
                        where=Key.revoked_at.is_null() & Key.organization.is_null(False)))


class Package(BaseModel):
    organization = peewee.ForeignKeyField(Organization, backref="packages", on_delete="CASCADE")
    name = peewee.CharField()
    meta = JSONField(default=dict)  # description, licenses, links, maintainers of the latest release
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    # Incremented with every change to the package's releases; registry_builder re-encodes an
    # index entry only when this moved, even across processes.
    revision = peewee.IntegerField(default=0)

    class Meta:
        indexes = ((("organization", "name"), True),)


class Release(BaseModel):
    package = peewee.ForeignKeyField(Package, backref="releases", on_delete="CASCADE")
    version = peewee.CharField()
    inner_checksum = peewee.CharField()  # lowercase hex
    outer_checksum = peewee.CharField()  # lowercase hex; also the tarball's blob name
    size = peewee.IntegerField()
    metadata = JSONField()  # the normalized metadata.config
    readme = peewee.TextField(null=True)
    docs_checksum = peewee.CharField(null=True)
    retirement_reason = peewee.CharField(null=True)
    retirement_message = peewee.CharField(null=True)
    publisher = peewee.ForeignKeyField(User, null=True, backref="releases", on_delete="SET NULL")
    published_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("package", "version"), True),)

    @property
    def has_docs(self):
        return self.docs_checksum is not None


class Requirement(BaseModel):
    release = peewee.ForeignKeyField(Release, backref="requirements", on_delete="CASCADE")
    name = peewee.CharField()
    app = peewee.CharField()
    requirement = peewee.CharField()
    optional = peewee.BooleanField(default=False)
    repository = peewee.CharField(null=True)  # None = same repository as the package


class PendingBuild(BaseModel):
    """A package whose registry files must be rebuilt. Written in the same transaction as the
    change, deleted once the files are written: rows left by a crash are rebuilt at start-up."""

    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    package_name = peewee.CharField()


class AuditLog(BaseModel):
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    user = peewee.ForeignKeyField(User, null=True, backref="audit_logs", on_delete="SET NULL")
    actor = peewee.CharField()  # username, "key:NAME" or "system", kept even if the user goes
    action = peewee.CharField(index=True)
    organization = peewee.CharField(null=True, index=True)
    target = peewee.CharField(null=True)
    details = JSONField(default=dict)
    ip = peewee.CharField(null=True)
    user_agent = peewee.CharField(null=True)


class LoginFailure(BaseModel):
    """A wrong password for an account (any name tried, existing or not) from an address, kept
    for loginlimit.WINDOW. The login limits are counted from these rows, so every process
    sharing the database sees the same failures."""

    account = peewee.CharField()
    address = peewee.CharField()
    # Unix seconds: comparable across processes. Double: PostgreSQL's REAL has 4 bytes.
    failed_at = peewee.DoubleField(index=True)

    class Meta:
        indexes = ((("account", "address", "failed_at"), False), (("address", "failed_at"), False))


class UserSession(BaseModel):
    """A signed-in admin UI session. The browser's signed cookie carries a random id; only its
    SHA-256 is stored. Logging out deletes the row, so a copy of the cookie dies with it."""

    id_hash = peewee.CharField(unique=True)
    user = peewee.ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    created_at = peewee.DateTimeField(default=utcnow, index=True)


class RecoveryCode(BaseModel):
    """A single-use two-factor recovery code; only its SHA-256 is stored."""

    user = peewee.ForeignKeyField(User, backref="recovery_codes", on_delete="CASCADE")
    code_hash = peewee.CharField()
    used_at = peewee.DateTimeField(null=True)


class DeviceAuthorization(BaseModel):
    """A pending OAuth device login (RFC 8628): the code a client polls with and the code its user
    types in the web UI, both stored as SHA-256 only. Used once, then ``used_at`` is set."""

    device_code_hash = peewee.CharField(unique=True)
    user_code_hash = peewee.CharField(unique=True)
    client_name = peewee.CharField()  # what the client calls itself (mix sends the host name)
    scope = peewee.CharField()
    requested_ip = peewee.CharField(index=True)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    expires_at = peewee.DateTimeField()
    last_polled_at = peewee.DateTimeField(null=True)
    user = peewee.ForeignKeyField(User, null=True, on_delete="CASCADE")  # who approved or denied
    decision = peewee.CharField(null=True)  # "approved" or "denied"
    used_at = peewee.DateTimeField(null=True)


class OAuthGrant(BaseModel):
    """A device that logged in with the device flow: one user, one scope, one refresh token (its
    SHA-256; a refresh replaces it). Access tokens name the grant and die when it is revoked."""

    user = peewee.ForeignKeyField(User, backref="oauth_grants", on_delete="CASCADE")
    client_name = peewee.CharField()
    scope = peewee.CharField()
    refresh_hash = peewee.CharField(unique=True)
    previous_refresh_hash = peewee.CharField(null=True, index=True)  # a replayed one revokes the grant
    created_at = peewee.DateTimeField(default=utcnow)
    refreshed_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    last_used_ip = peewee.CharField(null=True)
    last_used_user_agent = peewee.CharField(null=True)

    class Meta:
        table_name = "oauth_grant"


class SigningKey(BaseModel):
    """Registry signing keys; exactly one is active. The private PEM lives in data_dir/keys."""

    public_pem = peewee.TextField()
    fingerprint = peewee.CharField()
    created_at = peewee.DateTimeField(default=utcnow)
    retired_at = peewee.DateTimeField(null=True)

    @classmethod
    def current(cls):
        return cls.select().where(cls.retired_at.is_null()).order_by(cls.id.desc()).first()

    @classmethod
    def history(cls):
        """Every signing key, newest first."""
        return list(cls.select().order_by(cls.id.desc()))


class Webhook(BaseModel):
    """A URL that receives an organization's events (ops/webhooks.py). The secret the bodies are
    signed with is stored Fernet-encrypted under a key derived from the app secret."""

    organization = peewee.ForeignKeyField(Organization, backref="webhooks", on_delete="CASCADE")
    url = peewee.TextField()  # up to 2,000 characters (webhooks.MAX_URL_LENGTH)
    secret_encrypted = peewee.TextField()
    created_at = peewee.DateTimeField(default=utcnow)


class WebhookEvent(BaseModel):
    """The outbox: an event with the exact JSON body sent, written in the change's transaction."""

    event_id = peewee.CharField(unique=True)  # X-Hexvault-Event-Id, for receivers to de-duplicate
    organization = peewee.ForeignKeyField(Organization, on_delete="CASCADE")
    type = peewee.CharField()
    body = peewee.TextField()
    created_at = peewee.DateTimeField(default=utcnow)

    @property
    def payload(self):
        return json.loads(self.body)


class WebhookDelivery(BaseModel):
    """One event for one hook: pending (retried with backoff, leased while a worker posts it)
    until a 2xx answer makes it delivered or the last attempt makes it failed."""

    webhook = peewee.ForeignKeyField(Webhook, backref="deliveries", on_delete="CASCADE")
    event = peewee.ForeignKeyField(WebhookEvent, backref="deliveries", on_delete="CASCADE")
    state = peewee.CharField(default="pending")  # pending, delivered, failed
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(default=utcnow)
    lease_owner = peewee.CharField(null=True)
    lease_expires_at = peewee.DateTimeField(null=True)
    last_status = peewee.IntegerField(null=True)
    last_error = peewee.TextField(null=True)
    last_attempt_at = peewee.DateTimeField(null=True)
    delivered_at = peewee.DateTimeField(null=True)
    redelivery = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("state", "next_attempt_at"), False),)


ALL_MODELS = (Meta, User, Organization, Membership, Key, Package, Release, Requirement, PendingBuild,
              AuditLog, SigningKey, Webhook, WebhookEvent, WebhookDelivery, LoginFailure, UserSession, RecoveryCode,
              DeviceAuthorization, OAuthGrant)
