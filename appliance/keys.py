"""API and repository keys: create (the secret is returned once), authenticate, revoke, rotate.

Like hexpm, the secret is 16 random bytes as 32 hex characters; the database stores only
HMAC-SHA256(app secret, secret) as two 32-character halves. The first half is an indexed
lookup, the second is compared in constant time, so neither a database leak nor a timing
side channel reveals a usable key. Revocation is a timestamp checked on every request.
"""

import datetime
import hashlib
import hmac
import re
import secrets
import time

import peewee

from appliance import audit
from appliance.db import database, write_tx
from appliance.errors import Conflict, Invalid, NotFound, Unauthenticated
from appliance.models import Key, Organization, utcnow

KEY_NAME_RE = re.compile(r"[A-Za-z0-9_\-.@:]{1,80}")  # fullmatch
DOMAINS = ("api", "repository", "repositories", "docs")
API_RESOURCES = (None, "read", "write")


def generate_secret():
    return secrets.token_hex(16)


def lookup_digest(app_secret, secret):
    """The indexed half of a secret's HMAC: what caches may key on instead of the secret."""
    return _digest(app_secret, secret)[0]


def _digest(app_secret, secret):
    mac = hmac.new(app_secret, secret.encode(), hashlib.sha256).hexdigest()
    return mac[:32], mac[32:]


def normalize_permissions(raw, *, check_orgs=True):
    """[{domain, resource}] or [(domain, resource)] -> [[domain, resource|None]], validated.

    Mix sends resource "" for a bare --permission api and rebar3_hex omits it; both mean None.
    ``check_orgs=False`` leaves out the check that a named organization exists, for callers that
    must answer the same whether it does or not (an OAuth scope; the API checks what may be granted).
    """
    if not isinstance(raw, (list, tuple)) or not raw:
        raise Invalid("Validation error(s)", {"permissions": "at least one permission is required"})
    result = []
    for item in raw:
        if isinstance(item, dict):
            domain, resource = item.get("domain"), item.get("resource")
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            domain, resource = item
        else:
            raise Invalid("Validation error(s)", {"permissions": "each permission needs a domain"})
        resource = resource or None
        if domain not in DOMAINS:
            raise Invalid("Validation error(s)", {"permissions": f"unknown domain {domain!r}"})
        if resource is not None and not isinstance(resource, str):
            raise Invalid("Validation error(s)", {"permissions": "a resource must be a string"})
        if domain == "api" and resource not in API_RESOURCES:
            raise Invalid("Validation error(s)", {"permissions": "api resource must be read or write"})
        if domain in ("repository", "docs"):
            if not resource:
                raise Invalid("Validation error(s)", {"permissions": f"{domain} permission requires a resource "
                                                                       "(an organization name)"})
            if check_orgs and Organization.get_or_none(Organization.name == resource) is None:
                raise Invalid("Validation error(s)", {"permissions": f"no organization named {resource!r}"})
        if domain == "repositories" and resource:
            raise Invalid("Validation error(s)", {"permissions": "repositories takes no resource"})
        pair = [domain, resource]
        if pair not in result:
            result.append(pair)
    return result


def parse_permission(text):
    """CLI form: 'api', 'api:read', 'repository:acme', 'repositories'."""
    domain, _, resource = text.partition(":")
    return [domain, resource or None]


def _unique_name(name, user, organization):
    owner = (Key.user == user.id) if user is not None else (Key.organization == organization.id)
    taken = {k.name for k in Key.select(Key.name).where(owner & Key.name.startswith(name))}
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def create(app_secret, name, permissions, *, user=None, organization=None, actor=audit.CLI):
    """Create a key owned by a user or an organization; returns (key, secret). The secret is
    never stored and cannot be shown again."""
    if (user is None) == (organization is None):
        raise ValueError("a key has exactly one owner")
    name = (name or "").strip(" ") if isinstance(name, str) else ""
    if not KEY_NAME_RE.fullmatch(name):
        raise Invalid("Validation error(s)", {"name": "use 1-80 letters, digits or _ - . @ :"})
    permissions = normalize_permissions(permissions)
    secret = generate_secret()
    first, second = _digest(app_secret, secret)
    with write_tx():
        key = Key.create(name=_unique_name(name, user, organization), user=user, organization=organization,
                         secret_first=first, secret_second=second, permissions=permissions)
        audit.record(actor, "key.generate", organization=organization, target=key.name,
                     owner=(user.username if user else organization.name), permissions=_fmt(permissions))
    return key, secret


