"""Builds an organization's signed registry files from the database and stores them.

Contract: callers commit their change together with a PendingBuild row, then call ``update``.
``update`` takes the organization's registry lock, rebuilds ``packages/NAME`` for every pending
package plus ``names`` and ``versions``, writes each file atomically, and only then deletes the
pending rows it handled. The files are stored as the exact bytes served: a GET does no protobuf
or RSA work. ``full`` rebuilds everything and removes stale package files (``hexvault registry
rebuild`` and ``check --repair``).

One package never blocks the others: a package whose file cannot be built or written (a row an
older version let in, a name no file can carry) is logged and left pending, its PendingBuild
rows stay, and every other package and the index are written. ``failing_packages`` reports such
packages (``hexvault check``, the admin UI); ``check --repair`` quarantines them.

The registry's ``repository`` field is the organization name: that is the repo name clients
must use (``mix hex.repo add ORG ...``, a rebar3 entry named ORG or ``parent:ORG``).
"""

import functools
import logging
import time

from appliance import db, events
from appliance.db import write_tx
from appliance.errors import Busy, DatabaseUnavailable, InsufficientStorage
from appliance.models import Organization, Package, PendingBuild, Release, Requirement
from appliance.ops import disk
from appliance.protocol import registry, versions
from appliance.protocol.names import is_package_name, shown

log = logging.getLogger("hexvault")


class UnservablePackage(Exception):
    """A package in the database that no registry file can be built for."""


def names_key(org_name):
    return f"registry/{org_name}/names"


def versions_key(org_name):
    return f"registry/{org_name}/versions"


def package_key(org_name, package_name):
    return f"registry/{org_name}/packages/{package_name}"


@functools.lru_cache(maxsize=65536)
def _version_order(version):
    # Version strings repeat across packages ("1.0.0"), so parsing each once keeps rebuilds cheap.
    return versions.parse_version(version)


def _sorted(rows, version_of):
    return sorted(rows, key=lambda row: _version_order(version_of(row)))


def build_package(org, package_name, private_key):
    """The signed, gzipped ``packages/NAME`` file, or None when the package has no releases."""
    package = Package.get_or_none((Package.organization == org.id) & (Package.name == package_name))
    if package is None:
        return None
    releases = _sorted(Release.select().where(Release.package == package.id), lambda r: r.version)
    if not releases:
        return None
    deps_by_release = {}
    for req in Requirement.select().where(Requirement.release.in_([r.id for r in releases])):
        deps_by_release.setdefault(req.release_id, []).append(dict(
            package=req.name, requirement=req.requirement, optional=req.optional,
            app=req.app if req.app != req.name else None, repository=req.repository))
    encoded = []
    for release in releases:
        retired = None
        if release.retirement_reason:
            retired = dict(reason=release.retirement_reason, message=release.retirement_message)
        encoded.append(dict(
            version=release.version,
            inner_checksum=bytes.fromhex(release.inner_checksum),
            outer_checksum=bytes.fromhex(release.outer_checksum),
            dependencies=sorted(deps_by_release.get(release.id, []), key=lambda d: d["package"]),
            retired=retired,
            published_at=release.published_at))
    payload = registry.encode_package(org.name, package_name, encoded)
    return registry.sign_and_gzip(payload, private_key)


def _index_entries(org, names):
    """(names entry, versions entry) of each named package, encoded from the database."""
    rows = (Release.select(Package.name, Package.updated_at, Release.version, Release.retirement_reason)
            .join(Package).where((Package.organization == org.id) & (Package.name.in_(names))).tuples())
    by_package = {}
    for name, updated_at, version, retired in rows:
        entry = by_package.setdefault(name, {"updated_at": updated_at, "releases": []})
        entry["releases"].append((version, retired is not None))
    entries = {}
    for name, entry in by_package.items():
        if not is_package_name(name):
            continue  # never listed: no packages/NAME file can exist for it (failing_packages says so)
        try:
            releases = _sorted(entry["releases"], lambda r: r[0])
            entries[name] = (
                registry.encode_names_entry(name, entry["updated_at"]),
                registry.encode_versions_entry(name, [v for v, _ in releases],
                                               [i for i, (_, retired) in enumerate(releases) if retired]))
        except Exception as exc:  # one bad row must not take the whole index down
            log.error("registry %s: package %s left out of the index: %s", org.name, shown(name), exc)
    return entries


