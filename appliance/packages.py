"""Packages and releases: publish, revert, retire/unretire, docs, and the queries behind the API.

Order of writes, so that a crash at any moment leaves a consistent registry (hexpm does the
same: "the registry never names a release whose tarball is not there yet"):

1. the tarball is validated, then stored under its outer checksum (content-addressed, so a
   half-finished publish leaves at most an unreferenced blob, never a wrong one);
2. the release row, its requirements, the audit row and the organization's registry serial
   commit in one transaction, which stores the tarball again if garbage collection removed it
   in between (``hexvault gc`` deletes only while holding the write lock, see ops/gc.py);
3. the registry files are rebuilt and written atomically; the same transaction left a
   PendingBuild row that is deleted only after that, so a crash in between is repaired at start-up.
"""

import hashlib
import typing

import storage

from appliance import audit, registry_builder
from appliance.db import database, write_lock_tx, write_tx
from appliance.errors import InsufficientStorage, Invalid, InvalidTarball, NotFound, ReleaseExists
from appliance.models import Organization, Package, PendingBuild, Release, Requirement, User, utcnow
from appliance.ops import disk
from appliance.protocol import tarball, versions
from appliance.protocol.names import MAX_NAME_LENGTH, MAX_VERSION_LENGTH, MIN_NAME_LENGTH, is_package_name, shown


# From hexpm's reserved list: OTP/Elixir applications, tools, Windows device names, generic words.
RESERVED_NAMES = frozenset("""
elixir stdlib kernel mix iex eex ex_unit logger compiler erts sasl crypto ssl public_key inets
asn1 mnesia observer runtime_tools tools xmerl os_mon otp erlang hex hexpm rebar rebar3 mix_hex
con prn aux nul com1 com2 com3 com4 com5 com6 com7 com8 com9 lpt1 lpt2 lpt3 lpt4 lpt5 lpt6 lpt7
lpt8 lpt9 package packages organization organizations www all assets api docs
""".split())
RETIREMENT_REASONS = ("other", "invalid", "security", "deprecated", "renamed")


# Cache-Control of repository files, here because the TLS front's nginx site sends the same.
# Private: per-key visibility means no shared cache may keep them (registry-v2.md).
REGISTRY_CACHE = "private, max-age=60"
TARBALL_CACHE = "private, max-age=86400"


class Blob(typing.NamedTuple):
    """A stored file a route can stream: its ETag, size, a function that opens it, and one that
    releases it unread (a 304). ``opened`` makes one from an already open handle, so the size
    and ETag describe exactly what that handle reads even while a put replaces the file.

    ``immutable_key`` is the store key of a blob that is never replaced (content-addressed
    tarballs and docs): only those may be handed to the TLS front by path (X-Accel-Redirect),
    since the front opens the path after Hexvault has answered."""

    etag: str
    size: int
    open: typing.Callable
    release: typing.Callable = lambda: None
    immutable_key: str = None

    @classmethod
    def opened(cls, store, key, *, immutable=False, static_etag=False):
        fh, info = store.open_with_info(key)
        etag = storage.static_etag(info) if static_etag else info.etag
        return cls(etag, info.size, lambda: fh, fh.close, key if immutable else None)


def _invalid(field, message):
    return Invalid("Validation error(s)", {field: message})


def tarball_key(outer_hex):
    """Blob key of a tarball: content-addressed by its outer checksum."""
    return f"tarballs/{outer_hex[:2]}/{outer_hex}.tar"


def docs_key(checksum_hex):
    return f"docs/{checksum_hex[:2]}/{checksum_hex}.tar.gz"


# -- validation ---------------------------------------------------------------------------------

def check_package_name(name, field="name"):
    if not is_package_name(name):
        raise _invalid(field, f"must be {MIN_NAME_LENGTH} to {MAX_NAME_LENGTH} characters: a lowercase letter, "
                              "then lowercase letters, digits or _")
    if name in RESERVED_NAMES:
        raise _invalid(field, f"{name} is reserved")


def check_version(version):
    if isinstance(version, str) and len(version) > MAX_VERSION_LENGTH:
        raise _invalid("version", f"must be at most {MAX_VERSION_LENGTH} characters")
    try:
        versions.check_release_version(version)
    except versions.InvalidVersion as exc:
        raise _invalid("version", str(exc)) from None


