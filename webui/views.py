"""Admin pages: organizations and members, the registry
signing key and the audit log (keys: webui/keys.py, users: webui/users.py). Each view parses the form, calls one service, renders."""

import dataclasses
import functools

from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required

from appliance import accounts, audit, catalog, clientsetup, keys, orgs, packages, permissions, registry_builder
from appliance.errors import Conflict, Forbidden, Invalid, NotFound
from appliance.models import SigningKey
from appliance.ops import disk
from appliance.permissions import Principal
from appliance.routes.keyauth import runtime
from appliance.runtime import create_signing_key
from webui import bp, forms
from webui.auth import actor



def me():
    return current_user.user


def principal():
    return Principal(user=me())


def visible_org(name, action=permissions.API_READ):
    """The organization if the user may see it (404 otherwise) and do ``action`` (403)."""
    try:
        org = orgs.get(name)
    except NotFound:
        abort(404, description="No such organization.")
    if not permissions.can(principal(), permissions.API_READ, org, orgs.role_of):
        abort(404, description="No such organization.")
    if action != permissions.API_READ and not permissions.can(principal(), action, org, orgs.role_of):
        raise Forbidden("Only administrators of this organization may do that.")
    return org


def require_admin():
    if not me().is_admin:
        raise Forbidden("Only appliance administrators may do that.")


def client_setup(org, repo_key=None, api_key=None):
    signing = SigningKey.current()
    extra = {k: v for k, v in (("repo_key", repo_key), ("api_key", api_key)) if v}
    config = runtime().config
    return clientsetup.for_org(config.external_url, org.name, signing.public_pem, signing.fingerprint,
                               ca=clientsetup.company_ca(config), **extra)


@bp.get("/")
@login_required
def index():
    """Organizations the user belongs to (all of them for administrators)."""
    return _index_page()


def _index_page(**form):
    if me().is_admin:
        rows = [(o, orgs.role_of(me(), o) or "appliance admin") for o in orgs.list_all()]
    else:
        rows = [(m.organization, m.role) for m in orgs.memberships_of(me())]
    disk_usage = disk.usage(runtime().config) if me().is_admin else None
    return render_template("webui/index.html", rows=rows, disk=disk_usage, human=disk.human, **form)


def _form_failed(page, exc, field, **extra):
    """The form's page again, with what was typed and the errors next to their fields."""
    return page(form_errors=forms.field_errors(exc, field), form_typed=request.form, **extra), exc.status


@bp.post("/orgs")
@login_required
def org_create():
    require_admin()
    try:
        org = orgs.create(request.form.get("name"), actor=actor())
    except (Invalid, Conflict) as exc:
        return _form_failed(_index_page, exc, "name")
    registry_builder.ensure_index(runtime(), org)
    flash(f"Organization {org.name} created; its repository is at /repos/{org.name}.", "info")
    return redirect(url_for("webui.org_show", org_name=org.name))


@bp.get("/orgs/<org_name>")
@login_required
def org_show(org_name):
    return org_page(visible_org(org_name))


def org_page(org, **form):
    """Members and keys first: what an organization's administrators come here for."""
    is_admin = permissions.can(principal(), permissions.ADMIN, org, orgs.role_of)
    return render_template("webui/org.html", org=org, members=orgs.members(org), is_admin=is_admin,
                           org_keys=runtime().key_uses.overlay(keys.list_for(organization=org)) if is_admin else [],
                           setup=client_setup(org),
                           packages=catalog.listing(packages.search([org], None, per_page=10)),
                           roles=("read", "write", "admin"),
                           grace_choices=forms.GRACE_CHOICES, package_count=orgs.package_count(org),
                           unbuildable=registry_builder.failing_packages(runtime(), org) if is_admin else {},
                           **form)


@bp.get("/orgs/<org_name>/setup")
@login_required
def org_setup(org_name):
    """The mix and rebar3 commands for this organization's repository, and the keys to trust."""
    org = visible_org(org_name)
    return render_template("webui/org_setup.html", org=org, setup=client_setup(org), signing=SigningKey.current(),
                           is_admin=permissions.can(principal(), permissions.ADMIN, org, orgs.role_of))


@bp.post("/orgs/<org_name>/delete")
@login_required
def org_delete(org_name):
    """Delete an organization: at once when it holds no packages, else only with its name typed."""
    require_admin()
    org = visible_org(org_name)
    try:
        orgs.delete(org, confirm=(request.form.get("confirm") or "").strip(), actor=actor())
    except Invalid as exc:
        return _form_failed(functools.partial(org_page, org), exc, "confirm")
    flash(f"Organization {org.name} deleted.", "info")
    return redirect(url_for("webui.index"))