def build_index(org, private_key, cache=None):
    """The signed, gzipped ``names`` and ``versions`` files of one organization.

    ``cache`` (a dict kept per organization by the caller) holds each package's encoded entries
    with the revision they were built from; only packages whose revision moved are re-read and
    re-encoded, so a publish into a large organization costs one package, not all of them.
    """
    cache = {} if cache is None else cache
    # Revision and creation time together: a package deleted and made again by another process
    # (the CLI) is a new row whose revision, and even id (SQLite reuses the highest rowid), may
    # repeat the old one's.
    rows = Package.select(Package.name, Package.revision, Package.created_at).where(Package.organization == org.id)
    current = {name: (revision, created) for name, revision, created in rows.tuples()}
    for name in list(cache):
        if name not in current:
            del cache[name]
    stale = [name for name, stamp in current.items() if name not in cache or cache[name][0] != stamp]
    for start in range(0, len(stale), 500):
        chunk = stale[start:start + 500]
        fresh = _index_entries(org, chunk)
        for name in chunk:
            # A package row without releases (mid-revert) is left out of the index.
            cache[name] = (current[name],) + fresh[name] if name in fresh else (current[name], None, None)
    listed = [cache[name] for name in sorted(current, key=str.encode) if cache[name][1] is not None]
    names = registry.assemble_index(org.name, [entry[1] for entry in listed])
    index = registry.assemble_index(org.name, [entry[2] for entry in listed])
    return registry.sign_and_gzip(names, private_key), registry.sign_and_gzip(index, private_key)


@disk.full_disk_refused()
def _write_package(rt, org, name, private_key):
    if not is_package_name(name):
        if Package.select().where((Package.organization == org.id) & (Package.name == name)).exists():
            raise UnservablePackage(f"the name {shown(name)} is not a valid package name")
        return  # a quarantined or reverted row: no file can exist under such a name
    data = build_package(org, name, private_key)
    if data is None:
        rt.store.delete(package_key(org.name, name))
    else:
        rt.store.put(package_key(org.name, name), data)


def _write_packages(rt, org, names, private_key):
    """Write each package's file; returns {name: reason} of those that failed."""
    failed = {}
    for name in names:
        try:
            _write_package(rt, org, name, private_key)
        except InsufficientStorage:
            raise  # the disk, not this package: every other file would fail the same way
        except Exception as exc:  # the bulkhead: log it, keep building the others
            failed[name] = str(exc) or type(exc).__name__
            log.error("registry %s: cannot build packages/%s: %s", org.name, shown(name), failed[name])
    return failed


@disk.full_disk_refused()
def _write_index(rt, org, private_key):
    names, index = build_index(org, private_key, rt.index_cache.setdefault(org.id, {}))
    rt.store.put(names_key(org.name), names)
    rt.store.put(versions_key(org.name), index)


def _timed(kind):
    """Emit a ``registry.build`` event with the seconds a build took, waiting for the lock
    included (ops/metrics.py turns it into a histogram)."""
    def decorate(build):
        @functools.wraps(build)
        def timed_build(rt, org):
            started = time.perf_counter()
            try:
                return build(rt, org)
            finally:
                events.emit("registry.build", kind=kind, seconds=time.perf_counter() - started)
        return timed_build
    return decorate


@_timed("update")
def update(rt, org):
    """Rebuild what PendingBuild rows name for this organization; see the module docstring.
    Returns {name: reason} of the packages that could not be built (their rows stay pending)."""
    with rt.registry_lock(org.name):
        pending = list(PendingBuild.select().where(PendingBuild.organization == org.id))
        if not pending:
            return {}
        _row, private_key = rt.signing_key()
        failed = _write_packages(rt, org, sorted({p.package_name for p in pending}), private_key)
        _write_index(rt, org, private_key)
        done = [p.id for p in pending if p.package_name not in failed]
        if done:
            try:
                with write_tx():
                    PendingBuild.delete().where(PendingBuild.id.in_(done)).execute()
            except (Busy, DatabaseUnavailable):
                # The files are written; the change that queued them has committed and must not be
                # reported as failed. Rows left behind only make the next build (or start-up) redo this.
                log.warning("registry of %s rebuilt, but its pending rows stay until the next build: "
                            "database busy or away", org.name)
        return failed


def after_commit(rt, org):
    """``update`` for a change that has just committed. The change stands whatever the build
    meets: a database that became busy or went away meanwhile is logged, not reported as the change
    failing ("nothing was changed" would be false); its pending rows are finished by the sweep of
    pending builds, the next change or a restart. A full disk still raises, for the caller to say
    what was stored."""
    try:
        return update(rt, org)
    except Exception as exc:
        if not isinstance(exc, (Busy, DatabaseUnavailable)) and db.unavailable(exc) is None:
            raise
        log.warning("registry of %s not rebuilt after a committed change (%s); its pending build is "
                    "finished later", org.name, exc)
        return {}


