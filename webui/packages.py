"""Package pages: search per organization, versions, requirements and dependents, checksums, README,
retire, and the tarball download for members."""

import markdown_it
import nh3
from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required
from markupsafe import Markup

from appliance import catalog, orgs, packages, permissions
from appliance.errors import Invalid
from appliance.routes.keyauth import runtime
from appliance.routes.repository import serve_blob
from webui import bp, forms
from webui.auth import actor
from webui.views import principal, visible_org

_markdown = markdown_it.MarkdownIt("commonmark", {"html": False, "linkify": False})


def render_readme(text):
    """README markdown to HTML that cannot run anything: raw HTML is escaped by the parser and
    nh3 then keeps only harmless tags and attributes."""
    if not text:
        return None
    return Markup(nh3.clean(_markdown.render(text), link_rel="noopener noreferrer nofollow"))


@bp.get("/orgs/<org_name>/packages")
@login_required
def package_list(org_name):
    org = visible_org(org_name)
    term = request.args.get("q") or None
    page = max(1, request.args.get("page", 1, type=int))
    found = packages.search([org], term, page=page, per_page=50)
    return render_template("webui/packages.html", org=org, rows=catalog.listing(found), term=term or "", page=page,
                           is_admin=permissions.can(principal(), permissions.ADMIN, org, orgs.role_of))


@bp.get("/orgs/<org_name>/packages/<name>")
@bp.get("/orgs/<org_name>/packages/<name>/<version>")
@login_required
def package_show(org_name, name, version=None):
    return _package_page(visible_org(org_name), name, version)


def _package_page(org, name, version=None, **form):
    package = packages.get_package(org, name)
    releases = packages.releases_of(package)
    release = packages.get_release(org, name, version) if version else releases[0]

    def may(action, of=org):
        return permissions.can(principal(), action, of, orgs.role_of)

    requirements = catalog.linked_requirements(org, release, may_read=lambda other: may(permissions.API_READ, other))
    return render_template("webui/package.html", org=org, package=package, releases=releases, release=release,
                           requirements=requirements, dependents=catalog.dependents(package),
                           publisher=packages.publisher_of(release), readme=render_readme(release.readme),
                           can_write=may(permissions.API_WRITE), can_download=may(permissions.READ_REPOSITORY),
                           reasons=packages.RETIREMENT_REASONS, base_url=runtime().config.external_url, **form)


@bp.get("/orgs/<org_name>/packages/<name>/<version>/download")
@login_required
def package_download(org_name, name, version):
    """A release's tarball as mix and rebar3 fetch it, for a member who may read the repository."""
    org = visible_org(org_name, permissions.READ_REPOSITORY)
    release = packages.get_release(org, name, version)
    response = serve_blob(packages.tarball_blob(runtime(), org, f"{release.package.name}-{release.version}.tar"),
                          packages.TARBALL_CACHE)
    response.headers["Content-Disposition"] = f'attachment; filename="{release.package.name}-{release.version}.tar"'
    return response


@bp.post("/orgs/<org_name>/packages/<name>/<version>/retire")
@login_required
def package_retire(org_name, name, version):
    org = visible_org(org_name, permissions.API_WRITE)
    try:
        packages.retire(runtime(), org, name, version, request.form.get("reason"), request.form.get("message"),
                        actor=actor())
    except Invalid as exc:  # a reason not offered, a message too short or too long
        return _package_page(org, name, version, form_errors=forms.field_errors(exc, "message"),
                             form_typed=request.form), exc.status
    flash(f"{name} {version} retired.", "info")
    return redirect(url_for("webui.package_show", org_name=org.name, name=name, version=version))


@bp.post("/orgs/<org_name>/packages/<name>/<version>/unretire")
@login_required
def package_unretire(org_name, name, version):
    org = visible_org(org_name, permissions.API_WRITE)
    packages.unretire(runtime(), org, name, version, actor=actor())
    flash(f"{name} {version} is no longer retired.", "info")
    return redirect(url_for("webui.package_show", org_name=org.name, name=name, version=version))
