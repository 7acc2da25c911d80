"""What the package pages show around releases, beyond packages.py's own reads: each requirement
resolved to the package page that shows it, the packages of the same organization that require
a package (its dependents), and the release a package list shows for each package.

Reads only. Requirements name their repository as the registry does (models.Requirement): None
is the package's own organization.
"""

import typing

from appliance import orgs, packages
from appliance.errors import NotFound
from appliance.models import Package, Release, Requirement

# mix writes "hexpm:ORG" for an `organization: "ORG"` dependency; with mix's hexpm repo pointed at
# this appliance's hex.pm mirror (the client set-up page says how) that is this appliance's ORG.
HEXPM_ORG_PREFIX = "hexpm:"


class LinkedRequirement(typing.NamedTuple):
    requirement: Requirement
    org_name: typing.Optional[str]  # the organization whose package page to link to; None: no link


class Dependent(typing.NamedTuple):
    package: Package
    requiring: list  # [(Release, requirement string)] of its releases that require the package, newest first
    latest: bool  # its newest release is one of them


def _organization_named(repository, own_org):
    if repository is None:
        return own_org
    name = repository[len(HEXPM_ORG_PREFIX):] if repository.startswith(HEXPM_ORG_PREFIX) else repository
    try:
        return orgs.get(name)
    except NotFound:
        return None  # hex.pm, or a repository this appliance does not hold


def linked_requirements(org, release, may_read):
    """The release's requirements, each with the organization whose page shows the required
    package: only when that package exists there and ``may_read(organization)`` is true, so a
    link never tells a reader about an organization they cannot see."""
    linked = []
    for requirement in packages.requirements_of(release):
        target = _organization_named(requirement.repository, org)
        shown = target is not None and may_read(target) and Package.select().where(
            (Package.organization == target.id) & (Package.name == requirement.name)).exists()
        linked.append(LinkedRequirement(requirement, target.name if shown else None))
    return linked


def dependents(package):
    """Packages of the package's organization with a release that requires it, by name."""
    rows = (Requirement.select(Requirement, Release).join(Release).join(Package)
            .where((Package.organization == package.organization_id) & (Package.id != package.id)
                   & (Requirement.name == package.name) & Requirement.repository.is_null()))
    wanted = {}  # package id -> {release id: requirement}
    for row in rows:
        wanted.setdefault(row.release.package_id, {})[row.release.id] = row.requirement
    found = []
    for dependent in Package.select().where(Package.id.in_(list(wanted))).order_by(Package.name):
        releases = packages.releases_of(dependent)
        requiring = [(r, wanted[dependent.id][r.id]) for r in releases if r.id in wanted[dependent.id]]
        found.append(Dependent(dependent, requiring, bool(releases) and releases[0].id in wanted[dependent.id]))
    return found


def shown_release(package):
    """The release a package list names: the newest stable one, else the newest."""
    releases = packages.releases_of(package)
    latest, stable = packages.latest_versions(releases)
    return next((r for r in releases if r.version == (stable or latest)), None)


def listing(found):
    """[(package, shown_release)] for a list of packages."""
    return [(package, shown_release(package)) for package in found]