@_timed("full")
def full(rt, org):
    """Rebuild every file of one organization and delete package files nothing refers to.
    Returns (number of packages, {name: reason} of those that could not be built, whose rows
    stay pending)."""
    with rt.registry_lock(org.name):
        pending = list(PendingBuild.select(PendingBuild.id, PendingBuild.package_name)
                       .where(PendingBuild.organization == org.id))
        _row, private_key = rt.signing_key()
        names = [p.name for p in Package.select(Package.name).where(Package.organization == org.id)]
        failed = _write_packages(rt, org, names, private_key)
        prefix = f"registry/{org.name}/packages"
        for key in list(rt.store.list(prefix)):
            if key.rsplit("/", 1)[1] not in names:
                rt.store.delete(key)
        _write_index(rt, org, private_key)
        done = [p.id for p in pending if p.package_name not in failed]
        if done:
            with write_tx():
                PendingBuild.delete().where(PendingBuild.id.in_(done)).execute()
        return len(names), failed


def rebuild_index(rt, org):
    """Rewrite names and versions only (after bulk changes that touched no package file)."""
    with rt.registry_lock(org.name):
        _row, private_key = rt.signing_key()
        _write_index(rt, org, private_key)


def warm_index(rt, org):
    """Fill the index cache of one organization without writing anything."""
    with rt.registry_lock(org.name):
        _row, private_key = rt.signing_key()
        build_index(org, private_key, rt.index_cache.setdefault(org.id, {}))


def repair_pending(rt, only=None):
    """At start-up: finish the builds a crash interrupted. Returns ([org names touched], {org:
    {name: reason}}) and never raises for one organization: the server must start whatever one
    holds. ``only``: a set of PendingBuild ids; then only organizations with one of those rows
    still pending are rebuilt (see ``pending_rows``)."""
    rows = PendingBuild.select(PendingBuild.id, PendingBuild.organization)
    org_ids = {p.organization_id for p in rows if only is None or p.id in only}
    touched, failed = [], {}
    for org in Organization.select().where(Organization.id.in_(list(org_ids))):
        try:
            problems = update(rt, org)
        except Exception as exc:  # e.g. an unreadable signing key: report, start anyway
            problems = {"*": str(exc) or type(exc).__name__}
            log.error("registry %s: pending build failed: %s", org.name, problems["*"])
        touched.append(org.name)
        if problems:
            failed[org.name] = problems
    return touched, failed


def pending_rows():
    """{PendingBuild id: (organization name, package name)} of every pending row now: a row still
    there at a later look was left by a build that did not finish (a publish builds right after
    its commit)."""
    rows = (PendingBuild.select(PendingBuild.id, Organization.name, PendingBuild.package_name)
            .join(Organization).tuples())
    return {row_id: (org_name, name) for row_id, org_name, name in rows}


def failing_packages(rt, org):
    """{name: reason} of this organization's pending packages whose file cannot be built now.

    Builds in memory only: a pending row of a publish that is just being written builds fine and
    is not reported."""
    failing = {}
    _row, private_key = rt.signing_key()
    names = {p.package_name for p in PendingBuild.select(PendingBuild.package_name)
             .where(PendingBuild.organization == org.id)}
    names |= {p.name for p in Package.select(Package.name).where(Package.organization == org.id)
              if not is_package_name(p.name)}
    for name in sorted(names):
        try:
            if not is_package_name(name):
                if Package.select().where((Package.organization == org.id) & (Package.name == name)).exists():
                    raise UnservablePackage(f"the name {shown(name)} is not a valid package name")
                continue
            build_package(org, name, private_key)
        except Exception as exc:  # the reason is the finding
            failing[name] = str(exc) or type(exc).__name__
    return failing


def ensure_index(rt, org):
    """Write empty names/versions for a new organization so its repository answers at once."""
    if not rt.store.exists(names_key(org.name)):
        with rt.registry_lock(org.name):
            _row, private_key = rt.signing_key()
            _write_index(rt, org, private_key)


def rebuild_all(rt):
    """Re-sign every organization's registry (after a signing key rotation). Returns {org:
    {name: reason}} of the packages that could not be built."""
    failed = {}
    for org in Organization.select():
        _count, problems = full(rt, org)
        if problems:
            failed[org.name] = problems
    return failed