def _resolve_dependency_repository(org, dep):
    """Which repository a requirement points at, as the registry's Dependency.repository.

    None means "the same repository" (the registry then omits the field). Mix writes the org's
    name for a dep in the same private repo and "hexpm" for public ones; rebar3_hex writes no
    repository at all, so a missing one means "here" if the package exists in this organization,
    else hex.pm (hex-protocol.md §9, open question 1).
    """
    repository = dep.get("repository")
    if repository in (None, ""):
        exists = Package.select().where((Package.organization == org.id) & (Package.name == dep["name"])).exists()
        return None if exists else "hexpm"
    if repository == org.name:
        return None
    return repository


def _check_metadata(org, meta):
    """Hex's release rules (hexpm release_metadata.ex, version.ex, changeset.ex)."""
    for field in ("name", "version", "app"):
        if not isinstance(meta.get(field), str) or not meta.get(field):
            raise InvalidTarball(f"metadata.config: {field} is required")
    check_package_name(meta["name"])
    check_version(meta["version"])
    if not meta.get("build_tools"):
        raise _invalid("build_tools", "can't be blank")
    if not meta.get("files"):
        raise _invalid("files", "package can't be empty")
    if meta.get("elixir"):
        try:
            versions.parse_requirement(meta["elixir"])
        except versions.InvalidRequirement:
            raise _invalid("elixir", f"invalid requirement: {meta['elixir']!r}") from None
    deps = []
    for dep in meta.get("requirements") or []:
        name = dep.get("name")
        if not is_package_name(name):
            raise _invalid("requirements", f"invalid dependency name {shown(name)}")
        requirement = dep.get("requirement")
        if requirement is None:
            raise _invalid("requirements", f"{name}: invalid requirement: nil, use \">= 0.0.0\" instead")
        try:
            versions.check_requirement(requirement)
        except versions.InvalidRequirement as exc:
            raise _invalid("requirements", f"{name}: {exc}") from None
        repository = _resolve_dependency_repository(org, dep)
        if repository is None and dep.get("repository") and not Package.select().where(
                (Package.organization == org.id) & (Package.name == name)).exists():
            raise _invalid("requirements", f"{name}: package does not exist in repository {org.name}")
        deps.append(dict(name=name, app=dep.get("app") or name, requirement=requirement,
                         optional=dep.get("optional") is True, repository=repository))
    return deps


def read_tarball(rt, data):
    """Validate an uploaded package tarball without storing anything."""
    if len(data) > rt.config.max_tarball_size:
        raise InvalidTarball(f"too big: {len(data)} bytes; the limit is {rt.config.max_tarball_size}")
    return tarball.read_package(data, max_size=rt.config.max_tarball_size,
                                max_uncompressed_size=rt.config.max_uncompressed_size)


# -- writes -------------------------------------------------------------------------------------

def publish(rt, org, data, *, replace=False, expected_name=None, actor=audit.CLI, publisher=None):
    """Publish a release from tarball bytes; returns (release, created)."""
    pkg = read_tarball(rt, data)
    meta = pkg.metadata
    deps = _check_metadata(org, meta)
    name, version = meta["name"], meta["version"]
    if expected_name is not None and expected_name != name:
        raise _invalid("name", f"metadata does not match package name (URL says {expected_name}, tarball says {name})")
    outer_hex = pkg.outer_checksum.hex()
    disk.require_space(rt.config, len(data), "publishing")
    with disk.full_disk_refused():
        rt.store.put(tarball_key(outer_hex), data)
    now = utcnow()
    stale_blob = None
    with write_tx():
        with disk.full_disk_refused():
            _restore_if_collected(rt, tarball_key(outer_hex), data)
        package, _ = Package.get_or_create(organization=org, name=name)
        release = Release.get_or_none((Release.package == package.id) & (Release.version == version))
        created = release is None
        fields = dict(inner_checksum=pkg.inner_checksum.hex(), outer_checksum=outer_hex, size=len(data),
                      metadata=meta, readme=pkg.readme, publisher=publisher, updated_at=now)
        if created:
            release = Release.create(package=package, version=version, published_at=now, **fields)
        else:
            if not replace:
                raise ReleaseExists(name, version)
            if release.outer_checksum != outer_hex:
                stale_blob = release.outer_checksum
            # A replaced release starts without retirement and docs, as on hex.pm.
            Release.update(retirement_reason=None, retirement_message=None, published_at=now, **fields)\
                .where(Release.id == release.id).execute()
            Requirement.delete().where(Requirement.release == release.id).execute()
            release = Release.get_by_id(release.id)
        if deps:
            Requirement.insert_many([dict(release=release.id, **d) for d in deps]).execute()
        Package.update(meta=_package_meta(meta), updated_at=now).where(Package.id == package.id).execute()
        _mark_dirty(org, name)
        audit.record(actor, "release.publish" if created else "release.replace", organization=org,
                     target=f"{name} {version}", checksum=outer_hex)
    try:
        registry_builder.after_commit(rt, org)
    except InsufficientStorage as exc:
        # Committed, so not "nothing was stored": its pending build is redone by the next change in
        # the organization, `hexvault check --repair` or a restart, once there is space.
        raise InsufficientStorage(f"{name} {version} was stored, but the disk filled up before the registry "
                                  "could list it; it is listed once the administrator frees space") from exc
    if stale_blob:
        _delete_unreferenced(rt, tarball_key(stale_blob), Release.outer_checksum, stale_blob)
    return release, created


