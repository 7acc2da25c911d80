"""OAuth 2.0 under /api/oauth, as Hex >= 2.4 calls it (hex-protocol.md §5.9, §5.10): the device
login of `mix hex.user auth`, refreshing its tokens, revoking them (`mix hex.user deauth`), and the
exchange of a repository key for a token. Bodies are ETF (or JSON) maps; errors answer
``{error, error_description}``, the shape Hex matches on.
"""

from flask import Blueprint

from appliance import keys
from appliance.errors import Invalid, OAuthError, Unauthenticated
from appliance.identity import device
from appliance.routes import api
from appliance.routes.keyauth import client_ip, runtime
from appliance.routes.responses import read_body, render

bp = Blueprint("oauth", __name__, url_prefix="/api/oauth")
bp.before_request(api.refuse_cross_site_writes)


@bp.errorhandler(OAuthError)
def _oauth_error(exc):
    return render({"error": exc.code, "error_description": exc.message}, status=exc.status)


def verification_uri():
    return runtime().config.external_url.rstrip("/") + "/admin/device"


@bp.post("/device_authorization")
def device_authorization():
    body = read_body()
    return render(device.start(body.get("client_id"), body.get("scope"), body.get("name"), client_ip(),
                               verification_uri()))


@bp.post("/token")
def token():
    body = read_body()
    grant_type = body.get("grant_type")
    if grant_type == device.DEVICE_GRANT:
        return render(device.poll(runtime().app_secret, body.get("client_id"), body.get("device_code")))
    if grant_type == "refresh_token":
        return render(device.refresh(runtime().app_secret, body.get("client_id"), body.get("refresh_token")))
    if grant_type == "client_credentials":
        return _key_exchange(body)
    raise OAuthError("unsupported_grant_type", f"unsupported grant_type {grant_type!r}")


def _key_exchange(body):
    """client_credentials: mix exchanges a repository key for a token (hex-protocol.md §5.10).

    The token (keys.issue_token) may do what both its key and the requested scope allow
    ("repositories", Hex's request, is read-only), for keys.TOKEN_TTL seconds, and stops working
    the moment the key is revoked; Hex saves it in hex.config instead of the key.
    """
    secret = body.get("client_secret")
    try:
        key = keys.authenticate(runtime().app_secret, secret if isinstance(secret, str) else "")
    except Unauthenticated as exc:
        raise OAuthError("invalid_client", exc.message, status=401) from None
    scope = body.get("scope") or keys.DEFAULT_SCOPE
    try:
        token = keys.issue_token(runtime().app_secret, key, scope)
    except Invalid:
        raise OAuthError("invalid_scope", f"unknown scope {scope!r}") from None
    return render({"access_token": token, "token_type": "Bearer", "expires_in": keys.TOKEN_TTL, "scope": scope})


@bp.post("/revoke")
def revoke():
    """RFC 7009: always 200, whether the token existed or not."""
    body = read_body()
    device.revoke_token(runtime().app_secret, body.get("client_id"), body.get("token"))
    return render({})
