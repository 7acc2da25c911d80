"""Typed errors of the Hexvault domain.

Each failure kind is one subclass carrying the HTTP status a client should see and a
message written for the mix/rebar3 user who reads it. Only ``appliance.routes.responses``
and the web UI turn these into responses; domain code just raises them.
"""


class HexvaultError(Exception):
    """Base class: a failure the user should be told about, with an HTTP status."""

    status = 400
    message = "Bad request"
    # Seconds for a Retry-After header: set on failures that pass by themselves.
    retry_after = None

    def __init__(self, message=None, errors=None):
        self.message = message or self.message
        # Hex clients expect ``errors`` values to be strings or nested maps, never lists.
        self.errors = errors or {}
        super().__init__(self.message)


class Unauthenticated(HexvaultError):
    """No credential, or one that does not exist or was revoked."""

    status = 401
    message = "missing authentication information"


class Forbidden(HexvaultError):
    """A valid credential without the permission the action needs."""

    status = 403
    message = "key not authorized for this action"


class NotFound(HexvaultError):
    """The thing does not exist, or the caller may not know that it does."""

    status = 404
    message = "Page not found"


class Conflict(HexvaultError):
    """The change clashes with what is stored (e.g. a name already taken)."""

    status = 409
    message = "Conflict"


class UnsupportedMediaType(HexvaultError):
    """A body type Hex clients never send (HTML form and text types, which browsers can send
    cross-site without asking)."""

    status = 415
    message = "Unsupported media type"


class RateLimited(HexvaultError):
    """Too many failed attempts from this account or address; try again later."""

    status = 429
    message = "Too many failed logins"


class DirectoryUnavailable(HexvaultError):
    """The company directory (LDAP) cannot be reached or refuses the service account: nobody
    who would log in through it is let in, local accounts are not affected."""

    status = 503
    retry_after = 30
    message = "the company directory cannot be reached; try again later (local accounts can still log in)"


class Invalid(HexvaultError):
    """Input that fails validation; ``errors`` maps field to message."""

    status = 422
    message = "Validation error(s)"


class InvalidTarball(Invalid):
    """A package or docs tarball that cannot be accepted; the reason goes under errors.tar."""

    def __init__(self, reason):
        super().__init__("Validation error(s)", {"tar": reason})
        self.reason = reason


class InvalidMetadata(InvalidTarball):
    """metadata.config cannot be read safely or lacks what Hex requires."""


class ReleaseExists(Invalid):
    """Publishing a version that exists, without replace: hexpm's 422 and wording, plus the
    release, so the drop folder can say it in its own terms."""

    def __init__(self, name, version):
        super().__init__("Validation error(s)",
                         {"inserted_at": "must include the --replace flag to update an existing release"})
        self.name, self.version = name, version


class Busy(HexvaultError):
    """Another writer held the database for longer than the busy_timeout setting; nothing was
    changed, and the same request a few seconds later normally succeeds."""

    status = 503
    message = "the server is busy finishing another change; nothing was changed, try again in a few seconds"
    retry_after = 5


class DatabaseUnavailable(HexvaultError):
    """The database server cannot be reached (PostgreSQL down, restarting or failing over);
    nothing was changed by this request. Connections come back by themselves once it answers."""

    status = 503
    message = "the database is unavailable; nothing was changed, try again shortly"
    retry_after = 5


class InsufficientStorage(HexvaultError):
    """The disk holding the data directory is below its reserve (setting min_free_bytes), or ran
    out during a write; nothing was stored, and reads go on."""

    status = 507
    message = "the server's disk is full; nothing was stored, ask its administrator to free space"


class NotInitialized(HexvaultError):
    """The data directory has not been set up with ``hexvault init``."""

    status = 503
    message = "data directory is not initialized; run `hexvault init`"


class SchemaTooNew(HexvaultError):
    """The database was upgraded by a newer Hexvault than this one."""

    status = 503
    message = "the database schema is newer than this Hexvault"


class DatabaseToolFailed(HexvaultError):
    """pg_dump or pg_restore reported an error."""

    status = 500
    message = "a database tool failed"


class DatabaseToolMissing(DatabaseToolFailed):
    """pg_dump or pg_restore is not installed."""

    message = "a database tool is not installed"


class MigrationFailed(HexvaultError):
    """A schema migration raised; its transaction was rolled back."""

    status = 503
    message = "a schema migration failed"


class ConfigError(HexvaultError):
    """A setting has an unknown name or a value that cannot be parsed."""

    status = 500
    message = "invalid configuration"


class OAuthError(HexvaultError):
    """An OAuth 2.0 error (RFC 6749 §5.2, RFC 8628 §3.5). Hex reads ``error`` from the body: the
    OAuth routes answer ``{error: code, error_description: message}``."""

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.status = status