def _package_meta(meta):
    return {k: meta[k] for k in ("description", "licenses", "links", "maintainers") if k in meta}


def _mark_dirty(org, name):
    """Inside the change's transaction: queue the registry rebuild and move the revision."""
    PendingBuild.create(organization=org, package_name=name)
    Package.update(revision=Package.revision + 1)\
        .where((Package.organization == org.id) & (Package.name == name)).execute()


def _restore_if_collected(rt, key, data):
    """Inside the transaction that will reference ``key``: put the bytes back if ``hexvault gc``
    took them since the first put. gc deletes only under the write lock this transaction now
    holds, so once this returns the blob stays until the reference is committed."""
    if not rt.store.exists(key):
        rt.store.put(key, data)


def _delete_unreferenced(rt, key, column, checksum):
    """Delete a blob no release names any more. Decided under the write lock (as gc does), so a
    publish of the same bytes has either committed its reference or will store them again."""
    with write_lock_tx():
        if not Release.select().where(column == checksum).exists():
            rt.store.delete(key)


def revert(rt, org, name, version, *, actor=audit.CLI):
    """Delete a release (``mix hex.publish --revert``); reverting the last one deletes the package."""
    release = get_release(org, name, version)
    package = release.package
    with write_tx():
        release.delete_instance(recursive=True)
        remaining = Release.select().where(Release.package == package.id).count()
        if remaining == 0:
            package.delete_instance()
        else:
            Package.update(updated_at=utcnow()).where(Package.id == package.id).execute()
        _mark_dirty(org, name)
        audit.record(actor, "release.revert", organization=org, target=f"{name} {version}")
    registry_builder.after_commit(rt, org)
    _delete_unreferenced(rt, tarball_key(release.outer_checksum), Release.outer_checksum, release.outer_checksum)
    if release.docs_checksum:
        _delete_unreferenced(rt, docs_key(release.docs_checksum), Release.docs_checksum, release.docs_checksum)


def retire(rt, org, name, version, reason, message=None, *, actor=audit.CLI):
    if reason not in RETIREMENT_REASONS:
        raise _invalid("reason", f"must be one of: {', '.join(RETIREMENT_REASONS)}")
    if message is not None and message != "" and not 3 <= len(message) <= 140:
        raise _invalid("message", "must be between 3 and 140 characters")
    release = get_release(org, name, version)
    with write_tx():
        Release.update(retirement_reason=reason, retirement_message=message or None, updated_at=utcnow())\
            .where(Release.id == release.id).execute()
        _mark_dirty(org, name)
        audit.record(actor, "release.retire", organization=org, target=f"{name} {version}",
                     reason=reason, message=message or None)
    registry_builder.after_commit(rt, org)


def unretire(rt, org, name, version, *, actor=audit.CLI):
    release = get_release(org, name, version)
    with write_tx():
        Release.update(retirement_reason=None, retirement_message=None, updated_at=utcnow())\
            .where(Release.id == release.id).execute()
        _mark_dirty(org, name)
        audit.record(actor, "release.unretire", organization=org, target=f"{name} {version}")
    registry_builder.after_commit(rt, org)


def upload_docs(rt, org, name, version, data, *, actor=audit.CLI):
    release = get_release(org, name, version)
    if len(data) > rt.config.max_tarball_size:
        raise InvalidTarball(f"too big: {len(data)} bytes; the limit is {rt.config.max_tarball_size}")
    tarball.read_docs(data, max_size=rt.config.max_tarball_size,
                      max_uncompressed_size=rt.config.max_uncompressed_size)
    checksum = hashlib.sha256(data).hexdigest()
    disk.require_space(rt.config, len(data), "uploading docs")
    with disk.full_disk_refused():
        rt.store.put(docs_key(checksum), data)
    old = release.docs_checksum
    with write_tx():
        _restore_if_collected(rt, docs_key(checksum), data)
        Release.update(docs_checksum=checksum, updated_at=utcnow()).where(Release.id == release.id).execute()
        audit.record(actor, "docs.publish", organization=org, target=f"{name} {version}")
    if old and old != checksum:
        _delete_unreferenced(rt, docs_key(old), Release.docs_checksum, old)
    return checksum


