"""Device logins and who is signed in: the verification page `mix hex.user auth` sends the user
to (approve or deny a device code), and the lists of a user's sessions and device tokens with a
revoke button (the user's own on the account page; any user's for an administrator)."""

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from appliance import accounts, sessions
from appliance.errors import Invalid, NotFound
from appliance.identity import device
from appliance.routes.keyauth import runtime
from webui import bp
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
            flash(exc.message, "error")
            return render_template("webui/device.html", pending=None, user_code=user_code), 404
        return render_template("webui/device.html", pending=pending,
                               user_code=device.format_user_code(device.normalize_user_code(user_code)))
    decision = request.form.get("decision")
    if decision not in ("approve", "deny"):
        raise Invalid("Validation error(s)", {"decision": "must be approve or deny"})
    row = device.decide(user_code, me(), decision == "approve", actor=actor())
    if decision == "approve":
        flash(f"{row.client_name} is logged in as {me().username}; return to the terminal.", "info")
    else:
        flash(f"Login of {row.client_name} denied.", "info")
    return redirect(url_for("webui.account"))


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
    device.revoke(device.grant_of(me(), grant_id), actor=actor())
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
    device.revoke(device.grant_of(accounts.get_user(username), grant_id), actor=actor())
    flash(f"Token of {username} revoked.", "info")
    return redirect(url_for("webui.user_access", username=username))


@bp.app_template_global()
def account_access():
    """What the account page lists for the signed-in user; the current session is marked."""
    current = sessions.current_row(session.get("sid"))
    return dict(_access(current_user.user), current_session_id=current.id if current else None)
