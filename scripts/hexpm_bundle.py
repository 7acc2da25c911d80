#!/usr/bin/env python3
"""Build an air-gapped hex.pm mirror bundle on a machine with internet access.

Takes mix.lock / rebar.lock files and/or package names, resolves the dependency closure from the
upstream's signed ``/packages/NAME`` records (each verified with the upstream public key; only
dependencies on the same repository, i.e. with no repository or "hexpm", are followed), downloads
the tarballs, checks each against its signed outer checksum (and a lock file's checksums against
the registry), and writes ONE file, BUNDLE.tar: the original signed records byte for byte, the
tarballs, the public key and manifest.json with the SHA-256 of every member. Copy it into
``<data>/import/hexpm/`` on the Hexvault server (as BUNDLE.tar.part, then rename, when copying
over a slow link); Hexvault serves it unchanged at ``/mirror/hexpm/``.

Usage:
  hexpm_bundle.py --lock mix.lock                      # exactly the locked versions (+ anything missing)
  hexpm_bundle.py --lock rebar.lock --out deps.tar
  hexpm_bundle.py jason plug:1.15.3                    # NAME = newest release; NAME:VERSION = that one
  hexpm_bundle.py --with-index ...                     # also upstream's signed names and versions
  --repo-url defaults to https://repo.hex.pm and --public-key to hex.pm's own key (built in).

Versions picked for names and unlocked dependencies are the newest non-retired releases that
match, as mix and rebar3 would pick them against the same record. A mirrored record still lists
every upstream release, but only the bundled tarballs can be fetched: pin with lock files.

Needs Python 3.11 with protobuf and cryptography (Hexvault's own protocol modules are imported
from this checkout). Lock files are read by small tokenizers, never evaluated.
"""

import argparse
import collections
import concurrent.futures
import datetime
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from appliance.protocol import hexpm, registry, signing, versions  # noqa: E402

REPOSITORY = hexpm.REPOSITORY
USER_AGENT = "hexvault-bundle/1"


class BundleError(Exception):
    """Something the user must fix; printed as one ``error:`` line."""


# -- lock files ------------------------------------------------------------------------------------

class Atom(str):
    """An Elixir or Erlang atom, kept apart from strings only where it matters (``:hex``, ``pkg``)."""


Pin = collections.namedtuple("Pin", "name version inner outer source")

