"""The air-gapped hex.pm mirror: bundles made by scripts/hexpm_bundle.py, served unchanged.

A bundle is an uncompressed tar holding hex.pm's own signed ``packages/NAME`` records (and,
if asked for, ``names`` and ``versions``), the tarballs the records name, the upstream public
key and ``manifest.json`` with the SHA-256 of every file. Nothing is re-signed: clients keep
verifying hex.pm's signature with hex.pm's key, so Hexvault can only pass the files on as they
are (registry-v2.md "Signing").

Importing checks, before anything is stored: every member against the manifest; every record
against the key this appliance trusts (setting ``mirror_public_key``, default hex.pm's own key,
never the key inside the bundle) and its origin (``repository`` "hexpm", record name = file
name); every tarball against the signed outer checksum of its release. Then tarballs are
stored before records, so a served record never names a tarball that is not there yet.

Later bundles add to what is there. A stored ``packages/NAME`` is replaced only by a record
listing at least the same releases (``names``: the same packages; ``versions``: the same
releases of each package), so a bundle dropped out of order never hides versions a newer one
brought. Tarballs are immutable once stored.
"""

import hashlib
import json
import os
import re
import tarfile

from appliance import audit
from appliance.db import write_tx
from appliance.errors import ConfigError, Invalid, NotFound
from appliance.ops import disk
from appliance.packages import Blob
from appliance.protocol import hexpm, registry, signing
from storage import BlobNotFound, InvalidKey

REPOSITORY = hexpm.REPOSITORY
# Used with fullmatch. Bounded like our own names and versions (packages.MAX_NAME_LENGTH), so
# every mirror file name fits one 255-byte path segment.
FILE_RE = re.compile(r"names|versions|packages/[a-z][a-z0-9_]{1,99}|tarballs/[a-z][a-z0-9_]{1,99}-[0-9A-Za-z.+-]{1,128}\.tar")
INFO_MEMBERS = ("manifest.json", "public_key")
MAX_MEMBER = 64 * 1024 * 1024


class BundleError(Invalid):
    """A mirror bundle that is incomplete, altered, or not signed by the trusted upstream key."""

    def __init__(self, reason):
        super().__init__("Invalid mirror bundle", {"bundle": reason})
        self.reason = reason


def key_for(path):
    return f"mirror/{REPOSITORY}/{path}"


def trusted_key_pem(config):
    """PEM of the key bundles must be signed with: the configured file, else hex.pm's key."""
    if not config.mirror_public_key:
        return hexpm.PUBLIC_KEY
    try:
        with open(config.mirror_public_key, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"setting mirror_public_key: cannot read {config.mirror_public_key} ({exc})") from None


def _fingerprint(pem):
    try:
        return signing.fingerprint(signing.load_public_key(pem))
    except (ValueError, TypeError):
        return "an unreadable key"


def _read(tar, member):
    with tar.extractfile(member) as fh:
        return fh.read()


def _sha256(tar, member):
    digest = hashlib.sha256()
    with tar.extractfile(member) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _members(tar):
    members = {}
    for member in tar:
        name = member.name
        if not (FILE_RE.fullmatch(name) or name in INFO_MEMBERS) or not member.isfile():
            raise BundleError(f"unexpected member {name!r}")
        if member.size > MAX_MEMBER:
            raise BundleError(f"{name} is larger than {MAX_MEMBER} bytes")
        if name in members:
            raise BundleError(f"{name} appears twice")
        members[name] = member
    if "manifest.json" not in members:
        raise BundleError("manifest.json is missing")
    return members


