"""Two-factor authentication pages (appliance/identity/totp.py): the code asked for after the
password, setting it up (QR code, secret, recovery codes shown once), turning it off, and the
admin's reset. With ``require_2fa_for_admins`` a local admin without it may only set it up.

Between the password and the code the browser holds only a short-lived, signed note of who got
the password right (no session exists yet), so a stolen note still needs the code.
"""

import dataclasses
import time

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from appliance import accounts, audit, identity, loginlimit
from appliance.errors import Invalid, NotFound, RateLimited, Unauthenticated
from appliance.identity import totp
from appliance.routes.keyauth import client_ip, runtime
from webui import bp, forms
from webui.auth import PENDING_SECOND_FACTOR as PENDING
from webui.auth import _same_site_path, _start_session, actor
from webui.views import require_admin

PENDING_SECONDS = 300  # time to type the code after the password
# What an admin who must set up two-factor may still reach.
_OPEN_TO_UNENROLLED = {"webui.two_factor", "webui.two_factor_enable", "webui.two_factor_restart", "webui.logout",
                       "webui.static", "webui.login", "webui.login_code"}


@bp.before_request
def _admins_set_up_two_factor_first():
    if (request.endpoint not in _OPEN_TO_UNENROLLED
            and current_user.is_authenticated and totp.required(runtime().config, current_user.user)
            and not totp.is_enabled(current_user.user)):
        flash("Administrators must set up two-factor authentication first.", "error")
        return redirect(url_for("webui.two_factor"))
    return None


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    pending = session.get(PENDING)
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        session.pop(PENDING, None)
        flash("Log in again.", "error")
        return redirect(url_for("webui.login"))
    if request.method == "GET":
        return render_template("webui/login_code.html")
    try:
        user = accounts.get_user(pending["username"])
        loginlimit.checked_code(runtime().login_limits, user, request.form.get("code"), client_ip(),
                                runtime().app_secret, actor=actor())
    except RateLimited as exc:
        return render_template("webui/login_code.html", form_errors=forms.field_errors(exc, "code")), exc.status
    except (Unauthenticated, NotFound):
        return render_template("webui/login_code.html", form_errors=_WRONG_CODE), 401
    if user.disabled_at is not None:
        return redirect(url_for("webui.login"))
    _start_session(user)
    audit.record_login(dataclasses.replace(actor(), user=user), "user.login", user.username)
    return redirect(_same_site_path(pending.get("next")) or url_for("webui.index"))


# Codes typed into a refused form are never shown again, like passwords.
_WRONG_CODE = {"code": "That two-factor code is wrong or was already used."}


@bp.get("/account/2fa")
@login_required
def two_factor():
    return _two_factor_page()


def _two_factor_page(status=200, **form):
    user = current_user.user
    if user.auth_source != identity.LOCAL:
        return render_template("webui/two_factor.html", directory=True)
    if totp.is_enabled(user):
        return render_template("webui/two_factor.html", codes_left=totp.recovery_codes_left(user), **form), status
    secret = totp.pending_secret(runtime().app_secret, user) or totp.begin(runtime().app_secret, user)
    uri = totp.provisioning_uri(secret, user.username)
    return (render_template("webui/two_factor.html", secret=secret, qr_svg=totp.qr_svg(uri), **form), status,
            {"Cache-Control": "no-store"})


@bp.post("/account/2fa/restart")
@login_required
def two_factor_restart():
    """A new secret (the QR code was seen by someone else, or scanned into a lost phone)."""
    if current_user.user.auth_source == identity.LOCAL and not totp.is_enabled(current_user.user):
        totp.begin(runtime().app_secret, current_user.user)
    return redirect(url_for("webui.two_factor"))


@bp.post("/account/2fa/enable")
@login_required
def two_factor_enable():
    user = current_user.user
    if user.auth_source != identity.LOCAL:
        abort(404)
    try:
        codes = totp.enable(runtime().app_secret, user, request.form.get("code"), actor=actor())
    except Invalid as exc:
        return _two_factor_page(exc.status, form_errors=forms.field_errors(exc, "code"))
    # Shown here once: only their hashes are kept (and no cache keeps a copy).
    return render_template("webui/two_factor_codes.html", codes=codes), 200, {"Cache-Control": "no-store"}


@bp.post("/account/2fa/disable")
@login_required
def two_factor_disable():
    """Turning it off takes a current code (or a recovery code): a borrowed session must not."""
    user = current_user.user
    try:
        loginlimit.checked_code(runtime().login_limits, user, request.form.get("code"), client_ip(),
                                runtime().app_secret, actor=actor())
    except RateLimited as exc:
        return _two_factor_page(exc.status, form_errors=forms.field_errors(exc, "code"))
    except Unauthenticated:
        return _two_factor_page(422, form_errors=_WRONG_CODE)
    totp.disable(user, actor=actor())
    flash("Two-factor authentication is off.", "info")
    return redirect(url_for("webui.two_factor"))


@bp.post("/users/<username>/2fa/reset")
@login_required
def user_reset_two_factor(username):
    require_admin()
    totp.reset(accounts.get_user(username), actor=actor())
    flash(f"Two-factor authentication of {username} reset: they can log in with the password and set it up again.",
          "info")
    return redirect(url_for("webui.users"))
