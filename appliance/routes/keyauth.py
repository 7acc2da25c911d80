"""Who is calling: the Authorization header turned into a Principal.

Hex clients send the key raw (``authorization: KEY``), or ``Bearer TOKEN`` after an OAuth key
exchange; URL credentials and ~/.netrc arrive as ``Basic`` (hex-protocol.md §2.2, §5.3). Basic
carries either a username and password or, as in ``http://user:KEY@host``, a key as password.
The header's value is never logged.
"""

import base64

from flask import current_app, g, request

from appliance import events, keys, loginlimit
from appliance.errors import Unauthenticated
from appliance.identity import device, totp
from appliance.permissions import Principal


def runtime():
    return current_app.extensions["hexvault"]


def client_ip():
    """The caller's address; behind a trusted proxy waitress has already put the forwarded one
    here (serving.waitress_options)."""
    return request.remote_addr


def _from_device_token(rt, token, ip, user_agent):
    grant, scope = rt.lookups.grant(rt.app_secret, token)
    rt.grant_uses.note(grant, ip, user_agent)
    events.emit("key.used", owner="user", form="token")
    return Principal(user=grant.user, scope=scope)


def _from_key(rt, secret, ip, user_agent):
    if secret.startswith(device.TOKEN_PREFIX):  # `mix hex.user auth`'s login (identity/device.py)
        return _from_device_token(rt, secret, ip, user_agent)
    scope = None
    if secret.startswith(keys.TOKEN_PREFIX):
        key, scope = rt.lookups.token_key(rt.app_secret, secret)
    else:
        key = rt.lookups.key(rt.app_secret, secret)
    rt.key_uses.note(key, ip, user_agent)  # written later, off the request path (keyuse.py)
    if key.user_id is not None and key.user.disabled_at is not None:
        raise Unauthenticated("invalid API key")
    events.emit("key.used", owner="user" if key.user_id is not None else "organization",
                form="key" if scope is None else "token")
    return Principal(user=key.user if key.user_id else None, key=key, scope=scope)


def _from_basic(rt, encoded, ip, user_agent):
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except ValueError:  # bad base64 (binascii.Error), non-ASCII characters in it, or undecodable UTF-8
        raise Unauthenticated("invalid username and password combination") from None
    if len(password) == 32 and all(c in "0123456789abcdef" for c in password):
        try:
            return _from_key(rt, password, ip, user_agent)
        except Unauthenticated:
            pass
    # A password: the same failure limits as the login form, or Basic auth would be the way to guess.
    user = loginlimit.checked_login(rt.login_limits, username, password, ip, rt.config.bcrypt_rounds, rt.directory)
    # A password alone must not get around a second factor (Basic auth has no room for a code).
    if totp.is_enabled(user):
        raise Unauthenticated("two-factor authentication is on for this account: use an API key instead of the password")
    if totp.required(rt.config, user):
        raise Unauthenticated("administrators must set up two-factor authentication in the web UI first; "
                              "then use an API key instead of the password")
    return Principal(user=user)


def principal_for(rt, header, ip, user_agent):
    """The Principal an Authorization header names, None without one; Unauthenticated if bad.
    Framework-free, so the repository fast path (routes/fastpath.py) uses it too."""
    header = (header or "").strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    if scheme.lower() == "basic" and rest:
        return _from_basic(rt, rest.strip(), ip, user_agent)
    if scheme.lower() == "bearer" and rest:
        # An access token from /api/oauth/token, or a key sent as a bearer token.
        return _from_key(rt, rest.strip(), ip, user_agent)
    return _from_key(rt, header, ip, user_agent)


def current_principal():
    """The caller of this request (cached on g), or None when no credential was sent."""
    if "principal" not in g:
        g.principal = principal_for(runtime(), request.headers.get("Authorization"), client_ip(),
                                    request.headers.get("User-Agent"))
    return g.principal


def require_principal():
    principal = current_principal()
    if principal is None:
        raise Unauthenticated("missing authentication information")
    return principal
