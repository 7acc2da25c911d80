"""Package pages: search per organization, versions, requirements, checksums, README, retire."""

import markdown_it
import nh3
from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required
from markupsafe import Markup

from appliance import orgs, packages, permissions
from appliance.routes.keyauth import runtime
from webui import bp
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
    rows = [(p, packages.latest_versions(packages.releases_of(p))) for p in found]
    return render_template("webui/packages.html", org=org, rows=rows, term=term or "", page=page)


@bp.get("/orgs/<org_name>/packages/<name>")
@bp.get("/orgs/<org_name>/packages/<name>/<version>")
@login_required
def package_show(org_name, name, version=None):
    org = visible_org(org_name)
    package = packages.get_package(org, name)
    releases = packages.releases_of(package)
    release = packages.get_release(org, name, version) if version else releases[0]
    can_write = permissions.can(principal(), permissions.API_WRITE, org, orgs.role_of)
    return render_template("webui/package.html", org=org, package=package, releases=releases, release=release,
                           requirements=packages.requirements_of(release), publisher=packages.publisher_of(release),
                           readme=render_readme(release.readme), can_write=can_write,
                           reasons=packages.RETIREMENT_REASONS, base_url=runtime().config.external_url)


@bp.post("/orgs/<org_name>/packages/<name>/<version>/retire")
@login_required
def package_retire(org_name, name, version):
    org = visible_org(org_name, permissions.API_WRITE)
    packages.retire(runtime(), org, name, version, request.form.get("reason"), request.form.get("message"),
                    actor=actor())
    flash(f"{name} {version} retired.", "info")
    return redirect(url_for("webui.package_show", org_name=org.name, name=name, version=version))


@bp.post("/orgs/<org_name>/packages/<name>/<version>/unretire")
@login_required
def package_unretire(org_name, name, version):
    org = visible_org(org_name, permissions.API_WRITE)
    packages.unretire(runtime(), org, name, version, actor=actor())
    flash(f"{name} {version} is no longer retired.", "info")
    return redirect(url_for("webui.package_show", org_name=org.name, name=name, version=version))
