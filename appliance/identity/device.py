"""The OAuth 2.0 device authorization grant (RFC 8628) that `mix hex.user auth` (Hex >= 2.4) logs
in with, its refresh tokens, and revocation (hex-protocol.md §5.9).

1. ``start``: the client gets a device code (secret, it polls with it) and a user code (short, the
   user types it or follows verification_uri_complete). Both are stored as SHA-256 only; a device
   authorization expires after DEVICE_CODE_TTL and an address may start only so many of them.
2. ``approve``/``deny``: the signed-in user decides on the web UI's verification page.
3. ``poll``: once approved, the first poll turns it into an ``OAuthGrant`` (single use) and
   answers an access token and a refresh token; before that ``authorization_pending``, too fast
   ``slow_down``, after the decision ``access_denied``, late ``expired_token``.

A grant is one logged-in device of one user. Its access tokens are signed strings naming the
grant, the scope and an expiry (ACCESS_TTL), checked on every use together with the grant (not
revoked) and its user (not disabled). Its refresh token is random, stored hashed and replaced at
every refresh; presenting a replaced one again means it was copied, and revokes the grant.
"""

import datetime
import hashlib
import hmac
import re
import secrets
import time

from appliance import audit, keys
from appliance.db import write_tx
from appliance.errors import NotFound, OAuthError, RateLimited, Unauthenticated
from appliance.models import DeviceAuthorization, OAuthGrant, User, utcnow

# Hex's own client id (hexpm/hex lib/hex/api/oauth.ex); other clients are refused.
HEX_CLIENT_ID = "78ea6566-89fd-481e-a1d6-7d9d78eacca8"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = ("api", "api:read", "api:write", "repositories")
DEVICE_CODE_TTL = 600
POLL_INTERVAL = 5
# Hex refreshes when less than 5 minutes are left, so this is ~25 minutes of use per refresh.
ACCESS_TTL = 1800
REFRESH_IDLE = datetime.timedelta(days=30)  # a device unused this long logs in again
MAX_STARTS_PER_ADDRESS = 10  # device authorizations per address per DEVICE_CODE_TTL
TOKEN_PREFIX = "hvo_"
REFRESH_PREFIX = "hvr_"
# No vowels (no words) and no look-alikes; 20**8 codes, of which a handful live for 10 minutes.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_TOKEN_RE = re.compile(r"hvo_([0-9]{1,18})_([0-9]{1,12})_([0-9a-f]{2,400})_([0-9a-f]{64})")  # fullmatch


def _sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_user_code(text):
    """What the user typed as the 8 letters the code hashes from: case, dashes and spaces ignored."""
    return "".join(c for c in (text or "").upper() if c.isalnum())[:32]


def format_user_code(code):
    return f"{code[:4]}-{code[4:]}"


def check_client(client_id):
    if client_id != HEX_CLIENT_ID:
        raise OAuthError("invalid_client", "unknown client_id", status=401)


def check_scope(scope):
    """The requested scope, normalized; Hex asks for "api repositories"."""
    if not isinstance(scope, str) or not scope.split() or len(scope) > 200:
        raise OAuthError("invalid_scope", "scope must name at least one of " + ", ".join(SCOPES))
    unknown = [part for part in scope.split() if part not in SCOPES]
    if unknown:
        raise OAuthError("invalid_scope", f"unknown scope {unknown[0]}")
    return " ".join(dict.fromkeys(scope.split()))


def start(client_id, scope, client_name, ip, verification_uri):
    """A new device authorization: the response body for the client."""
    check_client(client_id)
    scope = check_scope(scope or "api repositories")
    client_name = (client_name if isinstance(client_name, str) and client_name.strip() else "unnamed device")
    client_name = client_name.strip()[:100]
    now = utcnow()
    window = now - datetime.timedelta(seconds=DEVICE_CODE_TTL)
    device_code = secrets.token_urlsafe(32)
    user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    with write_tx():
        DeviceAuthorization.delete().where(DeviceAuthorization.expires_at <= window).execute()
        recent = (DeviceAuthorization.select()
                  .where((DeviceAuthorization.requested_ip == ip) & (DeviceAuthorization.created_at > window))
                  .count())
        if recent >= MAX_STARTS_PER_ADDRESS:
            exc = RateLimited("too many device logins from this address; try again in a few minutes")
            exc.retry_after = DEVICE_CODE_TTL
            raise exc
        DeviceAuthorization.create(device_code_hash=_sha(device_code), user_code_hash=_sha(user_code),
                                   client_name=client_name, scope=scope, requested_ip=ip or "", created_at=now,
                                   expires_at=now + datetime.timedelta(seconds=DEVICE_CODE_TTL))
    # Hex prints the user code with a dash of its own in the middle: it gets the bare letters.
    return {"device_code": device_code, "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={format_user_code(user_code)}",
            "expires_in": DEVICE_CODE_TTL, "interval": POLL_INTERVAL}


