"""Key pages: the user's own keys, creating (organization or user keys), rotating and revoking.

A POST that makes a secret redirects to the one page that shows it (post/redirect/get): the
secret waits in the session until that page is shown once (webui/once.py), so reloading the page
shows no secret and never makes a second key."""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from appliance import keys, orgs, permissions
from appliance.errors import Conflict, Forbidden, Invalid
from appliance.routes.keyauth import runtime
from webui import bp, forms, once
from webui.auth import actor
from webui.views import client_setup, me, org_page, principal, visible_org

def _show_once(key, secret, **about):
    once.put("key", key.id, secret, **about)
    return redirect(url_for("webui.key_created", key_id=key.id), code=303)


@bp.get("/keys/<int:key_id>/created")
@login_required
def key_created(key_id):
    """The new key's secret, exactly once; afterwards the page says it was shown."""
    key = _manageable_key(key_id)
    secret, pending = once.take("key", key.id)
    org = key.organization if key.organization_id else None
    old = keys.find_by_id(pending["rotated_from"]) if pending.get("rotated_from") else None
    response = render_template("webui/key_created.html", key=key, secret=secret, org=org, old=old,
                               setup=client_setup(org, repo_key=secret) if org and secret else None)
    return response, 200, {"Cache-Control": "no-store"}


@bp.post("/orgs/<org_name>/keys")
@login_required
def org_key_create(org_name):
    org = visible_org(org_name, permissions.ADMIN)
    try:
        perms = forms.permissions(request.form, org.name)
        key, secret = keys.create(runtime().app_secret, request.form.get("name"), perms, organization=org,
                                  actor=actor())
    except (Invalid, Conflict) as exc:
        return org_page(org, form_errors=forms.field_errors(exc, "name"), form_typed=request.form,
                        key_form=True), exc.status
    return _show_once(key, secret)


@bp.get("/keys")
@login_required
def user_keys():
    return _keys_page()


def _keys_page(**form):
    memberships = orgs.memberships_of(me())
    return render_template("webui/keys.html", keys=runtime().key_uses.overlay(keys.list_for(user=me())),
                           memberships=memberships, grace_choices=forms.GRACE_CHOICES, **form)


@bp.post("/keys")
@login_required
def user_key_create():
    try:
        perms = forms.user_permissions(request.form)
        permissions.grantable(principal(), perms, orgs.role_of, orgs.get)
        key, secret = keys.create(runtime().app_secret, request.form.get("name"), perms, user=me(), actor=actor())
    except (Invalid, Conflict, Forbidden) as exc:
        field = "permissions" if isinstance(exc, Forbidden) else "name"
        return _keys_page(form_errors=forms.field_errors(exc, field), form_typed=request.form), exc.status
    return _show_once(key, secret)


def _manageable_key(key_id):
    key = keys.get_by_id(key_id)
    if key.user_id is not None:
        if key.user_id != me().id and not me().is_admin:
            abort(404, description="No such key.")
    else:
        visible_org(key.organization.name, permissions.ADMIN)
    return key


def _back(key):
    if key.organization_id:
        return redirect(url_for("webui.org_show", org_name=key.organization.name))
    return redirect(url_for("webui.user_keys"))


@bp.post("/keys/<int:key_id>/revoke")
@login_required
def key_revoke(key_id):
    """Without confirm=yes, a page asking whether to revoke (its form posts here again)."""
    key = _manageable_key(key_id)
    if request.form.get("confirm") != "yes":
        return render_template("webui/key_revoke.html", key=key)
    if not key.is_active():
        flash(f"Key {key.name} was already revoked.", "info")
        return _back(key)
    keys.revoke(key, actor=actor())
    flash(f"Key {key.name} revoked; it no longer works.", "info")
    return _back(key)


@bp.post("/keys/<int:key_id>/rotate")
@login_required
def key_rotate(key_id):
    """Replace the secret; the old one stops after the chosen grace period (a day unless chosen)."""
    key = _manageable_key(key_id)
    try:
        grace = forms.choice(request.form, "grace_seconds", [g for g, _ in forms.GRACE_CHOICES], int)
        new_key, secret = keys.rotate(runtime().app_secret, key, grace_seconds=grace, actor=actor())
    except (Invalid, Conflict) as exc:  # a stale page (rotated or revoked meanwhile), a made-up choice
        form = dict(form_errors=forms.action_error(exc, f"key-{key.id}"),
                    form_typed={"key": str(key.id), **request.form})
        if key.organization_id:
            return org_page(key.organization, **form), exc.status
        return _keys_page(**form), exc.status
    return _show_once(new_key, secret, rotated_from=key.id)
