"""Device logins and who is signed in: the verification page `mix hex.user auth` sends the user
to (approve or deny a device code), and the lists of a user's sessions and device tokens with a
revoke button (the user's own on the account page; any user's for an administrator)."""

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from appliance import accounts, sessions
from appliance.errors import Invalid, NotFound
from appliance.identity import device
from appliance.routes.keyauth import runtime
from webui import bp, forms
from webui.auth import actor
from webui.views import me, require_admin


@bp.route("/device", methods=["GET", "POST"])
@login_required
def device_verify():
    """GET shows the device login a code names (the code comes in verification_uri_complete, or
    is typed); POST approves or denies it."""
    user_code = (request.values.get("user_code") or "").strip()
    if request.method == "GET":
        if not user_code:
            return render_template("webui/device.html", pending=None)
        try:
            pending = device.pending(user_code)
        except NotFound as exc:
            return render_template("webui/device.html", pending=None, user_code=user_code,
                                   form_errors=forms.field_errors(exc, "user_code")), exc.status
        return render_template("webui/device.html", pending=pending,
                               user_code=device.format_user_code(device.normalize_user_code(user_code)))
    decision = request.form.get("decision")
    try:
        if decision not in ("approve", "deny"):
            raise Invalid("Validation error(s)", {"decision": "must be approve or deny"})
        row = device.decide(user_code, me(), decision == "approve", actor=actor())
    except (Invalid, NotFound) as exc:  # expired, decided in another tab, or a made-up decision
        return _device_refused(user_code, exc)
    if decision == "approve":
        flash(f"{row.client_name} is logged in as {me().username}; return to the terminal.", "info")
    else:
        flash(f"Login of {row.client_name} denied.", "info")
    return redirect(url_for("webui.account"))


def _device_refused(user_code, exc):
    """The device page again with the reason next to the buttons (the login is still shown when it
    is still pending), or next to the code typed when it is pending no more."""
    try:
        pending = device.pending(user_code)
    except NotFound:
        return render_template("webui/device.html", pending=None, user_code=user_code,
                               form_errors=forms.field_errors(exc, "user_code")), exc.status
    return render_template("webui/device.html", pending=pending,
                           user_code=device.format_user_code(device.normalize_user_code(user_code)),
                           form_errors=forms.action_error(exc, "decision")), exc.status


# A revoke button on a page older than the token's end (revoked elsewhere, or expired).
_TOKEN_GONE = {"tokens": "That token was already revoked or has expired; the list shows the live ones."}


def _access(user):
    return dict(subject=user, user_sessions=sessions.active(user),
                grants=runtime().grant_uses.overlay(device.grants_of(user)))


@bp.post("/account/sessions/<int:row_id>/end")
@login_required
def session_end(row_id):
    sessions.end_one(me(), row_id, actor=actor())
    flash("Session ended.", "info")
    return redirect(url_for("webui.account"))


@bp.post("/account/tokens/<int:grant_id>/revoke")
@login_required
def token_revoke(grant_id):
    try:
        device.revoke(device.grant_of(me(), grant_id), actor=actor())
    except NotFound:
        return render_template("webui/account.html", form_errors=_TOKEN_GONE), 404
    flash("Token revoked; that device must log in again.", "info")
    return redirect(url_for("webui.account"))


@bp.get("/users/<username>/access")
@login_required
def user_access(username):
    require_admin()
    return render_template("webui/user_access.html", **_access(accounts.get_user(username)))


@bp.post("/users/<username>/sessions/<int:row_id>/end")
@login_required
def user_session_end(username, row_id):
    require_admin()
    sessions.end_one(accounts.get_user(username), row_id, actor=actor())
    flash(f"Session of {username} ended.", "info")
    return redirect(url_for("webui.user_access", username=username))


@bp.post("/users/<username>/tokens/<int:grant_id>/revoke")
@login_required
def user_token_revoke(username, grant_id):
    require_admin()
    user = accounts.get_user(username)
    try:
        device.revoke(device.grant_of(user, grant_id), actor=actor())
    except NotFound:
        return render_template("webui/user_access.html", **_access(user), form_errors=_TOKEN_GONE), 404
    flash(f"Token of {username} revoked.", "info")
    return redirect(url_for("webui.user_access", username=username))


@bp.app_template_global()
def account_access():
    """What the account page lists for the signed-in user; the current session is marked."""
    current = sessions.current_row(session.get("sid"))
    return dict(_access(current_user.user), current_session_id=current.id if current else None)
