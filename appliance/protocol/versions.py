"""SemVer 2.0 versions and Elixir version requirements, as Hex uses them.

Contract:

* ``parse_version(text, allow_build=True) -> Version`` reads what Elixir's ``Version.parse/1``
  reads, or raises ``InvalidVersion``. ``Version`` is immutable and hashable; ``<`` and ``==``
  follow SemVer 2.0 precedence, so build metadata is ignored by both (``1.0.0+a == 1.0.0``).
  ``str(version)`` gives the canonical text back.
* ``check_release_version(text) -> Version`` adds hex.pm's publish rules.
* ``sort_versions(texts) -> list[str]``: ascending precedence, the order of registry files.
* ``parse_requirement(text) -> Requirement`` reads Elixir requirement syntax, or raises
  ``InvalidRequirement``; ``Requirement.matches(version, allow_pre=False)`` is Elixir's
  ``Version.match?/3`` (Hex passes ``allow_pre: false``). ``check_requirement(text)`` adds the
  hex.pm rule that ``!=`` may not be published.

Sources: elixir-lang/elixir lib/elixir/lib/version.ex (parser, lexer, ``match_op?``);
hexpm/hexpm lib/hexpm/ecto/version.ex and lib/hexpm/ecto/changeset.ex (publish rules).
"""

import collections
import functools
import json
import re

# hexpm lib/hexpm/ecto/version.ex; Elixir's parser refuses numbers of more than 14 digits too
# (version.ex @max_numeric_component_digits), which also keeps int() away from huge inputs.
MAX_NUMBER = 99_999_999_999_999
MAX_DIGITS = 14
MAX_PRE_LENGTH = 64
# Not an Elixir limit: a bound on the work one (attacker-supplied) requirement can cost.
MAX_REQUIREMENT_LENGTH = 1024


class InvalidVersion(ValueError):
    pass


class InvalidRequirement(ValueError):
    pass


def _inspect(text):
    """Quote like Elixir's inspect/1, so messages read the way mix users know them."""
    return json.dumps(text, ensure_ascii=False) if isinstance(text, str) else repr(text)


_NUMBER = r"(?:0|[1-9][0-9]*)"
_DOTTED = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
# The patch group is optional only for ``~>`` operands (Elixir's ``approximate?``); callers check.
# re.fullmatch and explicit ASCII classes: Python's ``$`` accepts a trailing newline and ``\d``
# accepts non-ASCII digits, Elixir accepts neither.
_VERSION_RE = re.compile(rf"({_NUMBER})\.({_NUMBER})(?:\.({_NUMBER}))?(?:-({_DOTTED}))?(?:\+({_DOTTED}))?")


@functools.total_ordering
class Version:
    """A parsed version. ``pre`` is a tuple of ints (numeric identifiers) and strs."""

    __slots__ = ("major", "minor", "patch", "pre", "build", "_key")

    def __init__(self, major, minor, patch, pre=(), build=None):
        pre = tuple(pre)
        for name, value in (("major", major), ("minor", minor), ("patch", patch), ("pre", pre), ("build", build)):
            object.__setattr__(self, name, value)
        # SemVer 2.0 §11: a release sorts after its prereleases; numeric identifiers sort before
        # alphanumeric ones; a shorter identifier list that is a prefix sorts first. The tags 0/1
        # keep Python from ever comparing an int with a str.
        ids = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in pre)
        object.__setattr__(self, "_key", (major, minor, patch, 0 if pre else 1, ids))

    def __setattr__(self, name, value):
        raise AttributeError("Version is immutable")

    __delattr__ = __setattr__

    @property
    def is_prerelease(self):
        return bool(self.pre)

    def __eq__(self, other):
        return self._key == other._key if isinstance(other, Version) else NotImplemented

    def __lt__(self, other):
        return self._key < other._key if isinstance(other, Version) else NotImplemented

    def __hash__(self):
        return hash(self._key)

    def __str__(self):
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(str(p) for p in self.pre)
        if self.build:
            text += "+" + self.build
        return text

    def __repr__(self):
        return f"Version({str(self)!r})"


def _parse(text, approximate=False):
    """(major, minor, patch or None, pre, build) or InvalidVersion; patch may be absent only
    when ``approximate`` (a ``~>`` operand)."""
    match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if not match or (match.group(3) is None and not approximate):
        raise InvalidVersion(f"invalid version: {_inspect(text)}")
    major, minor, patch, pre, build = match.groups()
    if any(len(n) > MAX_DIGITS for n in (major, minor, patch or "")):
        raise InvalidVersion(f"invalid version: {_inspect(text)} (numeric components must be at most {MAX_NUMBER})")
    parts = []
    for ident in pre.split(".") if pre else ():
        if not ident.isdigit():  # fullmatch above already limited it to ASCII
            parts.append(ident)
        elif len(ident) > 1 and ident[0] == "0":
            raise InvalidVersion(f"invalid version: {_inspect(text)} (leading zero in {ident!r})")
        elif len(ident) > MAX_DIGITS:
            raise InvalidVersion(f"invalid version: {_inspect(text)} (numeric components must be at most {MAX_NUMBER})")
        else:
            parts.append(int(ident))
    return int(major), int(minor), None if patch is None else int(patch), tuple(parts), build


def parse_version(text, allow_build=True):
    major, minor, patch, pre, build = _parse(text)
    if build is not None and not allow_build:
        raise InvalidVersion("build number not allowed")
    return Version(major, minor, patch, pre, build)


