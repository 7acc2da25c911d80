"""Private docs at /docs/ORG/NAME/VERSION/PATH, for logged-in members or a key with docs access.

Uploaded HTML is untrusted: it is served from its own path prefix with a sandboxing
Content-Security-Policy, so it runs in an opaque origin and can neither read the admin session
nor act as the user.
"""

from flask import Blueprint, Response, redirect, request, url_for
from flask_login import current_user

from appliance import docs, orgs, permissions
from appliance.errors import NotFound
from appliance.permissions import Principal
from appliance.routes.keyauth import current_principal, runtime

bp = Blueprint("docs", __name__, url_prefix="/docs")

SANDBOX = ("sandbox allow-scripts allow-popups; default-src 'self' 'unsafe-inline' data:; "
           "img-src 'self' data:; frame-ancestors 'self'")


class _LoginFirst(Exception):
    """No key and no session: send the browser to the login form, never a Basic challenge (a
    browser would cache Basic credentials for realm "hex" and replay them to the API)."""


@bp.errorhandler(_LoginFirst)
def _login_first(_exc):
    return redirect(url_for("webui.login", next=request.path))


def _org_for_reader(org_name):
    reader = current_principal()
    if reader is None and current_user.is_authenticated:
        reader = Principal(user=current_user.user)
    if reader is None:
        raise _LoginFirst()
    try:
        org = orgs.get(org_name)
    except NotFound:
        raise NotFound() from None
    if not permissions.can(reader, permissions.READ_DOCS, org, orgs.role_of):
        raise NotFound()
    return org


@bp.get("/<org_name>/<name>/")
def latest(org_name, name):
    org = _org_for_reader(org_name)
    return redirect(url_for("docs.page", org_name=org.name, name=name, version=docs.latest_with_docs(org, name),
                            path=""))


@bp.get("/<org_name>/<name>/<version>/", defaults={"path": ""})
@bp.get("/<org_name>/<name>/<version>/<path:path>")
def page(org_name, name, version, path):
    org = _org_for_reader(org_name)
    data, content_type = docs.read_file(runtime(), org, name, version, path)
    return Response(data, content_type=content_type, headers={
        "Content-Security-Policy": SANDBOX, "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300", "Referrer-Policy": "no-referrer"})