_STRING = r'"(?:[^"\\]|\\.)*"'
_ELIXIR_TOKEN = re.compile(rf"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<kwstr>{_STRING}:(?=\s))
  | (?P<str>{_STRING})
  | (?P<atom>:(?:[A-Za-z_][\w@]*[?!]?|{_STRING}))
  | (?P<kw>[A-Za-z_][\w@]*[?!]?:(?=\s))
  | (?P<ident>[A-Za-z_][\w@.]*[?!]?)
  | (?P<num>-?\d[\d_]*(?:\.\d+)?)
  | (?P<punct>%\{{|=>|[{{}}\[\],])
""", re.X)
_ERLANG_TOKEN = re.compile(rf"""
    (?P<ws>\s+|%[^\n]*)
  | (?P<bin><<\s*(?:{_STRING}\s*(?:/utf8\s*)?)?>>)
  | (?P<str>{_STRING})
  | (?P<atom>[a-z][\w@]*|'(?:[^'\\]|\\.)*')
  | (?P<num>-?\d+)
  | (?P<punct>\#\{{|=>|[{{}}\[\],.])
""", re.X)


def _unquote(text):
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class _Tokens:
    def __init__(self, text, pattern, what):
        self.items, self.i, self.what, pos = [], 0, what, 0
        while pos < len(text):
            match = pattern.match(text, pos)
            if not match:
                raise BundleError(f"{what}: cannot read {text[pos:pos + 30]!r} (offset {pos})")
            pos = match.end()
            if match.lastgroup != "ws":
                self.items.append((match.lastgroup, match.group()))

    def peek(self):
        return self.items[self.i] if self.i < len(self.items) else (None, "end of file")

    def take(self, expected=None):
        kind, text = self.peek()
        if kind is None or (expected is not None and text != expected):
            raise BundleError(f"{self.what}: expected {expected or 'a term'}, found {text!r}")
        self.i += 1
        return kind, text

    def items_until(self, close, read_item):
        items = []
        while self.peek()[1] != close:
            items.append(read_item())
            if self.peek()[1] == ",":
                self.take(",")
            elif self.peek()[1] != close:
                raise BundleError(f"{self.what}: expected ',' or {close!r}, found {self.peek()[1]!r}")
        self.take(close)
        return items


def _elixir_term(tokens, in_map=False):
    """One Elixir literal: map, tuple, list (keywords become 2-tuples), string, atom, number."""
    def item(pair):
        kind, text = tokens.peek()
        if kind in ("kw", "kwstr"):
            tokens.take()
            return (_unquote(text[:-1]) if kind == "kwstr" else Atom(text[:-1]), _elixir_term(tokens))
        value = _elixir_term(tokens)
        if pair:
            tokens.take("=>")
            return (value, _elixir_term(tokens))
        return value

    kind, text = tokens.take()
    if text == "%{":
        return dict(tokens.items_until("}", lambda: item(True)))
    if text == "{":
        return tuple(tokens.items_until("}", lambda: item(False)))
    if text == "[":
        return tokens.items_until("]", lambda: item(False))
    if kind == "str":
        return _unquote(text)
    if kind == "atom":
        return Atom(_unquote(text[1:]) if text[1] == '"' else text[1:])
    if kind == "ident":
        return {"true": True, "false": False, "nil": None}.get(text, Atom(text))
    if kind == "num":
        return float(text.replace("_", "")) if "." in text else int(text.replace("_", ""))
    raise BundleError(f"{tokens.what}: unexpected {text!r}")


def _erlang_term(tokens):
    kind, text = tokens.take()
    if text == "{":
        return tuple(tokens.items_until("}", lambda: _erlang_term(tokens)))
    if text == "[":
        return tokens.items_until("]", lambda: _erlang_term(tokens))
    if text == "#{":
        def pair():
            key = _erlang_term(tokens)
            tokens.take("=>")
            return key, _erlang_term(tokens)
        return dict(tokens.items_until("}", pair))
    if kind == "bin":
        inner = re.match(r"<<\s*(\"(?:[^\"\\]|\\.)*\")?", text).group(1)
        return _unquote(inner) if inner else ""
    if kind == "str":
        return _unquote(text)
    if kind == "atom":
        return Atom(_unquote(text) if text.startswith("'") else text)
    if kind == "num":
        return int(text)
    raise BundleError(f"{tokens.what}: unexpected {text!r}")


def read_mix_lock(text, what="mix.lock"):
    """Pins of the hex entries of a mix.lock from the hexpm repository; others are reported."""
    tokens = _Tokens(text, _ELIXIR_TOKEN, what)
    lock = _elixir_term(tokens)
    if not isinstance(lock, dict) or tokens.peek()[0] is not None:
        raise BundleError(f"{what}: not a mix.lock map")
    pins, skipped = [], []
    for app, entry in lock.items():
        if not (isinstance(entry, tuple) and len(entry) >= 3 and entry[0] == "hex"):
            continue  # git, path and other non-Hex dependencies
        repo = entry[6] if len(entry) > 6 else REPOSITORY
        if repo != REPOSITORY:
            skipped.append(f"{app} (repo {repo})")
            continue
        inner = entry[3] if len(entry) > 3 and isinstance(entry[3], str) else None
        outer = entry[7] if len(entry) > 7 and isinstance(entry[7], str) else None
        pins.append(Pin(str(entry[1]), entry[2], inner, outer, what))
    return pins, skipped


def read_rebar_lock(text, what="rebar.lock"):
    """Pins of the {pkg, Name, Vsn} entries of a rebar.lock, with pkg_hash/pkg_hash_ext if present."""
    tokens = _Tokens(text, _ERLANG_TOKEN, what)
    terms = []
    while tokens.peek()[0] is not None:
        terms.append(_erlang_term(tokens))
        tokens.take(".")
    if not terms:
        raise BundleError(f"{what}: empty")
    first = terms[0]
    # {"1.2.0", [Deps]} since rebar3 3.5; a bare [Deps] before that.
    deps = first[1] if isinstance(first, tuple) and len(first) == 2 and isinstance(first[1], list) else first
    if not isinstance(deps, list):
        raise BundleError(f"{what}: not a rebar.lock")
    hashes = {"pkg_hash": {}, "pkg_hash_ext": {}}
    for extra in terms[1:]:
        for entry in extra if isinstance(extra, list) else []:
            if isinstance(entry, tuple) and len(entry) == 2 and entry[0] in hashes and isinstance(entry[1], list):
                hashes[entry[0]].update(e for e in entry[1] if isinstance(e, tuple) and len(e) == 2)
    pins = []
    for entry in deps:
        source = entry[1] if isinstance(entry, tuple) and len(entry) >= 2 else None
        if isinstance(source, tuple) and len(source) >= 3 and source[0] == "pkg" and isinstance(source[0], Atom):
            app = entry[0]
            pins.append(Pin(str(source[1]), str(source[2]), hashes["pkg_hash"].get(app),
                            hashes["pkg_hash_ext"].get(app), what))
    return pins, []


def read_lock(path):
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    if text.lstrip().startswith("%{") or os.path.basename(path).endswith("mix.lock"):
        return read_mix_lock(text, path)
    return read_rebar_lock(text, path)


# -- upstream ----------------------------------------------------------------------------------------

class NotUpstream(BundleError):
    """The upstream has no such file (404)."""


class Upstream:
    def __init__(self, url, public_key, timeout=60):
        self.url = url.rstrip("/")
        self.public_key = public_key
        self.timeout = timeout
        self.records = {}  # name -> (raw bytes, decoded record)

    def get(self, path):
        url = f"{self.url}/{path}"
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):  # repo.hex.pm answers 403 for names it does not have
                raise NotUpstream(f"{url}: HTTP {exc.code}") from None
            raise BundleError(f"{url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise BundleError(f"{url}: {getattr(exc, 'reason', exc)}") from None

    def _verified(self, path, raw):
        try:
            return registry.decode_signed(raw, self.public_key)
        except registry.SignatureError:
            raise BundleError(f"{path}: signature does not verify with the upstream public key") from None
        except registry.RegistryError as exc:
            raise BundleError(f"{path}: {exc}") from None

    def package(self, name):
        if name not in self.records:
            raw = self.get(f"packages/{name}")
            try:
                record = registry.decode_package(self._verified(f"packages/{name}", raw), REPOSITORY, name)
            except registry.RegistryError as exc:
                raise BundleError(f"packages/{name}: {exc}") from None
            self.records[name] = (raw, record)
        return self.records[name][1]

    def index(self, which):
        raw = self.get(which)
        decode = registry.decode_names if which == "names" else registry.decode_versions
        try:
            decode(self._verified(which, raw), REPOSITORY)
        except registry.RegistryError as exc:
            raise BundleError(f"{which}: {exc}") from None
        return raw

    def tarball(self, name, version, outer_checksum):
        data = self.get(f"tarballs/{name}-{version}.tar")
        if hashlib.sha256(data).digest() != outer_checksum:
            raise BundleError(f"{name} {version}: the tarball does not match its signed outer checksum")
        return data


# -- resolution --------------------------------------------------------------------------------------

def _version(text):
    try:
        return versions.parse_version(text)
    except versions.InvalidVersion:
        return None


def pick(record, requirement=None):
    """The newest release matching ``requirement`` (none: any stable one), non-retired first."""
    parsed = versions.parse_requirement(requirement) if requirement else None
    matching = [r for r in record["releases"] if _version(r["version"]) is not None and (
        parsed.matches(_version(r["version"])) if parsed else not _version(r["version"]).is_prerelease)]
    if not parsed and not matching:  # only prereleases exist
        matching = [r for r in record["releases"] if _version(r["version"]) is not None]
    candidates = [r for r in matching if not r["retired"]] or matching
    return max(candidates, key=lambda r: _version(r["version"])) if candidates else None


def _check_pin(pin, release):
    for field, expected in (("inner", pin.inner), ("outer", pin.outer)):
        actual = release[f"{field}_checksum"].hex()
        if expected and expected.lower() != actual:
            raise BundleError(f"{pin.source}: {pin.name} {pin.version} has {field} checksum {expected.lower()}, "
                              f"but the signed upstream record says {actual}")


def resolve(upstream, pins, specs, log=print):
    """{name: {version: release}} for the pinned and named releases and their dependency closure."""
    chosen, queue = {}, []

    def choose(name, release):
        if release["version"] not in chosen.setdefault(name, {}):
            chosen[name][release["version"]] = release
            queue.append((name, release))

    for pin in pins:
        try:
            record = upstream.package(pin.name)
        except NotUpstream:
            log(f"skipped {pin.name} {pin.version} from {pin.source}: not on the upstream (a private package?)")
            continue
        release = next((r for r in record["releases"] if r["version"] == pin.version), None)
        if release is None:
            raise BundleError(f"{pin.source}: {pin.name} {pin.version} is not in the upstream registry")
        _check_pin(pin, release)
        choose(pin.name, release)
    for name, version in specs:
        try:
            record = upstream.package(name)
        except NotUpstream:
            raise BundleError(f"package {name} does not exist upstream") from None
        release = (next((r for r in record["releases"] if r["version"] == version), None) if version
                   else pick(record))
        if release is None:
            raise BundleError(f"{name} {version or ''} is not in the upstream registry".replace("  ", " "))
        choose(name, release)
    while queue:
        name, release = queue.pop(0)
        for dep in release["dependencies"]:
            if dep["optional"] or dep["repository"] not in (None, REPOSITORY):
                continue  # rebar3 skips optional deps; mix fetches them only if something else requires them
            try:
                requirement = versions.parse_requirement(dep["requirement"])
            except versions.InvalidRequirement:
                raise BundleError(f"{name} {release['version']}: unreadable requirement "
                                  f"{dep['requirement']!r} on {dep['package']}") from None
            if any(_version(v) and requirement.matches(_version(v)) for v in chosen.get(dep["package"], {})):
                continue
            try:
                found = pick(upstream.package(dep["package"]), dep["requirement"])
            except NotUpstream:
                found = None
            if found is None:
                raise BundleError(f"{name} {release['version']} requires {dep['package']} {dep['requirement']}, "
                                  "which no upstream release matches")
            choose(dep["package"], found)
    return chosen


# -- writing -----------------------------------------------------------------------------------------

def _add(tar, name, data, mtime):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_bundle(out, upstream, chosen, public_key_pem, *, with_index=False, jobs=8, log=print):
    now = datetime.datetime.now(datetime.timezone.utc)
    mtime = int(now.timestamp())
    manifest = {"format": 1, "repository": REPOSITORY, "upstream": upstream.url,
                "created": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "public_key": signing.fingerprint(signing.load_public_key(public_key_pem)),
                "packages": {n: sorted(chosen[n], key=_version) for n in sorted(chosen)}, "sha256": {}}

    def add(tar, name, data):
        _add(tar, name, data, mtime)
        manifest["sha256"][name] = hashlib.sha256(data).hexdigest()

    tmp = out + ".part"
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(chosen):
                add(tar, f"packages/{name}", upstream.records[name][0])
            if with_index:
                for which in ("names", "versions"):
                    add(tar, which, upstream.index(which))
            wanted = [(n, v, r) for n in sorted(chosen) for v, r in sorted(chosen[n].items())]
            with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(upstream.tarball, n, v, r["outer_checksum"]): (n, v) for n, v, r in wanted}
                for future in concurrent.futures.as_completed(futures):
                    name, version = futures[future]
                    add(tar, f"tarballs/{name}-{version}.tar", future.result())
                    log(f"  {name} {version}")
            _add(tar, "public_key", public_key_pem, mtime)
            manifest["sha256"]["public_key"] = hashlib.sha256(public_key_pem).hexdigest()
            _add(tar, "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode(), mtime)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return manifest


def parse_spec(spec):
    name, sep, version = spec.partition(":")
    if not sep:
        name, _, version = spec.partition("@")
    if not re.fullmatch(r"[a-z][a-z0-9_]{1,99}", name):
        raise BundleError(f"not a package name: {spec!r}")
    return name, version or None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:]))
    parser.add_argument("packages", nargs="*", help="NAME (newest release) or NAME:VERSION")
    parser.add_argument("--lock", action="append", default=[], help="a mix.lock or rebar.lock (repeatable)")
    parser.add_argument("--repo-url", default=hexpm.REPO_URL, help="upstream repository (default %(default)s)")
    parser.add_argument("--public-key", help="upstream public key, PEM (default: hex.pm's built-in key)")
    parser.add_argument("--out", help="bundle file to write (default hexpm-bundle-UTCSTAMP.tar)")
    parser.add_argument("--with-index", action="store_true", help="also bundle upstream's signed names and versions")
    parser.add_argument("--jobs", type=int, default=8, help="parallel tarball downloads (default %(default)s)")
    args = parser.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr)

    try:
        if args.public_key:
            with open(args.public_key, "rb") as fh:
                public_key_pem = fh.read()
        else:
            public_key_pem = hexpm.PUBLIC_KEY
        try:
            public_key = signing.load_public_key(public_key_pem)
        except ValueError as exc:
            raise BundleError(f"{args.public_key}: not a PEM public key ({exc})") from None
        pins = []
        for lock in args.lock:
            found, skipped = read_lock(lock)
            pins += found
            for entry in skipped:
                log(f"skipped {entry} from {lock}: not a {REPOSITORY} package")
        specs = [parse_spec(s) for s in args.packages]
        if not pins and not specs:
            parser.error("give package names or --lock files")
        out = args.out or datetime.datetime.now(datetime.timezone.utc).strftime("hexpm-bundle-%Y%m%dT%H%M%SZ.tar")
        upstream = Upstream(args.repo_url, public_key)
        chosen = resolve(upstream, pins, specs, log=log)
        if not chosen:
            raise BundleError("nothing to bundle")
        log(f"downloading {sum(len(v) for v in chosen.values())} tarballs from {upstream.url}")
        write_bundle(out, upstream, chosen, public_key_pem, with_index=args.with_index, jobs=args.jobs, log=log)
    except (BundleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    releases = sum(len(v) for v in chosen.values())
    print(f"wrote {out}: {len(chosen)} packages, {releases} releases. Copy it into <data>/import/hexpm/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