def check_release_version(text):
    """A version hex.pm would let you publish (hexpm lib/hexpm/ecto/version.ex ``validate``)."""
    version = parse_version(text, allow_build=False)
    if any(isinstance(n, int) and n > MAX_NUMBER for n in (version.major, version.minor, version.patch) + version.pre):
        raise InvalidVersion(f"numeric components must be at most {MAX_NUMBER}")
    if len(".".join(str(p) for p in version.pre)) > MAX_PRE_LENGTH:
        raise InvalidVersion(f"prerelease must be at most {MAX_PRE_LENGTH} characters")
    return version


def sort_versions(texts):
    """Ascending SemVer precedence (hexpm registry_builder.ex sorts with Version.compare)."""
    return sorted(texts, key=parse_version)


# -- requirements ---------------------------------------------------------------------------------

# Elixir's lexer tries these at every position, in this order; "!" is a deprecated alias of "!=".
_OPERATORS = tuple((text, ("op", text)) for text in (">=", "<=", "~>", ">", "<", "==")) + (
    (" or ", ("or", None)), (" and ", ("and", None)), ("!=", ("op", "!=")), ("!", ("op", "!=")))
_Clause = collections.namedtuple("_Clause", "op version upper")


def _lex(source):
    """Tokens of Elixir's Version.Parser.lexer: ("op", ">="), ("ver", "1.0.0"), ("and"|"or", None).

    A space ends a version; text after "and"/"or" (or at the start) without an operator gets an
    implicit "==". Two versions in a row are therefore "== a == b", which the grammar refuses."""
    tokens, buffer, i = [], "", 0

    def flush():
        if buffer:
            if not tokens or tokens[-1][0] != "op":
                tokens.append(("op", "=="))
            tokens.append(("ver", buffer))

    while i < len(source):
        text, token = next(((t, tok) for t, tok in _OPERATORS if source.startswith(t, i)), (None, None))
        if token is not None:
            flush()
            buffer = ""
            tokens.append(token)
            i += len(text)
        elif source[i] == " ":
            flush()
            buffer = ""
            i += 1
        else:
            buffer += source[i]
            i += 1
    flush()
    return tokens


def parse_requirement(text):
    """Elixir requirement syntax: ``op version`` clauses joined by ``and``/``or`` (``and`` binds
    tighter). Only ``~>`` takes a version without patch (``~> 2.1`` means >= 2.1.0 and < 3.0.0)."""
    if not isinstance(text, str) or len(text) > MAX_REQUIREMENT_LENGTH:
        raise InvalidRequirement(f"invalid requirement: {_inspect(text)}")
    tokens = _lex(text)
    # Grammar (version.ex revert_lexed): op ver ((and | or) op ver)*
    if len(tokens) % 3 != 2:
        raise InvalidRequirement(f"invalid requirement: {_inspect(text)}")
    alternatives, current = [], []
    for index in range(0, len(tokens), 3):
        (kind, op), (vkind, operand) = tokens[index], tokens[index + 1]
        joiner = tokens[index + 2][0] if index + 2 < len(tokens) else None
        if kind != "op" or vkind != "ver" or joiner not in (None, "and", "or"):
            raise InvalidRequirement(f"invalid requirement: {_inspect(text)}")
        try:
            major, minor, patch, pre, _build = _parse(operand, approximate=(op == "~>"))
        except InvalidVersion:
            raise InvalidRequirement(f"invalid requirement: {_inspect(text)}") from None
        version = Version(major, minor, patch or 0, pre)
        upper = None
        if op == "~>":  # the upper bound excludes its own prereleases: "< X.Y.0-0"
            upper = Version(major + 1, 0, 0, (0,)) if patch is None else Version(major, minor + 1, 0, (0,))
        current.append(_Clause(op, version, upper))
        if joiner != "and":
            alternatives.append(tuple(current))
            current = []
    return Requirement(text, tuple(alternatives))


class Requirement:
    """A parsed requirement: ``alternatives`` is a tuple (or) of tuples (and) of clauses."""

    __slots__ = ("text", "alternatives")

    def __init__(self, text, alternatives):
        self.text, self.alternatives = text, alternatives

    @property
    def operators(self):
        return {clause.op for clauses in self.alternatives for clause in clauses}

    def matches(self, version, allow_pre=False):
        if isinstance(version, str):
            version = parse_version(version)
        return any(all(_match(c, version, allow_pre) for c in clauses) for clauses in self.alternatives)

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"Requirement({self.text!r})"


def _match(clause, version, allow_pre):
    """Elixir version.ex ``match_op?``. With allow_pre false a prerelease satisfies ~>, > and >=
    only when the operand is itself a prerelease; ==, !=, < and <= compare by precedence alone."""
    op, target = clause.op, clause.version
    pre_ok = allow_pre or bool(target.pre) or not version.pre
    if op == "==":
        return version == target
    if op == "!=":
        return version != target
    if op == "<":
        return version < target
    if op == "<=":
        return version <= target
    if op == ">":
        return version > target and pre_ok
    if op == ">=":
        return version >= target and pre_ok
    return target <= version < clause.upper and pre_ok  # ~>


def check_requirement(text):
    """A requirement hex.pm accepts in published metadata (hexpm changeset.ex
    ``validate_requirement``). hexpm looks for the text "!="; Elixir also reads a bare "!" as !=,
    so any != clause is refused here, however it is spelled."""
    if text is None:
        raise InvalidRequirement('invalid requirement: nil, use ">= 0.0.0" instead')
    requirement = parse_requirement(text)
    if "!=" in requirement.operators:
        raise InvalidRequirement(f"invalid requirement: {_inspect(text)}, != is not allowed in requirements")
    return requirement
