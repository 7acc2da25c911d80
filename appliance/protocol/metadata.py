"""A safe reader (and writer) for metadata.config, the Erlang-term file inside a Hex tarball.

Written by hand on purpose: it must never evaluate code or create atoms. It accepts the term
subset hex_core and older tools write (binaries in three spellings, strings, atoms, numbers,
lists, tuples) within fixed bounds, and nothing else (hexpm/specifications package_metadata.md).
"""

import re

from appliance.errors import InvalidMetadata

MAX_SIZE = 1024 * 1024
MAX_DEPTH = 64
MAX_TERMS = 200_000


class Atom(str):
    """A bare atom other than true/false/undefined/nil, kept as text (never interned)."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+|%[^\n]*)
  | (?P<bin_open><<)
  | (?P<bin_close>>>)
  | (?P<punct>[{}\[\],./|])
  | (?P<float>-?\d+\.\d+(?:[eE][+-]?\d+)?)
  | (?P<int>-?\d+(?:\#[0-9A-Za-z]+)?)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<qatom>'(?:[^'\\]|\\.)*')
  | (?P<atom>[a-z][A-Za-z0-9_@]*)
  | (?P<char>\$(?:\\.|.))
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "e": "\x1b", "d": "\x7f", "b": "\b", "f": "\f",
            "v": "\v", '"': '"', "'": "'", "\\": "\\"}


def _unescape(body, line):
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise InvalidMetadata(f"metadata.config: bad escape at line {line}")
        c = body[i]
        if c == "x":
            if body[i + 1:i + 2] == "{":
                end = body.find("}", i)
                if end < 0:
                    raise InvalidMetadata(f"metadata.config: bad \\x{{}} escape at line {line}")
                digits, i = body[i + 2:end], end + 1
            else:
                digits, i = body[i + 1:i + 3], i + 3
            try:
                out.append(chr(int(digits, 16)))
            except (ValueError, OverflowError):
                raise InvalidMetadata(f"metadata.config: bad \\x escape at line {line}") from None
        elif c in "01234567":
            j = i
            while j < len(body) and j < i + 3 and body[j] in "01234567":
                j += 1
            out.append(chr(int(body[i:j], 8)))
            i = j
        elif c in _ESCAPES:
            out.append(_ESCAPES[c])
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _tokens(text):
    pos, line = 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise InvalidMetadata(f"metadata.config: unexpected character {text[pos]!r} at line {line}")
        kind = match.lastgroup
        value = match.group()
        if kind != "ws":
            yield kind, value, line
        line += value.count("\n")
        pos = match.end()
    yield "eof", "", line


def _bytes_to_text(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class _Parser:
    def __init__(self, text):
        self.tokens = _tokens(text)
        self.count = 0
        self.advance()

    def advance(self):
        self.kind, self.value, self.line = next(self.tokens)

    def fail(self, what):
        shown = self.value if self.kind != "eof" else "end of file"
        raise InvalidMetadata(f"metadata.config: {what}, found {shown!r} at line {self.line}")

    def expect(self, value):
        if self.value != value or self.kind == "string":
            self.fail(f"expected {value!r}")
        self.advance()

    def term(self, depth=0):
        if depth > MAX_DEPTH:
            raise InvalidMetadata("metadata.config: terms are nested too deeply")
        self.count += 1
        if self.count > MAX_TERMS:
            raise InvalidMetadata("metadata.config: too many terms")
        kind, value = self.kind, self.value
        if kind == "bin_open":
            return self.binary()
        if kind == "punct" and value == "{":
            self.advance()
            items = self.sequence("}", depth)
            return tuple(items)
        if kind == "punct" and value == "[":
            self.advance()
            return self.sequence("]", depth)
        if kind == "string":
            self.advance()
            return _unescape(value[1:-1], self.line)
        if kind in ("int", "float"):
            self.advance()
            if kind == "float":
                return float(value)
            if "#" in value:
                base, digits = value.lstrip("-").split("#", 1)
                try:
                    number = int(digits, int(base))
                except ValueError:
                    self.fail("bad integer")
                return -number if value.startswith("-") else number
            return int(value)
        if kind == "char":
            self.advance()
            return ord(_unescape(value[1:], self.line)[0])
        if kind in ("atom", "qatom"):
            name = value if kind == "atom" else _unescape(value[1:-1], self.line)
            if len(name) > 255:
                self.fail("atom too long")
            self.advance()
            if kind == "atom" and self.kind == "punct" and self.value in ("(", ":"):
                self.fail("function calls are not allowed")
            return {"true": True, "false": False, "undefined": None, "nil": None}.get(name, Atom(name)) \
                if kind == "atom" else Atom(name)
        self.fail("expected a term")

    def sequence(self, close, depth):
        items = []
        if self.value == close:
            self.advance()
            return items
        while True:
            items.append(self.term(depth + 1))
            if self.value == ",":
                self.advance()
                continue
            if self.value == close:
                self.advance()
                return items
            self.fail(f"expected ',' or {close!r}")

    def binary(self):
        self.advance()
        data = bytearray()
        if self.kind == "bin_close":
            self.advance()
            return ""
        while True:
            if self.kind == "string":
                text = _unescape(self.value[1:-1], self.line)
                self.advance()
                if self.value == "/":
                    self.advance()
                    if self.value != "utf8":
                        self.fail("only /utf8 is supported in binaries")
                    self.advance()
                    data += text.encode("utf-8")
                else:
                    if any(ord(c) > 255 for c in text):
                        self.fail("character above 255 in a binary without /utf8")
                    data += text.encode("latin-1")
            elif self.kind == "int" and "#" not in self.value and not self.value.startswith("-"):
                number = int(self.value)
                if number > 255:
                    self.fail("byte above 255 in a binary")
                data.append(number)
                self.advance()
            else:
                self.fail("expected a string or byte in a binary")
            if self.value == ",":
                self.advance()
                continue
            if self.kind == "bin_close":
                self.advance()
                return _bytes_to_text(bytes(data))
            self.fail("expected ',' or '>>'")


def parse_terms(data):
    """The terms of a consult file, each ended by '.', as Python values."""
    if len(data) > MAX_SIZE:
        raise InvalidMetadata("metadata.config too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    parser = _Parser(text)
    terms = []
    while parser.kind != "eof":
        terms.append(parser.term())
        if parser.value != "." or parser.kind != "punct":
            parser.fail("expected '.' after a term")
        parser.advance()
    return terms


def _is_kvlist(value):
    return isinstance(value, list) and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str)
                                           for i in value)


def _to_dict(value, key, nested=False):
    if value == []:
        return {}
    if isinstance(value, dict):
        return value
    if not _is_kvlist(value):
        raise InvalidMetadata(f"metadata.config: {key} must be a list of pairs")
    out = {}
    for k, v in value:
        out[str(k)] = _to_dict(v, key, True) if nested and _is_kvlist(v) and v else v
    return out


def _string_list(value, key):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidMetadata(f"metadata.config: {key} must be a list of strings")
    return [str(v) for v in value]


def _requirement(name, fields):
    if not isinstance(name, str) or not name:
        raise InvalidMetadata("metadata.config: every requirement needs a name")
    requirement = fields.get("requirement")
    repository = fields.get("repository")
    app = fields.get("app")
    for field, value in (("requirement", requirement), ("repository", repository), ("app", app)):
        if value is not None and not isinstance(value, str):
            raise InvalidMetadata(f"metadata.config: requirement {name}: {field} must be a string")
    return {"name": str(name), "app": str(app or name), "requirement": requirement,
            "optional": fields.get("optional") is True, "repository": repository or None}


def _requirements(value):
    """Both shapes: mix's list of kvlists with a name, rebar3_hex's kvlist keyed by name."""
    if value in ([], None):
        return []
    if not isinstance(value, list):
        raise InvalidMetadata("metadata.config: requirements must be a list")
    result = []
    for item in value:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            result.append(_requirement(item[0], _to_dict(item[1], "requirements")))
        elif _is_kvlist(item):
            fields = _to_dict(item, "requirements")
            result.append(_requirement(fields.get("name"), fields))
        else:
            raise InvalidMetadata("metadata.config: requirements has an entry of an unknown shape")
    return sorted(result, key=lambda r: r["name"])


def read_metadata(data):
    """metadata.config -> dict, normalized like hex_core: requirements become a list of dicts
    (name, app, requirement, optional, repository); links and extra become dicts. A key given
    twice keeps its last value, as file:consult followed by maps:from_list would."""
    meta = {}
    for term in parse_terms(data):
        if not (isinstance(term, tuple) and len(term) == 2 and isinstance(term[0], str)):
            raise InvalidMetadata("metadata.config: every term must be a {Key, Value} pair")
        meta[str(term[0])] = term[1]
    for key in ("name", "version", "app", "description", "elixir"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            raise InvalidMetadata(f"metadata.config: {key} must be a string")
        if key in meta and isinstance(meta[key], str):
            meta[key] = str(meta[key])
    for key in ("licenses", "files", "build_tools", "maintainers"):
        if key in meta:
            meta[key] = _string_list(meta[key], key)
    if "links" in meta:
        meta["links"] = {k: str(v) for k, v in _to_dict(meta["links"], "links").items() if isinstance(v, str)}
    if "extra" in meta:
        meta["extra"] = _plain(_to_dict(meta["extra"], "extra", True))
    meta["requirements"] = _requirements(meta.get("requirements"))
    return meta


def _plain(value):
    """JSON-storable form of arbitrary terms (tuples become lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _fmt_binary(text):
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'<<"{escaped}"/utf8>>' if any(ord(c) > 127 for c in text) else f'<<"{escaped}">>'


def _fmt(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "undefined"
    if isinstance(value, str):
        return _fmt_binary(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "[" + ",".join("{" + _fmt(k) + "," + _fmt(v) + "}" for k, v in value.items()) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to metadata.config")


def format_metadata(meta):
    lines = []
    for key, value in meta.items():
        if value is None:
            continue
        if key == "requirements":
            value = [{k: v for k, v in (("app", r.get("app") or r["name"]), ("name", r["name"]),
                                       ("optional", bool(r.get("optional"))), ("repository", r.get("repository")),
                                       ("requirement", r.get("requirement"))) if v is not None}
                     for r in value]
        lines.append("{" + _fmt(key) + "," + _fmt(value) + "}.\n")
    return "".join(lines).encode("utf-8")