def pending(user_code):
    """The undecided, unexpired device authorization a user code names, else NotFound."""
    code = normalize_user_code(user_code)
    row = DeviceAuthorization.get_or_none(DeviceAuthorization.user_code_hash == _sha(code)) if code else None
    if row is None or row.decision is not None or row.expires_at <= utcnow():
        raise NotFound("No pending device login has that code. Check it, or start `mix hex.user auth` again.")
    return row


def decide(user_code, user, approve, *, actor=audit.CLI):
    """The signed-in ``user`` approves or denies a device login; only the first decision counts."""
    row = pending(user_code)
    decision = "approved" if approve else "denied"
    with write_tx():
        changed = (DeviceAuthorization.update(user=user.id, decision=decision)
                   .where((DeviceAuthorization.id == row.id) & DeviceAuthorization.decision.is_null()).execute())
        if not changed:
            raise NotFound("That device login was already decided.")
        audit.record(actor, f"oauth.device_{'approve' if approve else 'deny'}", target=user.username,
                     client=row.client_name, scope=row.scope)
    return row


def poll(app_secret, client_id, device_code):
    """The token response once the user approved, else the OAuthError the client waits on."""
    check_client(client_id)
    if not isinstance(device_code, str) or not device_code:
        raise OAuthError("invalid_request", "device_code is required")
    with write_tx():  # errors are raised after it commits: a poll's own writes must stay
        outcome = _poll(device_code, utcnow())
    if isinstance(outcome, OAuthError):
        raise outcome
    grant, refresh_token = outcome
    return _token_response(app_secret, grant, refresh_token)


def _poll(device_code, now):
    row = DeviceAuthorization.get_or_none(DeviceAuthorization.device_code_hash == _sha(device_code))
    this_row = DeviceAuthorization.id == (row.id if row else 0)
    if row is None or row.used_at is not None:
        return OAuthError("invalid_grant", "unknown or already used device code")
    if row.expires_at <= now:
        return OAuthError("expired_token", "the device code expired; run `mix hex.user auth` again")
    if row.decision == "denied":
        DeviceAuthorization.update(used_at=now).where(this_row).execute()
        return OAuthError("access_denied", "the login was denied", status=403)
    if row.decision is None:
        too_soon = (row.last_polled_at is not None
                    and now - row.last_polled_at < datetime.timedelta(seconds=POLL_INTERVAL - 1))
        DeviceAuthorization.update(last_polled_at=now).where(this_row).execute()
        if too_soon:
            return OAuthError("slow_down", "polling too fast")
        return OAuthError("authorization_pending", "waiting for the user to approve the login")
    # Approved: single use (the write lock is held, so two polls at once cannot both get here).
    DeviceAuthorization.update(used_at=now).where(this_row).execute()
    user = User.get_by_id(row.user_id)
    if user.disabled_at is not None:
        return OAuthError("access_denied", "the account is disabled", status=403)
    refresh_token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    grant = OAuthGrant.create(user=user.id, client_name=row.client_name, scope=row.scope,
                              refresh_hash=_sha(refresh_token), created_at=now, refreshed_at=now)
    audit.record(audit.AuditContext(user=user, via="api"), "oauth.login", target=user.username,
                 client=row.client_name, scope=row.scope)
    return grant, refresh_token


def refresh(app_secret, client_id, refresh_token):
    """A new access token and a new refresh token for a grant's current refresh token."""
    check_client(client_id)
    if not isinstance(refresh_token, str) or not refresh_token:
        raise OAuthError("invalid_request", "refresh_token is required")
    digest, now = _sha(refresh_token), utcnow()
    invalid = OAuthError("invalid_grant", "the refresh token is revoked or unknown; run `mix hex.user auth`")
    with write_tx():
        grant = OAuthGrant.get_or_none(OAuthGrant.refresh_hash == digest)
        if grant is None:
            replayed = OAuthGrant.get_or_none(OAuthGrant.previous_refresh_hash == digest)
            if replayed is not None and replayed.revoked_at is None:
                # Only a copy can present a replaced token: stop every holder of the grant.
                OAuthGrant.update(revoked_at=now).where(OAuthGrant.id == replayed.id).execute()
                audit.record(audit.SYSTEM, "oauth.revoke", target=replayed.user.username,
                             client=replayed.client_name, reason="replaced refresh token used again")
        if grant is None or grant.revoked_at is not None or grant.user.disabled_at is not None \
                or grant.refreshed_at <= now - REFRESH_IDLE:
            invalid_now = True
        else:
            invalid_now = False
            new = REFRESH_PREFIX + secrets.token_urlsafe(32)
            OAuthGrant.update(refresh_hash=_sha(new), previous_refresh_hash=digest, refreshed_at=now)\
                .where(OAuthGrant.id == grant.id).execute()
    if invalid_now:  # raised outside the transaction, which must commit a replay's revocation
        raise invalid
    return _token_response(app_secret, grant, new)


