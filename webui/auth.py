"""Log in and out, change one's own password; failed logins are rate-limited.

The session lives on the server (appliance/sessions.py): the signed cookie carries only its id,
under ``sid``, and a request is signed in while that session exists.
"""

import dataclasses
import time
import urllib.parse

import flask_login
from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from appliance import accounts, audit, identity, loginlimit, sessions
from appliance.identity import totp
from appliance.errors import DirectoryUnavailable, Invalid, RateLimited, Unauthenticated
from appliance.routes.keyauth import client_ip, runtime
from webui import bp, forms, login_manager


class LoginUser(flask_login.UserMixin):
    """The session's view of a models.User."""

    def __init__(self, user):
        self.user = user
        self.id = str(user.id)


@login_manager.user_loader
def load_user(user_id):
    user = sessions.user_of(session.get("sid"))
    if user is None or str(user.id) != user_id:
        return None  # logged out, ended elsewhere, expired, or the user was disabled
    return LoginUser(user)


def _start_session(user):
    """A fresh session for ``user`` in this browser: nothing planted in a pre-login cookie (a
    CSRF token, say) survives, and the session id changes with every login and password change."""
    session.clear()
    session["sid"] = sessions.start(user)
    flask_login.login_user(LoginUser(user))


def checked_password(username, password):
    """loginlimit.checked_login with the server's limits, shared with Basic auth on the API."""
    return loginlimit.checked_login(runtime().login_limits, username, password, client_ip(),
                                    runtime().config.bcrypt_rounds, runtime().directory)


def actor():
    """AuditContext of the logged-in user for service calls."""
    return audit.AuditContext(user=current_user.user if current_user.is_authenticated else None, ip=client_ip(),
                              user_agent=request.headers.get("User-Agent"), via="web")


# Set after a right password when a code must follow (webui/twofactor.py): no session exists yet.
PENDING_SECOND_FACTOR = "2fa_pending"


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Log in with username and password (bcrypt), within the limits of appliance/loginlimit.py."""
    if request.method == "GET":
        return render_template("webui/login.html")
    username = (request.form.get("username") or "").strip().lower()
    try:
        user = checked_password(username, request.form.get("password"))
    except (RateLimited, Unauthenticated, DirectoryUnavailable) as exc:
        if isinstance(exc, RateLimited):
            audit.record_login(actor(), "user.login_locked", username)
        elif isinstance(exc, Unauthenticated):  # a wrong password, not the directory being down
            audit.record_login(actor(), "user.login_failed", username)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return _login_refused(username, forms.sentence("password", exc.message), exc.status, headers)
    config = runtime().config
    if config.sso_only and config.oidc_issuer and not user.is_admin:
        # Checked after the password, so the answer tells nothing to someone who does not know it.
        return _login_refused(username, f"Sign in with {config.oidc_display_name}: passwords are for "
                                        "administrators only.", 403)
    if totp.is_enabled(user):
        session.clear()
        session[PENDING_SECOND_FACTOR] = {"username": user.username, "at": time.time(),
                                          "next": request.args.get("next")}
        return redirect(url_for("webui.login_code"))
    _start_session(user)
    audit.record_login(dataclasses.replace(actor(), user=user), "user.login", user.username)
    return redirect(_same_site_path(request.args.get("next")) or url_for("webui.index"))


def _login_refused(username, sentence, status, headers=None):
    """The login form again: the username kept, the password never, the reason under it."""
    return (render_template("webui/login.html", username=username, form_errors={"password": sentence}),
            status, headers or {})


def _same_site_path(target):
    """``target`` if it is a path on this site, else None: an open redirect would let a link send
    a freshly logged-in user elsewhere. Browsers drop tabs and newlines from URLs and read a
    backslash as a slash, so any control character or backslash disqualifies a target."""
    if not target or any(ord(c) < 0x20 or c in "\\\x7f" for c in target):
        return None
    parts = urllib.parse.urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc:
        return None
    return target


@bp.post("/logout")
@login_required
def logout():
    sessions.end(session.get("sid"))
    flask_login.logout_user()
    session.clear()
    flash("Logged out.", "info")
    return redirect(url_for("webui.login"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    """Change one's own password (the current one is required, and guessing it is limited like
    logging in: a borrowed session must not become a way to learn the password)."""
    if request.method == "POST":
        if current_user.user.auth_source != identity.LOCAL:
            flash("Your password is the company directory's: change it there.", "error")
            return render_template("webui/account.html"), 422
        # Every field here is a password: none is ever shown again, only the reason next to it.
        try:
            checked_password(current_user.user.username, request.form.get("current_password"))
        except RateLimited as exc:
            return _password_refused("current_password", forms.sentence("current_password", exc.message), exc.status)
        except Unauthenticated:
            return _password_refused("current_password", "The current password is wrong.", 422)
        if request.form.get("new_password") != request.form.get("confirm_password"):
            return _password_refused("confirm_password", "The new passwords do not match.", 422)
        try:
            accounts.set_password(current_user.user, request.form.get("new_password") or "",
                                  rounds=runtime().config.bcrypt_rounds, actor=actor())
        except Invalid as exc:
            return render_template("webui/account.html", form_errors=forms.field_errors(
                exc, "new_password", rename={"password": "new_password"})), exc.status
        # set_password ended every session of the user; this browser goes on in a new one.
        _start_session(current_user.user)
        flash("Password changed.", "info")
        return redirect(url_for("webui.account"))
    return render_template("webui/account.html")


def _password_refused(field, sentence, status):
    return render_template("webui/account.html", form_errors={field: sentence}), status


@bp.post("/account/sessions")
@login_required
def end_other_sessions():
    """Sign out every other browser (a lost laptop, a shared machine); this one stays."""
    sessions.end_others(current_user.user, session.get("sid"), actor=actor())
    flash("Signed out of every other session.", "info")
    return redirect(url_for("webui.account"))