def _fmt(permissions):
    return ", ".join(d if not r else f"{d}:{r}" for d, r in permissions)


def find(app_secret, secret):
    """The key row a secret belongs to, revoked or not, else None."""
    if not secret or len(secret) > 200:
        return None
    first, second = _digest(app_secret, secret)
    # Raw SQL on the hot path: every repository GET authenticates, and building this query
    # with peewee's expression compiler costs more than running it.
    key = next(iter(Key.raw(f'SELECT * FROM "key" WHERE "secret_first" = {database.param}', first)), None)
    if key is None or not hmac.compare_digest(key.secret_second, second):
        return None
    return key


def authenticate(app_secret, secret, finder=find):
    """The active key for a presented secret, else Unauthenticated with hexpm's messages.
    ``finder`` lets lookupcache.LookupCache supply a memoized find()."""
    key = finder(app_secret, secret)
    if key is None:
        raise Unauthenticated("invalid API key")
    if not key.is_active():
        raise Unauthenticated("API key revoked")
    return key


# -- OAuth access tokens -------------------------------------------------------------------------
# Hex >= 2.4 exchanges a repository key for an access token (client_credentials, scope
# "repositories") and saves the token in ~/.hex/hex.config. A token names its key, its scope and
# its expiry, signed with the app secret: it can do only what both its key and its scope allow,
# is worthless after TOKEN_TTL, dies with its key (the key is loaded on every use), and a copy of
# hex.config never holds the long-lived key itself.
TOKEN_PREFIX = "hvt_"
TOKEN_TTL = 900  # Hex renews 300 s before expiry; a token its key outlived is retried until then
DEFAULT_SCOPE = "repositories"
_TOKEN_RE = re.compile(r"hvt_([0-9]{1,18})_([0-9]{1,12})_([0-9a-f]{2,512})_([0-9a-f]{64})")  # fullmatch


def parse_scope(scope):
    """An OAuth scope string ("repositories", "api:read repository:acme", ...) as permissions. A
    token can never do more than its key, so a scope naming an organization the key cannot read
    (or one that does not exist) is accepted and grants nothing there."""
    scope = scope or DEFAULT_SCOPE
    if not isinstance(scope, str) or len(scope) > 200:
        raise Invalid("invalid_scope", {"scope": "must be a string of at most 200 characters"})
    scope = scope.strip()
    return normalize_permissions([parse_permission(part) for part in scope.split()], check_orgs=False)


def _token_mac(app_secret, key_id, expires, scope_hex):
    return hmac.new(app_secret, f"oauth-token|{key_id}|{expires}|{scope_hex}".encode(), hashlib.sha256).hexdigest()


def issue_token(app_secret, key, scope=DEFAULT_SCOPE, ttl=TOKEN_TTL, now=None):
    """An access token for ``key`` limited to ``scope``, valid for ``ttl`` seconds."""
    parse_scope(scope)
    scope_hex = " ".join(scope.split()).encode().hex()
    expires = int(now if now is not None else time.time()) + ttl
    return f"{TOKEN_PREFIX}{key.id}_{expires}_{scope_hex}_{_token_mac(app_secret, key.id, expires, scope_hex)}"


def authenticate_token(app_secret, token, finder=None, now=None):
    """(active key, scope as ((domain, resource), ...)) behind an access token, else Unauthenticated. Signature
    and expiry are checked on every use; ``finder`` (key id -> Key or None) may be memoized."""
    match = _TOKEN_RE.fullmatch(token or "")
    if match is None:
        raise Unauthenticated("invalid API key")
    key_id, expires, scope_hex, mac = int(match.group(1)), int(match.group(2)), match.group(3), match.group(4)
    if not hmac.compare_digest(_token_mac(app_secret, key_id, expires, scope_hex), mac):
        raise Unauthenticated("invalid API key")
    if expires <= (now if now is not None else time.time()):
        raise Unauthenticated("token expired")
    key = (finder or find_by_id)(key_id)
    if key is None:
        raise Unauthenticated("invalid API key")
    if not key.is_active():
        raise Unauthenticated("API key revoked")
    return key, tuple(tuple(p) for p in parse_scope(bytes.fromhex(scope_hex).decode()))


