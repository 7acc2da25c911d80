"""The air-gapped hex.pm mirror: bundles made by scripts/hexpm_bundle.py, served unchanged.

A bundle is a tar of hex.pm's own signed ``packages/NAME`` records, the tarballs they name, the
upstream public key and a manifest of SHA-256 sums. Nothing is re-signed: clients keep verifying
hex.pm's signature with hex.pm's key. Importing checks every file against the manifest, every
record's signature against the bundle's key and every tarball against its signed outer checksum,
then stores them under ``mirror/hexpm/``. Later bundles add to what is there; a package record is
replaced only by one that lists at least the same releases, so an older bundle never hides
versions a newer one brought.
"""

import hashlib
import io
import json
import re
import tarfile

from appliance import audit
from appliance.db import write_tx
from appliance.errors import Invalid, NotFound
from appliance.packages import Blob
from appliance.protocol import registry, signing

REPOSITORY = "hexpm"
MEMBER_RE = re.compile(r"^(manifest\.json|public_key|packages/[a-z][a-z0-9_]*|tarballs/[a-z][a-z0-9_]*-[^/]+\.tar)$")
MAX_BUNDLE_MEMBER = 64 * 1024 * 1024


def key_for(path):
    return f"mirror/{REPOSITORY}/{path}"


def _read_bundle(data):
    members = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if not member.isfile() or not MEMBER_RE.match(member.name) or member.size > MAX_BUNDLE_MEMBER:
                    raise Invalid("Validation error(s)", {"bundle": f"unexpected member {member.name!r}"})
                members[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Invalid("Validation error(s)", {"bundle": f"not a bundle tar ({exc})"}) from None
    if "manifest.json" not in members or "public_key" not in members:
        raise Invalid("Validation error(s)", {"bundle": "manifest.json or public_key missing"})
    return members


def import_bundle(rt, data, *, actor=audit.SYSTEM):
    """Verify and store a bundle; returns (packages stored, tarballs stored)."""
    members = _read_bundle(data)
    try:
        manifest = json.loads(members["manifest.json"])
        sums = manifest["sha256"]
    except (ValueError, KeyError, TypeError):
        raise Invalid("Validation error(s)", {"bundle": "manifest.json is unreadable"}) from None
    for name, digest in sums.items():
        if name not in members or hashlib.sha256(members[name]).hexdigest() != digest:
            raise Invalid("Validation error(s)", {"bundle": f"{name} is missing or does not match the manifest"})
    public_key = signing.load_public_key(members["public_key"])
    records = {}
    for name, raw in members.items():
        if name.startswith("packages/"):
            package = name.split("/", 1)[1]
            try:
                payload = registry.decode_signed(raw, public_key)
                records[package] = (raw, registry.decode_package(payload, REPOSITORY, package))
            except (registry.RegistryError, registry.SignatureError) as exc:
                raise Invalid("Validation error(s)", {"bundle": f"{name}: {exc}"}) from None
    checksums = {f"tarballs/{pkg}-{r['version']}.tar": r["outer_checksum"]
                 for pkg, (_raw, record) in records.items() for r in record["releases"]}
    tarballs = [n for n in members if n.startswith("tarballs/")]
    for name in tarballs:
        if name not in checksums or hashlib.sha256(members[name]).digest() != checksums[name]:
            raise Invalid("Validation error(s)", {"bundle": f"{name} is not named by a signed record"})
    for name in tarballs:  # tarballs first: a record must never name a tarball not yet stored
        if not rt.store.exists(key_for(name)):
            rt.store.put(key_for(name), members[name])
    stored = 0
    for package, (raw, record) in sorted(records.items()):
        key = key_for(f"packages/{package}")
        if rt.store.exists(key):
            old = registry.decode_package(registry.decode_signed(rt.store.get(key)), REPOSITORY, package)
            if not {r["version"] for r in old["releases"]} <= {r["version"] for r in record["releases"]}:
                continue
        rt.store.put(key, raw)
        stored += 1
    with write_tx():
        audit.record(actor, "mirror.import", organization=None, target=REPOSITORY, packages=stored,
                     tarballs=len(tarballs), key=signing.fingerprint(public_key))
    return stored, len(tarballs)


def blob(rt, path):
    """A stored mirror file for GET /mirror/hexpm/PATH."""
    if not MEMBER_RE.match(path) or path == "manifest.json":
        raise NotFound()
    key = key_for(path)
    try:
        info = rt.store.info(key)
    except KeyError:
        raise NotFound() from None
    return Blob(info.etag, info.size, lambda: rt.store.open(key))