def delete_docs(rt, org, name, version, *, actor=audit.CLI):
    release = get_release(org, name, version)
    if not release.docs_checksum:
        raise NotFound("Docs do not exist")
    with write_tx():
        Release.update(docs_checksum=None, updated_at=utcnow()).where(Release.id == release.id).execute()
        audit.record(actor, "docs.revert", organization=org, target=f"{name} {version}")
    _delete_unreferenced(rt, docs_key(release.docs_checksum), Release.docs_checksum, release.docs_checksum)


# -- reads --------------------------------------------------------------------------------------

def get_package(org, name):
    package = Package.get_or_none((Package.organization == org.id) & (Package.name == name))
    if package is None:
        raise NotFound(f"package {name} does not exist in repository {org.name}")
    return package


def get_release(org, name, version):
    release = (Release.select(Release, Package).join(Package)
               .where((Package.organization == org.id) & (Package.name == name) & (Release.version == version))
               .first())
    if release is None:
        raise NotFound(f"release {name} {version} does not exist in repository {org.name}")
    return release


def releases_of(package):
    """Releases newest first by SemVer, as hexpm's API lists them."""
    rows = list(Release.select().where(Release.package == package.id))
    order = {v: i for i, v in enumerate(versions.sort_versions(r.version for r in rows))}
    return sorted(rows, key=lambda r: order[r.version], reverse=True)


def latest_versions(releases):
    """(latest_version, latest_stable_version) of releases sorted newest first."""
    latest = releases[0].version if releases else None
    stable = next((r.version for r in releases if not versions.parse_version(r.version).is_prerelease), None)
    return latest, stable


def search(orgs, term=None, *, page=1, per_page=100):
    query = (Package.select(Package, Organization).join(Organization)
             .where(Package.organization.in_([o.id for o in orgs])).order_by(Package.name))
    if term:
        term = term.strip()
        if term.startswith("name:"):
            term = term[5:]
        like = term.replace("*", "")
        query = query.where(Package.name.contains(like))
    # Bounded so a huge page number is an empty page, not an integer SQLite cannot hold.
    page = min(max(1, int(page or 1)), 1_000_000)
    return list(query.paginate(page, per_page))


def requirements_of(release):
    return list(Requirement.select().where(Requirement.release == release.id).order_by(Requirement.name))


def publisher_of(release):
    return User.get_or_none(User.id == release.publisher_id) if release.publisher_id else None


def release_file(org, name, version):
    """(outer checksum hex, size) of a release's tarball, or None if there is no such release."""
    # Raw SQL: tarball GETs are the second hottest path (see keys.authenticate).
    return database.execute_sql(
        'SELECT r."outer_checksum", r."size" FROM "release" r JOIN "package" p ON r."package_id" = p."id" '
        'WHERE p."organization_id" = {P} AND p."name" = {P} AND r."version" = {P}'.format(P=database.param),
        (org.id, name, version)).fetchone()


def tarball_blob(rt, org, filename, lookup=release_file):
    """The stored tarball for ``NAME-VERSION.tar``; the ETag is its outer checksum, so a
    conditional GET is answered without touching the blob. ``lookup`` may be a memoized
    release_file (lookupcache)."""
    if not filename.endswith(".tar") or "-" not in filename:
        raise NotFound()
    name, _, version = filename[:-4].partition("-")
    row = lookup(org, name, version)
    if row is None:
        raise NotFound()
    outer, size = row
    key = tarball_key(outer)
    return Blob(f'"{outer}"', size, lambda: rt.store.open_with_info(key)[0], immutable_key=key)


def docs_blob(rt, org, filename):
    if not filename.endswith(".tar.gz") or "-" not in filename:
        raise NotFound()
    name, _, version = filename[:-7].partition("-")
    try:
        release = get_release(org, name, version)
    except NotFound:
        raise NotFound() from None
    if not release.docs_checksum:
        raise NotFound()
    return Blob.opened(rt.store, docs_key(release.docs_checksum), immutable=True)
