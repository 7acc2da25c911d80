#!/usr/bin/env python3
"""Build an air-gapped hex.pm mirror bundle on a machine with internet access.

Takes a mix.lock, a rebar.lock or package names, resolves the dependency closure from the
upstream's signed /packages records (verified with its public key), downloads the tarballs,
checks each against the signed outer checksum, and writes ONE file, BUNDLE.tar, holding the
original signed registry records byte for byte, the tarballs and a manifest. Copy it into
<data>/import/hexpm/ on the Hexvault server; clients then use HEX_MIRROR=<URL>/mirror/hexpm (mix)
or repo_url <URL>/mirror/hexpm (rebar3) with hex.pm's own public key.

Usage:
  hexpm_bundle.py --public-key hexpm.pem --out deps.tar --lock mix.lock
  hexpm_bundle.py --public-key hexpm.pem --out deps.tar --lock rebar.lock
  hexpm_bundle.py --public-key hexpm.pem --out deps.tar jason plug:1.15.3
  (--repo-url defaults to https://repo.hex.pm; get its key with: curl -o hexpm.pem https://repo.hex.pm/public_key)

Standard library plus Hexvault's own protocol modules; lock files are read with regular
expressions, never evaluated.
"""

import argparse
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from appliance.protocol import registry, signing, versions  # noqa: E402

MIX_LOCK_RE = re.compile(r'"([a-z][a-z0-9_]*)":\s*\{:hex,\s*:([a-z][a-z0-9_]*),\s*"([^"]+)"')
REBAR_LOCK_RE = re.compile(r'\{<<"([a-z][a-z0-9_]*)">>,\s*\{pkg,\s*<<"([a-z][a-z0-9_]*)">>,\s*<<"([^"]+)">>')


def read_lock(path):
    """[(package, version)] pinned by a mix.lock or rebar.lock (hex packages only)."""
    text = open(path, encoding="utf-8").read()
    pattern = REBAR_LOCK_RE if path.endswith("rebar.lock") or text.lstrip().startswith("{") else MIX_LOCK_RE
    return [(package, version) for _app, package, version in pattern.findall(text)]


class Upstream:
    def __init__(self, url, public_key, timeout=60):
        self.url = url.rstrip("/")
        self.public_key = public_key
        self.timeout = timeout
        self.records = {}  # name -> (raw bytes, decoded)

    def _get(self, path):
        request = urllib.request.Request(f"{self.url}/{path}", headers={"User-Agent": "hexvault-bundle/1"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read()

    def package(self, name):
        if name not in self.records:
            raw = self._get(f"packages/{name}")
            payload = registry.decode_signed(raw, self.public_key)  # raises if the signature is wrong
            self.records[name] = (raw, registry.decode_package(payload, "hexpm", name))
        return self.records[name][1]

    def tarball(self, name, version, outer_checksum):
        data = self._get(f"tarballs/{name}-{version}.tar")
        if hashlib.sha256(data).digest() != outer_checksum:
            raise SystemExit(f"{name} {version}: tarball does not match the signed checksum")
        return data


def pick(record, requirement=None):
    """The newest non-retired release matching requirement (stable before prerelease)."""
    candidates = [r for r in record["releases"] if not r["retired"]] or record["releases"]
    if requirement:
        parsed = versions.parse_requirement(requirement)
        candidates = [r for r in candidates if parsed.matches(versions.parse_version(r["version"]))]
    if not candidates:
        raise SystemExit(f"{record['name']}: no release matches {requirement!r}")
    return max(candidates, key=lambda r: versions.parse_version(r["version"]))


def resolve(upstream, roots):
    """Closure of (name, version|None) roots over hex.pm dependencies; returns {name: {versions}}."""
    chosen, queue = {}, list(roots)
    while queue:
        name, version, requirement = queue.pop()
        record = upstream.package(name)
        release = (next((r for r in record["releases"] if r["version"] == version), None) if version
                   else pick(record, requirement))
        if release is None:
            raise SystemExit(f"{name} {version} is not in the upstream registry")
        if release["version"] in chosen.setdefault(name, {}):
            continue
        chosen[name][release["version"]] = release
        for dep in release["dependencies"]:
            if dep["repository"] in (None, "hexpm") and not dep["optional"]:
                queue.append((dep["package"], None, dep["requirement"]))
    return chosen


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("packages", nargs="*", help="NAME or NAME:VERSION")
    parser.add_argument("--lock", action="append", default=[], help="a mix.lock or rebar.lock (repeatable)")
    parser.add_argument("--repo-url", default="https://repo.hex.pm")
    parser.add_argument("--public-key", required=True, help="the upstream repository's public key (PEM)")
    parser.add_argument("--out", required=True, help="bundle file to write, e.g. deps.tar")
    args = parser.parse_args()

    roots = [(n, v, None) for lock in args.lock for n, v in read_lock(lock)]
    for spec in args.packages:
        name, _, version = spec.partition(":")
        roots.append((name, version or None, None))
    if not roots:
        parser.error("give package names or --lock files")
    upstream = Upstream(args.repo_url, signing.load_public_key(open(args.public_key, "rb").read()))
    chosen = resolve(upstream, roots)

    manifest = {"format": 1, "repository": "hexpm", "created": int(time.time()), "packages": {}, "sha256": {}}
    tmp = args.out + ".part"
    with tarfile.open(tmp, "w") as tar:
        for name in sorted(chosen):
            raw, _record = upstream.records[name]
            add(tar, f"packages/{name}", raw)
            manifest["sha256"][f"packages/{name}"] = hashlib.sha256(raw).hexdigest()
            manifest["packages"][name] = sorted(chosen[name], key=versions.parse_version)
            for version, release in sorted(chosen[name].items()):
                data = upstream.tarball(name, version, release["outer_checksum"])
                add(tar, f"tarballs/{name}-{version}.tar", data)
                manifest["sha256"][f"tarballs/{name}-{version}.tar"] = hashlib.sha256(data).hexdigest()
                print(f"{name} {version}", file=sys.stderr)
        add(tar, "public_key", open(args.public_key, "rb").read())
        add(tar, "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    os.replace(tmp, args.out)
    count = sum(len(v) for v in chosen.values())
    print(f"wrote {args.out}: {len(chosen)} packages, {count} releases. Copy it into <data>/import/hexpm/.")


if __name__ == "__main__":
    main()
