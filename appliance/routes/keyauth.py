"""Who is calling: the Authorization header turned into a Principal.

Hex clients send the key raw (``authorization: KEY``), or ``Bearer TOKEN`` after an OAuth key
exchange; URL credentials and ~/.netrc arrive as ``Basic`` (hex-protocol.md §2.2, §5.3). Basic
carries either a username and password or, as in ``http://user:KEY@host``, a key as password.
The header's value is never logged.
"""

import base64
import binascii

from flask import current_app, g, request

from appliance import accounts, keys
from appliance.errors import Unauthenticated
from appliance.permissions import Principal


def runtime():
    return current_app.extensions["hexvault"]


def client_ip():
    if runtime().config.trusted_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.remote_addr


def _from_key(secret):
    rt = runtime()
    key = keys.authenticate(rt.app_secret, secret)
    keys.touch(key, client_ip(), request.headers.get("User-Agent"))
    if key.user_id is not None and key.user.disabled_at is not None:
        raise Unauthenticated("invalid API key")
    return Principal(user=key.user if key.user_id else None, key=key)


def _from_basic(encoded):
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("invalid username and password combination") from None
    if len(password) == 32 and all(c in "0123456789abcdef" for c in password):
        try:
            return _from_key(password)
        except Unauthenticated:
            pass
    return Principal(user=accounts.check_login(username, password))


def current_principal():
    """The caller, or None when no credential was sent; raises Unauthenticated for a bad one."""
    if "principal" in g:
        return g.principal
    header = (request.headers.get("Authorization") or "").strip()
    principal = None
    if header:
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "basic" and rest:
            principal = _from_basic(rest.strip())
        elif scheme.lower() == "bearer" and rest:
            # Tokens from /api/oauth/token are the key itself (see routes/api.py oauth_token).
            principal = _from_key(rest.strip())
        else:
            principal = _from_key(header)
    g.principal = principal
    return principal


def require_principal():
    principal = current_principal()
    if principal is None:
        raise Unauthenticated("missing authentication information")
    return principal
