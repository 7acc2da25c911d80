"""`hexvault check`: verify every stored file against the database and the signing key.

For each organization: ``names``, ``versions`` and every ``packages/NAME`` must exist, verify
with the active public key, name the organization as their repository, and list exactly the
releases and checksums the database holds; every release's tarball must exist and hash to its
outer checksum; docs blobs must exist. Problems in registry files are repairable by a rebuild.

It runs beside a live server, so it must not mistake a change in flight for damage. The database
is read in one transaction (one moment for every row); files may be newer than that moment, so
an organization whose files disagree is checked again under its registry lock (no build
writing), once no build is pending, and a missing or damaged blob counts only while the database
still refers to it afterwards.
"""

import dataclasses
import hashlib
import time

from appliance import registry_builder
from appliance.db import snapshot_tx
from appliance.models import Organization, Package, PendingBuild, Release, SigningKey
from appliance.packages import docs_key, tarball_key
from appliance.protocol import registry, signing
from appliance.protocol.names import is_package_name, shown
from storage import BlobNotFound

SETTLE_SECONDS = 3.0  # how long a pending build may take to finish before it counts as interrupted


@dataclasses.dataclass(frozen=True)
class Problem:
    org: str
    what: str
    repairable: bool = True


def _decode(rt, key, public_key):
    try:
        data = rt.store.get(key)
    except BlobNotFound:
        return None, "missing"
    try:
        return registry.decode_signed(data, public_key), None
    except Exception as exc:  # any decoding failure is a finding, not a crash of the checker
        return None, f"does not verify ({exc})"


def _decode_index(rt, key, public_key, decode, org):
    """(names or versions, None) or (None, what is wrong): a signed file of another kind or
    another repository is a finding too, not a crash of the checker."""
    payload, error = _decode(rt, key, public_key)
    if error:
        return None, error
    try:
        return decode(payload, org.name), None
    except registry.RegistryError as exc:
        return None, f"does not decode ({exc})"


@dataclasses.dataclass(frozen=True)
class _State:
    """What the database holds for one organization, as of one read transaction."""

    org: object
    releases: dict  # name -> {version: (outer, inner, retired, docs)}
    failing: dict  # name -> why its registry file cannot be built
    pending: frozenset  # (row id, package name) of builds pending for packages that can be built

    def blobs(self):
        return {key for by_version in self.releases.values() for outer, _i, _r, docs in by_version.values()
                for key in (tarball_key(outer), docs and docs_key(docs)) if key}


def _read_states(rt, org_ids=None):
    """(public key, [_State]) read in one snapshot transaction, so every row comes from the
    same moment."""
    with snapshot_tx():
        public_key = signing.load_public_key(SigningKey.current().public_pem.encode())
        pending = {}
        for row in PendingBuild.select():
            pending.setdefault(row.organization_id, set()).add((row.id, row.package_name))
        query = Organization.select().order_by(Organization.name)
        if org_ids is not None:
            query = query.where(Organization.id.in_(org_ids))
        states = []
        for org in query:
            failing = registry_builder.failing_packages(rt, org)
            releases = {}
            for name, version, outer, inner, retired, docs in (
                    Release.select(Package.name, Release.version, Release.outer_checksum, Release.inner_checksum,
                                   Release.retirement_reason, Release.docs_checksum)
                    .join(Package).where(Package.organization == org.id).tuples()):
                if name in failing or not is_package_name(name):
                    continue  # reported as failing; no registry file can list it
                releases.setdefault(name, {})[version] = (outer, inner, retired is not None, docs)
            buildable = frozenset(row for row in pending.get(org.id, ()) if row[1] not in failing)
            states.append(_State(org, releases, failing, buildable))
    return public_key, states