@bp.post("/orgs/<org_name>/members")
@login_required
def member_add(org_name):
    org = visible_org(org_name, permissions.ADMIN)
    typed = (request.form.get("username") or "").strip()
    try:
        orgs.add_member(org, accounts.get_user(typed), request.form.get("role"), actor=actor())
    except NotFound:
        return org_page(org, form_errors={"username": f"There is no user named {typed}."},
                        form_typed=request.form), 422
    except Conflict:
        return org_page(org, form_errors={"username": f"{typed} is already a member of {org.name}."},
                        form_typed=request.form), 409
    except Invalid as exc:
        return _form_failed(functools.partial(org_page, org), exc, "username")
    flash("Member added.", "info")
    return redirect(url_for("webui.org_show", org_name=org.name))


@bp.post("/orgs/<org_name>/members/<username>/role")
@login_required
def member_role(org_name, username):
    org = visible_org(org_name, permissions.ADMIN)
    try:
        orgs.set_role(org, accounts.get_user(username), request.form.get("role"), actor=actor())
    except (Invalid, NotFound) as exc:
        return _member_refused(org, username, exc)
    flash(f"{username} is now {request.form.get('role')}.", "info")
    return redirect(url_for("webui.org_show", org_name=org.name))


@bp.post("/orgs/<org_name>/members/<username>/remove")
@login_required
def member_remove(org_name, username):
    org = visible_org(org_name, permissions.ADMIN)
    try:
        orgs.remove_member(org, accounts.get_user(username), actor=actor())
    except (Invalid, NotFound) as exc:
        return _member_refused(org, username, exc)
    flash(f"{username} removed.", "info")
    return redirect(url_for("webui.org_show", org_name=org.name))


def _member_refused(org, username, exc):
    """The organization page again with the refusal (the last admin leaving, a member removed
    meanwhile) next to that member's row, and the role that was chosen still selected."""
    if isinstance(exc, NotFound):  # a member gone has no row; the name is kept as it is spelled
        errors = {"members": f"{username} is not a member of {org.name}."}
    else:
        errors = forms.action_error(exc, f"member-{username}")
    return org_page(org, form_errors=errors, form_typed={"member": username, **request.form}), exc.status


# Keys are in webui/keys.py, users in webui/users.py.

# -- the signing key (appliance administrators); users are in webui/users.py -----------------

@bp.route("/signing-key", methods=["GET", "POST"])
@login_required
def signing_key():
    """The registry signing key and its history; rotation re-signs every registry."""
    require_admin()
    if request.method == "POST":
        if request.form.get("confirm") != "rotate":
            return _signing_key_page(form_errors={"confirm": "Type rotate to confirm: every client must then "
                                                             "trust the new key."},
                                     form_typed=request.form), 422
        row = create_signing_key(runtime().config, actor=actor())
        registry_builder.rebuild_all(runtime())
        flash(f"New signing key {row.fingerprint}. Every client must re-add the repository with the new "
              "public key.", "info")
        return redirect(url_for("webui.signing_key"))
    return _signing_key_page()


def _signing_key_page(**form):
    return render_template("webui/signing_key.html", history=SigningKey.history(), **form)


AUDIT_PAGE = 100


def _audit_filters():
    """The audit filters from the query string; an organization admin who is no appliance admin
    reads only the organizations they administer (the first of them unless one is chosen)."""
    args = request.args
    filters = audit.Filters.parse(args.get("org"), args.get("user"), args.get("action"), args.get("since"),
                                  args.get("until"))
    if not me().is_admin:
        allowed = [m.organization.name for m in orgs.memberships_of(me()) if m.role == "admin"]
        if not allowed:
            raise Forbidden("Only organization administrators can read the audit log.")
        if filters.organization not in allowed:
            filters = dataclasses.replace(filters, organization=allowed[0])
    return filters


@bp.get("/audit")
@login_required
def audit_log():
    """Who did what, when, from where, a page at a time (newest first), filtered."""
    try:
        filters = _audit_filters()
    except Invalid as exc:  # a date that is no date: the filter again, with what was typed
        return render_template("webui/audit.html", entries=None, args=request.args, older=None, newest=None,
                               form_errors=forms.field_errors(exc, "since")), exc.status
    before = request.args.get("before", type=int)
    rows = audit.entries(**filters.query(), before_id=before, limit=AUDIT_PAGE + 1)
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    args["org"] = filters.organization or ""
    older = url_for("webui.audit_log", **args, before=rows[AUDIT_PAGE - 1].id) if len(rows) > AUDIT_PAGE else None
    return render_template("webui/audit.html", entries=rows[:AUDIT_PAGE], args=args, older=older,
                           newest=url_for("webui.audit_log", **args) if before else None,
                           export_csv=url_for("webui.audit_export", fmt="csv", **args),
                           export_jsonl=url_for("webui.audit_export", fmt="jsonl", **args))


@bp.get("/audit/export.<fmt>")
@login_required
def audit_export(fmt):
    """Every row the filter selects (not just one page), as CSV or JSON lines."""
    if fmt not in ("csv", "jsonl"):
        abort(404, description="Export as audit/export.csv or audit/export.jsonl.")
    filters = _audit_filters()
    body = (audit.export_csv if fmt == "csv" else audit.export_jsonl)(audit.iter_entries(**filters.query()))
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(stream_with_context(body), mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="hexvault-audit.{fmt}"', "Cache-Control": "no-store"})
