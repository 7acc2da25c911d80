"""SemVer 2.0 versions and Elixir version requirements, as Hex uses them."""

import functools
import re


class InvalidVersion(ValueError):
    pass


class InvalidRequirement(ValueError):
    pass


_VERSION_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
MAX_NUMBER = 99_999_999_999_999
MAX_PRE_LENGTH = 64


@functools.total_ordering
class Version:
    __slots__ = ("major", "minor", "patch", "pre", "build")

    def __init__(self, major, minor, patch, pre=(), build=None):
        self.major, self.minor, self.patch, self.pre, self.build = major, minor, patch, tuple(pre), build

    @property
    def is_prerelease(self):
        return bool(self.pre)

    def _key(self):
        # A release sorts after all of its prereleases; numeric identifiers sort before alphanumeric.
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __eq__(self, other):
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other):
        return self._key() < other._key()

    def __hash__(self):
        return hash(self._key())

    def __str__(self):
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(str(p) for p in self.pre)
        if self.build:
            text += "+" + self.build
        return text

    def __repr__(self):
        return f"Version({str(self)!r})"


def parse_version(text, allow_build=True):
    match = _VERSION_RE.match(text or "") if isinstance(text, str) else None
    if not match:
        raise InvalidVersion(f"invalid version: {text!r}")
    major, minor, patch, pre, build = match.groups()
    parts = []
    for ident in (pre.split(".") if pre else []):
        if ident.isdigit():
            if len(ident) > 1 and ident[0] == "0":
                raise InvalidVersion(f"invalid version: {text!r} (leading zero in {ident!r})")
            parts.append(int(ident))
        else:
            parts.append(ident)
    if build and not allow_build:
        raise InvalidVersion("build number not allowed")
    return Version(int(major), int(minor), int(patch), parts, build)


def check_release_version(text):
    version = parse_version(text, allow_build=False)
    if max(version.major, version.minor, version.patch) > MAX_NUMBER or any(
            isinstance(p, int) and p > MAX_NUMBER for p in version.pre):
        raise InvalidVersion("version numbers are too large")
    if version.pre and len(".".join(str(p) for p in version.pre)) > MAX_PRE_LENGTH:
        raise InvalidVersion(f"prerelease is longer than {MAX_PRE_LENGTH} characters")
    return version


def sort_versions(texts):
    return sorted(texts, key=parse_version)


_CLAUSE_RE = re.compile(r"^\s*(==|!=|>=|<=|~>|>|<)?\s*(\S+)\s*$")
_PARTIAL_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-.]+))?$")


class Requirement:
    def __init__(self, text, alternatives):
        self.text = text
        self._alternatives = alternatives  # [[(op, Version, allows_pre)]]

    def matches(self, version, allow_pre=False):
        if isinstance(version, str):
            version = parse_version(version)
        for clauses in self._alternatives:
            mentions_pre = any(v.pre for _op, v, _ in clauses)
            if version.pre and not (allow_pre or mentions_pre):
                continue
            if all(_compare(op, version, v, upper) for op, v, upper in clauses):
                return True
        return False

    def __str__(self):
        return self.text


def _compare(op, version, target, upper):
    if op == "==":
        return version == target
    if op == "!=":
        return version != target
    if op == ">":
        return version > target
    if op == ">=":
        return version >= target
    if op == "<":
        return version < target
    if op == "<=":
        return version <= target
    if op == "~>":
        return version >= target and version < upper
    raise AssertionError(op)


def _tilde_upper(text):
    """~> 1.2 means >= 1.2.0 and < 2.0.0; ~> 1.2.3 means >= 1.2.3 and < 1.3.0."""
    partial = _PARTIAL_RE.match(text)
    if partial:
        major, minor, pre = partial.groups()
        lower = parse_version(f"{major}.{minor}.0" + (f"-{pre}" if pre else ""))
        return lower, Version(int(major) + 1, 0, 0, [0])
    lower = parse_version(text)
    return lower, Version(lower.major, lower.minor + 1, 0, [0])


def parse_requirement(text):
    if not isinstance(text, str) or not text.strip() or len(text) > 1000:
        raise InvalidRequirement(f"invalid requirement: {text!r}")
    alternatives = []
    for alternative in re.split(r"\s+or\s+", text.strip()):
        clauses = []
        for clause in re.split(r"\s+and\s+", alternative):
            match = _CLAUSE_RE.match(clause)
            if not match:
                raise InvalidRequirement(f"invalid requirement: {text!r}")
            op, operand = match.group(1) or "==", match.group(2)
            try:
                if op == "~>":
                    lower, upper = _tilde_upper(operand)
                    clauses.append(("~>", lower, upper))
                else:
                    clauses.append((op, parse_version(operand), None))
            except InvalidVersion:
                raise InvalidRequirement(f"invalid requirement: {text!r}") from None
        alternatives.append(clauses)
    return Requirement(text, alternatives)


def check_requirement(text):
    requirement = parse_requirement(text)
    if any(op == "!=" for clauses in requirement._alternatives for op, _v, _u in clauses):
        raise InvalidRequirement(f"invalid requirement: {text!r} (!= is not allowed)")
    return requirement