def find_by_id(key_id):
    """The key row with that id, revoked or not, else None."""
    return Key.get_or_none(Key.id == key_id)


def list_for(*, user=None, organization=None, include_revoked=True):
    query = Key.select().order_by(Key.created_at.desc(), Key.id.desc())
    query = query.where(Key.user == user.id) if user is not None else query.where(Key.organization == organization.id)
    if not include_revoked:
        query = query.where(Key.revoked_at.is_null())
    return list(query)


def get(name, *, user=None, organization=None):
    owner = (Key.user == user.id) if user is not None else (Key.organization == organization.id)
    key = Key.get_or_none(owner & (Key.name == name) & Key.revoked_at.is_null())
    if key is None:
        raise NotFound(f"no key named {name}")
    return key


def get_by_id(key_id):
    # An id from a URL may be any size; SQLite integers stop at 2**63 - 1.
    key = Key.get_or_none(Key.id == key_id) if 0 < key_id < 2 ** 63 else None
    if key is None:
        raise NotFound("no such key")
    return key


def revoke(key, *, actor=audit.CLI):
    """Revoke a key, and the secrets it replaced that are still in their rotation grace period
    (``NAME-rotated-ID``): whoever revokes a key after rotating it (a leaked secret) wants none of
    its secrets to work. Revoking one already revoked (twice at once, say) changes and audits
    nothing."""
    now = utcnow()
    with write_tx():
        for row in [key, *_in_grace_predecessors(key)]:
            if Key.update(revoked_at=now).where((Key.id == row.id) & Key.revoked_at.is_null()).execute():
                audit.record(actor, "key.revoke", organization=row.organization, target=row.name,
                             owner=row.owner_name)
    return find_by_id(key.id)


def _in_grace_predecessors(key):
    """The live keys a rotation of ``key`` (or of those) retired with a grace period."""
    owner = (Key.user == key.user_id) if key.user_id else (Key.organization == key.organization_id)
    pattern = re.compile(re.escape(key.name) + r"(-rotated-\d+)+")
    rows = Key.select().where(owner & Key.revoked_at.is_null() & Key.expires_at.is_null(False)
                              & Key.name.startswith(f"{key.name}-rotated-"))
    return [row for row in rows if pattern.fullmatch(row.name)]


def rotate(app_secret, key, *, grace_seconds=0, actor=audit.CLI):
    """Replace a key by a new one with the same name and permissions; returns (new_key, secret).

    The old key stops working at once, or after ``grace_seconds`` so deployed clients can be
    switched over; either way it can never be used after that moment. Of several rotations of
    one key (or a rotation from a stale copy of it) exactly one wins: the old key is retired only
    while it is still live and unrotated, in the same transaction, and the database holds one
    live key per owner and name; every other rotation gets Conflict.
    """
    already = Conflict(f"key {key.name} was already rotated or revoked; rotate its replacement instead")
    if not key.is_active():
        raise already
    secret = generate_secret()
    first, second = _digest(app_secret, secret)
    now = utcnow()
    retired = {"name": f"{key.name}-rotated-{key.id}"}
    if grace_seconds and grace_seconds > 0:
        retired["expires_at"] = now + datetime.timedelta(seconds=grace_seconds)
    else:
        retired["revoked_at"] = now
    still_live = (Key.id == key.id) & (Key.name == key.name) & Key.revoked_at.is_null() & Key.expires_at.is_null()
    try:
        with write_tx():
            if Key.update(**retired).where(still_live).execute() != 1:
                raise already
            new = Key.create(name=key.name, user=key.user_id, organization=key.organization_id,
                             secret_first=first, secret_second=second, permissions=key.permissions)
            audit.record(actor, "key.rotate", organization=key.organization, target=key.name,
                         owner=key.owner_name, grace_seconds=grace_seconds or None)
    except peewee.IntegrityError:  # the database's one-live-key-per-name rule
        raise Conflict(f"another live key of {key.owner_name} is named {key.name} or "
                       f"{retired['name']}; revoke or rename it first") from None
    return new, secret