def _manifest(tar, members):
    try:
        manifest = json.loads(_read(tar, members["manifest.json"]))
        sums = manifest["sha256"]
        if manifest.get("repository", REPOSITORY) != REPOSITORY or not isinstance(sums, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested too deeply for json
        raise BundleError("manifest.json is unreadable or not for the hexpm repository") from None
    for name in members:
        if name != "manifest.json" and name not in sums:
            raise BundleError(f"{name} is not listed in manifest.json")
    for name, digest in sums.items():
        if name not in members or _sha256(tar, members[name]) != digest:
            raise BundleError(f"{name} is missing or does not match the manifest")
    return sums


def _verified(raw, public_key, what, mismatch_hint):
    try:
        return registry.decode_signed(raw, public_key)
    except registry.SignatureError:
        raise BundleError(f"{what}: signature does not verify with the trusted key{mismatch_hint}") from None
    except registry.RegistryError as exc:
        raise BundleError(f"{what}: {exc}") from None


def _check_bundle(rt, tar, members, sums):
    """Decode and verify every registry file; returns (records, index files, tarball names)."""
    pem = trusted_key_pem(rt.config)
    public_key = signing.load_public_key(pem)
    hint = ""
    if "public_key" in members:
        bundled = _read(tar, members["public_key"])
        if _fingerprint(bundled) != _fingerprint(pem):
            hint = (f" (the bundle was made with {_fingerprint(bundled)}, this appliance trusts "
                    f"{_fingerprint(pem)}; see the mirror_public_key setting)")
    records, index = {}, {}
    for name, member in members.items():
        kind, _, package = name.partition("/")
        try:
            if kind == "packages":
                raw = _read(tar, member)
                payload = _verified(raw, public_key, name, hint)
                records[package] = (raw, registry.decode_package(payload, REPOSITORY, package))
            elif kind == "names":
                raw = _read(tar, member)
                index[name] = (raw, registry.decode_names(_verified(raw, public_key, name, hint), REPOSITORY))
            elif kind == "versions":
                raw = _read(tar, member)
                index[name] = (raw, registry.decode_versions(_verified(raw, public_key, name, hint), REPOSITORY))
        except BundleError:
            raise
        except registry.RegistryError as exc:
            raise BundleError(f"{name}: {exc}") from None
        except Exception as exc:  # protobuf's DecodeError and friends: a malformed payload
            raise BundleError(f"{name}: not a registry file ({exc})") from None
    signed = {f"tarballs/{pkg}-{r['version']}.tar": r["outer_checksum"].hex()
              for pkg, (_raw, record) in records.items() for r in record["releases"]}
    tarballs = sorted(n for n in members if n.startswith("tarballs/"))
    for name in tarballs:
        if name not in signed:
            raise BundleError(f"{name} is not named by a signed package record in the bundle")
        if sums[name] != signed[name]:
            raise BundleError(f"{name} does not match the outer checksum its signed record gives")
    return records, index, tarballs


def _stored(rt, key, decode):
    try:
        return decode(registry.decode_signed(rt.store.get(key), verify=False))
    except BlobNotFound:
        return None


def _covers(new, old):
    """Whether a new names/versions/package record lists at least what the stored one does."""
    if old is None:
        return True
    if "releases" in old:
        return {r["version"] for r in old["releases"]} <= {r["version"] for r in new["releases"]}
    new_packages = {p["name"]: set(p.get("versions", ())) for p in new["packages"]}
    return all(p["name"] in new_packages and set(p.get("versions", ())) <= new_packages[p["name"]]
               for p in old["packages"])


@disk.full_disk_refused()
def import_bundle(rt, path, *, actor=audit.SYSTEM):
    """Verify the bundle tar at ``path`` and store what it adds; returns a one-line summary.
    Raises BundleError, with nothing stored, if any check fails, and InsufficientStorage when the
    bundle would take the disk below its reserve."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise BundleError(f"not a bundle tar ({exc})") from None
    disk.require_space(rt.config, size, "importing the hex.pm mirror bundle")
    try:
        tar = tarfile.open(path, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"not a bundle tar ({exc})") from None
    with tar, rt.registry_lock(f"mirror-{REPOSITORY}"):
        try:
            members = _members(tar)
            sums = _manifest(tar, members)
            records, index, tarballs = _check_bundle(rt, tar, members, sums)
            new_tarballs = 0
            for name in tarballs:  # tarballs first: a record must never name a missing tarball
                if not rt.store.exists(key_for(name)):
                    rt.store.put(key_for(name), _read(tar, members[name]))
                    new_tarballs += 1
        except (tarfile.TarError, EOFError) as exc:
            raise BundleError(f"the bundle tar is damaged ({exc})") from None
        kept, stored = [], []
        for package, (raw, record) in sorted(records.items()):
            key = key_for(f"packages/{package}")
            old = _stored(rt, key, lambda p, n=package: registry.decode_package(p, REPOSITORY, n))
            if _covers(record, old):
                rt.store.put(key, raw)
                stored.append(package)
            else:
                kept.append(package)
        decoders = {"names": registry.decode_names, "versions": registry.decode_versions}
        for name, (raw, decoded) in sorted(index.items()):
            if _covers(decoded, _stored(rt, key_for(name), lambda p, d=decoders[name]: d(p, REPOSITORY))):
                rt.store.put(key_for(name), raw)
                stored.append(f"({name})")
            else:
                kept.append(f"({name})")
        with write_tx():
            audit.record(actor, "mirror.import", target=REPOSITORY, records=len(stored), tarballs=new_tarballs,
                         kept_newer=", ".join(kept) or None)
    summary = f"mirror: {len(stored)} records, {new_tarballs} new tarballs"
    if kept:
        summary += f"; kept the stored, fuller records of {', '.join(kept)}"
    return summary


def listed_versions(rt, package):
    """Versions the stored ``packages/PACKAGE`` record lists (empty if there is none): the
    mirror tarballs garbage collection must keep."""
    record = _stored(rt, key_for(f"packages/{package}"), lambda p: registry.decode_package(p, REPOSITORY, package))
    return {r["version"] for r in record["releases"]} if record else set()


def blob(rt, path):
    """A stored mirror file for GET /mirror/hexpm/PATH (only what bundles brought)."""
    if not FILE_RE.fullmatch(path):
        raise NotFound()
    try:
        # The static-file ETag (mtime, size): the TLS front serves these files from disk itself
        # and must answer with the same ETags. Mirror tarballs are never replaced once stored.
        return Blob.opened(rt.store, key_for(path), immutable=path.startswith("tarballs/"), static_etag=True)
    except (BlobNotFound, InvalidKey):
        raise NotFound() from None


def public_key_pem(rt):
    """The key mirror records are signed with, for ``mix hex.repo add --fetch-public-key``."""
    return trusted_key_pem(rt.config)
