"""User accounts (appliance administrators): the list, one page per user with its memberships,
password reset behind a confirmation page, disable/enable, delete."""

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required

from appliance import accounts, orgs
from appliance.errors import Conflict, Invalid
from appliance.routes.keyauth import runtime
from webui import bp, forms
from webui.auth import actor
from webui.views import require_admin


@bp.route("/users", methods=["GET", "POST"])
@login_required
def users():
    require_admin()
    if request.method == "POST":
        try:
            user = accounts.create_user(request.form.get("username"), request.form.get("password"),
                                        email=request.form.get("email"), full_name=request.form.get("full_name"),
                                        is_admin=bool(request.form.get("is_admin")),
                                        rounds=runtime().config.bcrypt_rounds, actor=actor())
        except (Invalid, Conflict) as exc:
            typed = {k: v for k, v in request.form.items() if k != "password"}  # never echo a password
            return _users_page(form_errors=forms.field_errors(exc, "username"), form_typed=typed), exc.status
        flash(f"User {user.username} created.", "info")
        return redirect(url_for("webui.users"))
    return _users_page()


def _users_page(**form):
    every = accounts.list_users()
    memberships = {u.id: orgs.memberships_of(u) for u in every}
    return render_template("webui/users.html", users=every, memberships=memberships,
                           last_logins=accounts.last_logins(), **form)


@bp.get("/users/<username>")
@login_required
def user_show(username):
    require_admin()
    return _user_page(accounts.get_user(username))


def _user_page(user, **form):
    return render_template("webui/user.html", user=user, memberships=orgs.memberships_of(user),
                           last_login=accounts.last_logins().get(user.username), **form)


@bp.route("/users/<username>/password", methods=["GET", "POST"])
@login_required
def user_reset_password(username):
    """GET asks for confirmation (and the new password); POST sets it and ends the user's sessions."""
    require_admin()
    user = accounts.get_user(username)
    if request.method == "GET":
        return render_template("webui/user_password.html", user=user)
    try:
        accounts.set_password(user, request.form.get("password") or "", rounds=runtime().config.bcrypt_rounds,
                              actor=actor())
    except Invalid as exc:  # the password itself is never shown again
        return render_template("webui/user_password.html", user=user,
                               form_errors=forms.field_errors(exc, "password")), exc.status
    flash(f"Password of {user.username} reset; their sessions were ended.", "info")
    return redirect(url_for("webui.user_show", username=user.username))


@bp.post("/users/<username>/disabled")
@login_required
def user_set_disabled(username):
    """Disable (or enable again) an account: its logins, sessions and keys stop at once; its
    memberships stay, so enabling it restores everything."""
    require_admin()
    user, disable = accounts.get_user(username), request.form.get("disabled") == "1"
    try:
        accounts.set_disabled(user, disable, actor=actor())
    except Invalid as exc:  # oneself, or the last administrator: said next to the button pressed
        if request.form.get("from") == "users":
            return _users_page(form_errors=forms.action_error(exc, f"user-{user.username}")), exc.status
        return _user_page(user, form_errors=forms.action_error(exc, "disabled")), exc.status
    flash(f"{user.username} {'disabled' if disable else 'enabled'}.", "info")
    return redirect(url_for("webui.users"))


@bp.post("/users/<username>/delete")
@login_required
def user_delete(username):
    """Delete an account for good, once its name is typed; the audit log keeps its rows."""
    require_admin()
    user = accounts.get_user(username)
    try:
        if (request.form.get("confirm") or "").strip() != user.username:
            raise Invalid("Validation error(s)", {"confirm": f"Type {user.username} to confirm the deletion."})
        accounts.delete_user(user, actor=actor())
    except Invalid as exc:  # a name typed wrong, oneself, the last administrator
        return _user_page(user, form_errors=forms.action_error(exc, "confirm"), form_typed=request.form), exc.status
    flash(f"User {user.username} deleted; their keys no longer work.", "info")
    return redirect(url_for("webui.users"))
