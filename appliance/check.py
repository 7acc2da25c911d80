"""`hexvault check`: verify every stored file against the database and the signing key.

For each organization: ``names``, ``versions`` and every ``packages/NAME`` must exist, verify
with the active public key, name the organization as their repository, and list exactly the
releases and checksums the database holds; every release's tarball must exist and hash to its
outer checksum; docs blobs must exist. Problems in registry files are repairable by a rebuild.
"""

import dataclasses
import hashlib

from appliance import registry_builder
from appliance.models import Organization, Package, PendingBuild, Release, SigningKey
from appliance.packages import docs_key, tarball_key
from appliance.protocol import registry, signing
from appliance.protocol.names import is_package_name, shown
from storage import BlobNotFound


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


def _check_org(rt, org, public_key):
    problems = []

    def problem(what, repairable=True):
        problems.append(Problem(org.name, what, repairable))

    failing = registry_builder.failing_packages(rt, org)
    for name, reason in failing.items():
        problem(f"packages/{shown(name)} cannot be built ({reason}); `hexvault check --repair` quarantines it")

    releases = {}
    for name, version, outer, inner, retired, docs in (
            Release.select(Package.name, Release.version, Release.outer_checksum, Release.inner_checksum,
                           Release.retirement_reason, Release.docs_checksum)
            .join(Package).where(Package.organization == org.id).tuples()):
        if name in failing or not is_package_name(name):
            continue  # reported above; no registry file can list it
        releases.setdefault(name, {})[version] = (outer, inner, retired is not None)
        try:
            with rt.store.open(tarball_key(outer)) as fh:
                digest = hashlib.sha256()
                for chunk in iter(lambda: fh.read(1 << 16), b""):
                    digest.update(chunk)
            if digest.hexdigest() != outer:
                problem(f"tarball {name}-{version}.tar does not match its checksum", repairable=False)
        except BlobNotFound:
            problem(f"tarball {name}-{version}.tar is missing", repairable=False)
        if docs and not rt.store.exists(docs_key(docs)):
            problem(f"docs of {name} {version} are missing", repairable=False)

    payload, error = _decode(rt, registry_builder.names_key(org.name), public_key)
    if error:
        problem(f"names {error}")
    else:
        names = registry.decode_names(payload, org.name)
        listed = sorted(p["name"] for p in names["packages"])
        if listed != sorted(releases):
            problem("names does not list exactly the packages in the database")

    payload, error = _decode(rt, registry_builder.versions_key(org.name), public_key)
    if error:
        problem(f"versions {error}")
    else:
        index = {p["name"]: p for p in registry.decode_versions(payload, org.name)["packages"]}
        for name, by_version in releases.items():
            entry = index.get(name)
            if entry is None or sorted(entry["versions"]) != sorted(by_version):
                problem(f"versions is wrong for {name}")
                continue
            retired = {entry["versions"][i] for i in entry.get("retired", [])}
            if retired != {v for v, (_o, _i, r) in by_version.items() if r}:
                problem(f"versions has wrong retirements for {name}")

    stored = {key.rsplit("/", 1)[1] for key in rt.store.list(f"registry/{org.name}/packages")}
    for name in stored - set(releases) - set(failing):
        problem(f"packages/{name} is stored but the package has no releases")
    for name, by_version in releases.items():
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
        for version, (outer, inner, retired) in by_version.items():
            rel = seen[version]
            if rel["outer_checksum"].hex() != outer or rel["inner_checksum"].hex() != inner:
                problem(f"packages/{name} has wrong checksums for {version}")
            if bool(rel.get("retired")) != retired:
                problem(f"packages/{name} has the wrong retirement for {version}")
    return problems


def run(rt):
    public_key = signing.load_public_key(SigningKey.current().public_pem.encode())
    problems = []
    pending = {p.organization_id for p in PendingBuild.select(PendingBuild.organization)}
    for org in Organization.select().order_by(Organization.name):
        if org.id in pending:
            problems.append(Problem(org.name, "a registry build was interrupted and is pending"))
        problems.extend(_check_org(rt, org, public_key))
    return problems
