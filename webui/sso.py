"""Single sign-on to the web UI with OpenID Connect (appliance/identity/oidc.py): the "Sign in
with ..." button starts it, the provider sends the browser back to the callback."""

from flask import flash, redirect, render_template, request, session

from appliance import audit
from appliance.errors import Unauthenticated
from appliance.identity import oidc
from appliance.routes.keyauth import client_ip, runtime
from webui import bp
from webui.auth import _same_site_path, _start_session

PENDING = "sso_pending"


def _redirect_uri():
    return runtime().config.external_url.rstrip("/") + "/admin/login/sso/callback"


def _provider():
    provider = oidc.provider_for(runtime().config)
    if provider is None:
        raise Unauthenticated("single sign-on is not configured")
    return provider


@bp.get("/login/sso")
def sso_start():
    url, pending = _provider().begin(_redirect_uri())
    pending["next"] = _same_site_path(request.args.get("next"))
    session[PENDING] = pending
    return redirect(url)


@bp.get("/login/sso/callback")
def sso_callback():
    pending = session.pop(PENDING, None)  # single use, whatever happens next
    try:
        claims = _provider().finish(_redirect_uri(), pending, request.args)
        user = oidc.user_for(claims, runtime().config, ip=client_ip(), user_agent=request.headers.get("User-Agent"))
    except Unauthenticated as exc:
        flash(exc.message[:1].upper() + exc.message[1:] + ".", "error")
        return render_template("webui/login.html"), 401
    _start_session(user)
    audit.record_login(audit.AuditContext(user=user, ip=client_ip(), user_agent=request.headers.get("User-Agent"),
                                          via="sso"), "user.login", user.username)
    return redirect((pending or {}).get("next") or "/admin/")