def _check_files(rt, state, public_key, in_flight=frozenset()):
    """[(Problem, blob key or None)]: where the stored files disagree with ``state``. The
    packages of ``in_flight`` builds (pending rows known to be recent) are not judged: their
    files, and their entries in the index, are still to be written."""
    org, releases, failing = state.org, state.releases, state.failing
    unsettled = {name for _id, name in in_flight}
    problems = []

    def problem(what, repairable=True, blob=None):
        problems.append((Problem(org.name, what, repairable), blob))

    if state.pending - in_flight:
        problem("a registry build was interrupted and is pending")
    for name, reason in failing.items():
        problem(f"packages/{shown(name)} cannot be built ({reason}); `hexvault check --repair` quarantines it")

    for name, by_version in releases.items():
        for version, (outer, _inner, _retired, docs) in by_version.items():
            try:
                with rt.store.open(tarball_key(outer)) as fh:
                    digest = hashlib.sha256()
                    for chunk in iter(lambda: fh.read(1 << 16), b""):
                        digest.update(chunk)
                if digest.hexdigest() != outer:
                    problem(f"tarball {name}-{version}.tar does not match its checksum", False, tarball_key(outer))
            except BlobNotFound:
                problem(f"tarball {name}-{version}.tar is missing", False, tarball_key(outer))
            if docs and not rt.store.exists(docs_key(docs)):
                problem(f"docs of {name} {version} are missing", False, docs_key(docs))

    names, error = _decode_index(rt, registry_builder.names_key(org.name), public_key, registry.decode_names, org)
    if error:
        problem(f"names {error}")
    elif {p["name"] for p in names["packages"]} - unsettled != set(releases) - unsettled:
        problem("names does not list exactly the packages in the database")

    index, error = _decode_index(rt, registry_builder.versions_key(org.name), public_key, registry.decode_versions, org)
    if error:
        problem(f"versions {error}")
    else:
        index = {p["name"]: p for p in index["packages"]}
        for name, by_version in releases.items():
            if name in unsettled:
                continue
            entry = index.get(name)
            if entry is None or sorted(entry["versions"]) != sorted(by_version):
                problem(f"versions is wrong for {name}")
                continue
            retired = {entry["versions"][i] for i in entry.get("retired", [])}
            if retired != {v for v, (_o, _i, r, _d) in by_version.items() if r}:
                problem(f"versions has wrong retirements for {name}")

    stored = {key.rsplit("/", 1)[1] for key in rt.store.list(f"registry/{org.name}/packages")}
    for name in stored - set(releases) - set(failing) - unsettled:
        problem(f"packages/{name} is stored but the package has no releases")
    for name, by_version in releases.items():
        if name in unsettled:
            continue
        payload, error = _decode(rt, registry_builder.package_key(org.name, name), public_key)
        if error:
            problem(f"packages/{name} {error}")
            continue
        try:
            decoded = registry.decode_package(payload, org.name, name)
        except Exception as exc:
            problem(f"packages/{name} has the wrong origin ({exc})")
            continue
        seen = {r["version"]: r for r in decoded["releases"]}
        if sorted(seen) != sorted(by_version):
            problem(f"packages/{name} lists other releases than the database")
            continue
        for version, (outer, inner, retired, _docs) in by_version.items():
            rel = seen[version]
            if rel["outer_checksum"].hex() != outer or rel["inner_checksum"].hex() != inner:
                problem(f"packages/{name} has wrong checksums for {version}")
            if bool(rel.get("retired")) != retired:
                problem(f"packages/{name} has the wrong retirement for {version}")
    return problems


def _confirmed(rt, org, settle_seconds):
    """[(Problem, blob)] of one organization at a moment when no registry build runs or waits.

    Under the registry lock no build writes, and a snapshot taken inside it without a pending
    build describes exactly what the files must hold. A pending build (a publish that committed
    and now waits for this lock) is given ``settle_seconds`` to finish; a pending row still there
    after that is stuck, while rows that came meanwhile are builds in flight, left unjudged. Blobs
    are deleted only after the rows naming them, so a blob problem stands only if a snapshot
    taken after looking at the blob still refers to it."""
    deadline, first_pending = time.monotonic() + settle_seconds, None
    while True:
        with rt.registry_lock(org.name):
            public_key, states = _read_states(rt, [org.id])
            if not states:
                return []  # the organization is gone
            state = states[0]
            first_pending = state.pending if first_pending is None else first_pending
            if not state.pending or time.monotonic() >= deadline:
                found = _check_files(rt, state, public_key, in_flight=state.pending - first_pending)
                if any(blob for _p, blob in found):
                    _key, later = _read_states(rt, [org.id])
                    still = later[0].blobs() if later else set()
                    found = [(p, blob) for p, blob in found if blob is None or blob in still]
                return found
        time.sleep(0.05)  # let the build in flight take the lock


def run(rt, settle_seconds=SETTLE_SECONDS):
    public_key, states = _read_states(rt)
    problems = []
    for state in states:
        found = _check_files(rt, state, public_key)
        if found:
            # Files written after the snapshot disagree with it too: report only what holds.
            found = _confirmed(rt, state.org, settle_seconds)
        problems.extend(p for p, _blob in found)
    return problems