def _token_mac(app_secret, grant_id, expires, scope_hex):
    return hmac.new(app_secret, f"oauth-grant|{grant_id}|{expires}|{scope_hex}".encode(),
                    hashlib.sha256).hexdigest()


def access_token(app_secret, grant, ttl=ACCESS_TTL, now=None):
    scope_hex = grant.scope.encode().hex()
    expires = int(now if now is not None else time.time()) + ttl
    return f"{TOKEN_PREFIX}{grant.id}_{expires}_{scope_hex}_{_token_mac(app_secret, grant.id, expires, scope_hex)}"


def _token_response(app_secret, grant, refresh_token):
    return {"access_token": access_token(app_secret, grant), "refresh_token": refresh_token,
            "token_type": "Bearer", "expires_in": ACCESS_TTL, "scope": grant.scope}


def _grant_of_access_token(app_secret, token, now=None):
    """The grant id an access token names if it is genuine and unexpired, else None."""
    match = _TOKEN_RE.fullmatch(token or "")
    if match is None:
        return None, None
    grant_id, expires, scope_hex, mac = int(match.group(1)), int(match.group(2)), match.group(3), match.group(4)
    if not hmac.compare_digest(_token_mac(app_secret, grant_id, expires, scope_hex), mac):
        return None, None
    if expires <= (now if now is not None else time.time()):
        return grant_id, "expired"
    return grant_id, bytes.fromhex(scope_hex).decode()


def authenticate(app_secret, token, finder=None, now=None):
    """(grant, scope as permissions) behind an access token, else Unauthenticated. ``finder``
    (grant id -> OAuthGrant or None) may be memoized; revocation and the user's state are checked
    on every use."""
    grant_id, scope = _grant_of_access_token(app_secret, token, now)
    if grant_id is None:
        raise Unauthenticated("invalid API key")
    if scope == "expired":
        raise Unauthenticated("token expired")
    grant = (finder or find_by_id)(grant_id)
    if grant is None or grant.revoked_at is not None or grant.user.disabled_at is not None:
        raise Unauthenticated("token revoked")
    return grant, tuple(tuple(p) for p in keys.parse_scope(scope))


def find_by_id(grant_id):
    return OAuthGrant.get_or_none(OAuthGrant.id == grant_id) if 0 < grant_id < 2 ** 63 else None


def revoke_token(app_secret, client_id, token):
    """RFC 7009 revocation of an access or refresh token: its grant ends. Unknown tokens are not an
    error (the client cannot do anything about them), so this never tells what exists."""
    check_client(client_id)
    if not isinstance(token, str) or not token:
        return
    grant_id, _scope = _grant_of_access_token(app_secret, token, now=0)
    grant = find_by_id(grant_id) if grant_id else OAuthGrant.get_or_none(OAuthGrant.refresh_hash == _sha(token))
    if grant is not None:
        revoke(grant, actor=audit.AuditContext(user=grant.user, via="api"))


def revoke(grant, *, actor=audit.CLI):
    """End a grant: its refresh token and every access token it issued stop working."""
    with write_tx():
        if OAuthGrant.update(revoked_at=utcnow()).where(
                (OAuthGrant.id == grant.id) & OAuthGrant.revoked_at.is_null()).execute():
            audit.record(actor, "oauth.revoke", target=grant.user.username, client=grant.client_name)


def end_all(user):
    """Revoke every grant of ``user``; call it inside the caller's write_tx (disabling a user)."""
    OAuthGrant.update(revoked_at=utcnow()).where(
        (OAuthGrant.user == user.id) & OAuthGrant.revoked_at.is_null()).execute()


def grants_of(user):
    """The user's live device logins, newest first."""
    return list(OAuthGrant.select()
                .where((OAuthGrant.user == user.id) & OAuthGrant.revoked_at.is_null()
                       & (OAuthGrant.refreshed_at > utcnow() - REFRESH_IDLE))
                .order_by(OAuthGrant.id.desc()))


def grant_of(user, grant_id):
    """One live grant of ``user`` by id (for a revoke button), else NotFound."""
    grant = find_by_id(grant_id)
    if grant is None or grant.user_id != user.id or grant.revoked_at is not None:
        raise NotFound("no such token")
    return grant
