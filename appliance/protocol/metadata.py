"""A safe reader (and writer) for metadata.config, the Erlang-term file inside a Hex tarball.

Contract (hex-protocol.md §4.2, §4.3; hexpm/specifications package_metadata.md):

* ``parse_terms(data)`` reads a sequence of ``Term.`` like ``file:consult/1`` would, but with a
  hand-written tokenizer and recursive-descent parser: nothing is evaluated and no atom is
  created. Tuples become tuples, lists become lists, binaries and "strings" become ``str``,
  ``true``/``false`` become bools, ``undefined``/``nil`` become None and any other atom an
  ``Atom`` (a ``str`` subclass). Integers, floats, ``%`` comments and the usual escapes are
  understood; anything else (function calls, funs, operators, ``[H|T]``, maps, records, ...) is
  refused. Bounds: 1 MiB of input, 64 levels of nesting, 200,000 terms, 255-character atoms.
* ``read_metadata(data)`` requires every term to be a ``{Key, Value}`` pair with a string key and
  normalizes the result like hex_core's ``normalize_metadata`` (see ``normalize_metadata``). A
  key given twice keeps its last value, as ``maps:from_list`` does in hex_core.
* ``format_metadata(meta)`` writes what hex_core's ``encode_metadata`` writes: one
  ``{<<"key">>,Value}.`` line per key, keys in binary order, maps as lists of 2-tuples.

Every failure is an ``InvalidMetadata`` whose reason names the problem and, for syntax, the line.
"""

import math
import re

from appliance.errors import InvalidMetadata

MAX_SIZE = 1024 * 1024  # hex_core refuses a metadata.config over 1 MiB
MAX_DEPTH = 64
MAX_TERMS = 200_000
MAX_ATOM_LENGTH = 255  # Erlang's own limit on atom length
MAX_DIGITS = 256  # no metadata number needs more; also keeps int() far from Python's 4300-digit guard


class Atom(str):
    """A bare atom other than true/false/undefined/nil, kept as text (never interned anywhere)."""

    __slots__ = ()

    def __repr__(self):
        return f"Atom({str.__repr__(self)})"


_SPECIAL_ATOMS = {"true": True, "false": False, "undefined": None, "nil": None}

# One alternative per token kind. Whitespace is Erlang's: every char up to space plus the Latin-1
# controls and NBSP. Digits are spelled [0-9] because \d would also match non-ASCII digits. Strings
# use the unrolled "[^"\\]*(\\.[^"\\]*)*" form so a long string is matched in linear time.
_TOKEN = re.compile(r"""
    (?P<skip>[\x00-\x20\x80-\xa0]+|%[^\n]*)
  | (?P<float>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?)
  | (?P<int>[0-9]+(?:\#[0-9A-Za-z]+)?)
  | (?P<string>"[^"\\]*(?:\\.[^"\\]*)*")
  | (?P<qatom>'[^'\\]*(?:\\.[^'\\]*)*')
  | (?P<atom>[a-z\xdf-\xf6\xf8-\xff][A-Za-z0-9_@\xc0-\xd6\xd8-\xf6\xf8-\xff]*)
  | (?P<punct><<|>>|[{}\[\],./+-])
""", re.VERBOSE | re.DOTALL)

_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x\{([0-9A-Fa-f]*)\}|x([0-9A-Fa-f]{2})|\^(.)|(.))", re.DOTALL)
_NAMED_ESCAPES = {"b": "\b", "d": "\x7f", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "s": " ",
                  "t": "\t", "v": "\v"}


def _error(what, line=None):
    return InvalidMetadata(f"metadata.config: {what}" + (f" at line {line}" if line is not None else ""))


def _show(token):
    return repr(token if len(token) <= 40 else token[:37] + "...")


def _unescape(body, line):
    """Erlang string escapes: named ones, octal \\NNN, \\xHH, \\x{H...}, \\^C; \\C is C."""
    if "\\" not in body:
        return body

    def replace(match):
        octal, braced, hex2, control, other = match.groups()
        if octal is not None:
            code = int(octal, 8)
        elif braced is not None:
            if not 1 <= len(braced) <= 8:
                raise _error("bad \\x{...} escape", line)
            code = int(braced, 16)
        elif hex2 is not None:
            code = int(hex2, 16)
        elif control is not None:
            code = ord(control) & 31
        elif other == "x":
            raise _error("bad \\x escape", line)
        else:
            return _NAMED_ESCAPES.get(other, other)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _error(f"escape for invalid character code {code:#x}", line)
        return chr(code)

    return _ESCAPE.sub(replace, body)


def _lex(text):
    """Yield (kind, text, line) tokens, then ("eof", "", line)."""
    pos, line, end, match = 0, 1, len(text), _TOKEN.match
    while pos < end:
        found = match(text, pos)
        if found is None:
            char = text[pos]
            if char in "\"'":
                raise _error("unterminated " + ("string" if char == '"' else "quoted atom") + " starting", line)
            raise _error(f"unexpected token {char!r}", line)
        kind, value = found.lastgroup, found.group()
        if kind != "skip":
            yield kind, value, line
        line += value.count("\n")
        pos = found.end()
    yield "eof", "", line


def _bytes_to_text(data):
    """What hex_core does with a file, and what we do with a binary: UTF-8, else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class _Parser:
    def __init__(self, text):
        self._tokens = _lex(text)
        self.terms = 0
        self.advance()

    def advance(self):
        self.kind, self.value, self.line = next(self._tokens)

    def at(self, punct):
        return self.kind == "punct" and self.value == punct

    def fail(self, expected):
        found = "end of input" if self.kind == "eof" else _show(self.value)
        raise _error(f"expected {expected}, found {found}", self.line)

    def count(self):
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _error(f"more than {MAX_TERMS} terms", self.line)

    def term(self, depth):
        self.count()
        kind, value = self.kind, self.value
        if kind == "punct":
            if value in ("{", "["):
                return self.container(value, depth)
            if value == "<<":
                return self.binary()
            if value in ("-", "+"):
                self.advance()
                if self.kind not in ("int", "float"):
                    self.fail("a number after " + repr(value))
                number = self.number()
                return -number if value == "-" else number
        elif kind in ("int", "float"):
            return self.number()
        elif kind == "string":
            return self.string()
        elif kind in ("atom", "qatom"):
            return self.atom()
        raise _error("unexpected " + ("end of input" if kind == "eof" else f"token {_show(value)}"), self.line)

    def container(self, opener, depth):
        if depth + 1 > MAX_DEPTH:
            raise _error(f"terms nested deeper than {MAX_DEPTH} levels", self.line)
        closer = "}" if opener == "{" else "]"
        self.advance()
        items = []
        if self.at(closer):
            self.advance()
        else:
            while True:
                items.append(self.term(depth + 1))
                if self.at(","):
                    self.advance()
                elif self.at(closer):
                    self.advance()
                    break
                else:
                    self.fail(f"',' or '{closer}'")
        return tuple(items) if opener == "{" else items

    def number(self):
        value, line = self.value, self.line
        self.advance()
        if len(value) > MAX_DIGITS:
            raise _error("number too long", line)
        if "." in value:
            number = float(value)
            if not math.isfinite(number):
                raise _error(f"float out of range: {_show(value)}", line)
            return number
        if "#" not in value:
            return int(value)
        base_text, digits = value.split("#", 1)
        base = int(base_text) if len(base_text) <= 2 else 0
        # int(x, base) alone would also take "0x" prefixes and underscores; Erlang takes neither.
        if not 2 <= base <= 36 or any(int(d, 36) >= base for d in digits):
            raise _error(f"bad integer {_show(value)}", line)
        return int(digits, base)

    def string(self):
        """One or more adjacent "..." literals, concatenated as Erlang does (io_lib_pretty splits
        long strings this way)."""
        parts = []
        while self.kind == "string":
            parts.append(_unescape(self.value[1:-1], self.line))
            self.advance()
        return "".join(parts)

    def atom(self):
        kind, value, line = self.kind, self.value, self.line
        self.advance()
        name = value if kind == "atom" else _unescape(value[1:-1], line)
        if len(name) > MAX_ATOM_LENGTH:
            raise _error(f"atom longer than {MAX_ATOM_LENGTH} characters", line)
        # 'true' and true are the same atom in Erlang.
        return _SPECIAL_ATOMS[name] if name in _SPECIAL_ATOMS else Atom(name)

    def binary(self):
        """<<Segment, ...>> where a segment is "text", "text"/utf8, a byte 0..255 or Int/utf8."""
        self.advance()
        data = bytearray()
        if self.at(">>"):
            self.advance()
            return ""
        while True:
            self.count()
            line = self.line
            if self.kind == "string":
                text = self.string()
                if self.utf8_suffix():
                    data += text.encode("utf-8")
                elif any(ord(c) > 255 for c in text):
                    # Without /utf8 each character is one byte.
                    raise _error("character above 255 in a binary without /utf8", line)
                else:
                    data += text.encode("latin-1")
            elif self.kind == "int":
                number = self.number()
                if self.utf8_suffix():
                    if number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
                        raise _error(f"invalid character code {number} in a binary", line)
                    data += chr(number).encode("utf-8")
                elif number > 255:
                    raise _error(f"byte {number} out of range in a binary", line)
                else:
                    data.append(number)
            else:
                self.fail("a string or a byte inside <<...>>")
            if self.at(","):
                self.advance()
            elif self.at(">>"):
                self.advance()
                return _bytes_to_text(bytes(data))
            else:
                self.fail("',' or '>>'")

    def utf8_suffix(self):
        if not self.at("/"):
            return False
        self.advance()
        if self.kind != "atom" or self.value != "utf8":
            self.fail("utf8 after '/' (no other binary type is supported)")
        self.advance()
        return True


def _parse(data):
    """[(term, line)] for each top-level ``Term.``."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, bytes):
        data = bytes(data)
    if len(data) > MAX_SIZE:
        raise InvalidMetadata(f"metadata.config too large: {len(data)} bytes; the limit is {MAX_SIZE}")
    parser = _Parser(_bytes_to_text(data))
    terms = []
    while parser.kind != "eof":
        line = parser.line
        terms.append((parser.term(0), line))
        if not parser.at("."):
            parser.fail("'.' after a term")
        parser.advance()
    return terms


def parse_terms(data):
    """The terms of a consult file, each ended by '.', as Python values (see module docstring)."""
    return [term for term, _line in _parse(data)]


# -- normalization ------------------------------------------------------------------------------

def _is_text(value):
    return isinstance(value, str) and not isinstance(value, Atom)


def _pairs(value, what, *, any_key=False):
    """A dict or a list of {Key, Value} 2-tuples as a list of (key, value); else InvalidMetadata."""
    if isinstance(value, dict):
        return list(value.items())
    ok_key = (lambda k: isinstance(k, str)) if any_key else _is_text
    if isinstance(value, list) and all(isinstance(i, tuple) and len(i) == 2 and ok_key(i[0]) for i in value):
        return value
    raise _error(f"{what} must be a list of {{<<\"key\">>, Value}} pairs")


def _string_list(value, key):
    if not isinstance(value, list) or not all(_is_text(v) for v in value):
        raise _error(f"{key} must be a list of strings")
    return list(value)


def _extra_value(value):
    """Nested kvlists become dicts (recursively); other lists and tuples keep their shape."""
    if isinstance(value, dict):
        return {k: _extra_value(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in value):
            return {k: _extra_value(v) for k, v in value}
        return [_extra_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_extra_value(v) for v in value)
    return value


def _requirement(name, fields):
    if not _is_text(name) or not name:
        raise _error("requirements: every dependency needs a name string")
    values = dict(_pairs(fields, f"requirements: {name}"))
    for field in ("app", "requirement", "repository"):
        if values.get(field) is not None and not _is_text(values[field]):
            raise _error(f"requirements: {name}: {field} must be a string")
    return {"name": name, "app": values.get("app") or name, "requirement": values.get("requirement"),
            "optional": values.get("optional") is True, "repository": values.get("repository")}


def _requirements(value):
    """Both shapes hex_core's normalize_requirements accepts: mix writes a list of kvlists each
    with a "name"; rebar3_hex writes a kvlist keyed by dependency name. Later duplicates win."""
    if isinstance(value, dict):
        entries = [(name, fields) for name, fields in value.items()]
    elif not isinstance(value, list):
        raise _error("requirements must be a list")
    elif value and isinstance(value[0], (list, dict)):
        entries = []
        for item in value:
            if not isinstance(item, (list, dict)):
                raise _error("requirements: mixes dependency lists with other terms")
            fields = dict(_pairs(item, "requirements: each dependency"))
            entries.append((fields.get("name"), fields))
    else:
        entries = []
        for item in value:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise _error("requirements: expected {<<\"name\">>, [...]} pairs or lists of pairs")
            entries.append(item)
    deps = {}
    for name, fields in entries:
        dep = _requirement(name, fields)
        deps[dep["name"]] = dep
    return sorted(deps.values(), key=lambda d: d["name"])


def normalize_metadata(raw):
    """hex_core's normalize_metadata plus type checks: ``requirements`` becomes a list of
    {name, app, requirement, optional, repository} dicts sorted by name; ``links`` a str->str dict;
    ``extra`` a dict (nested kvlists too); licenses/files/build_tools/maintainers lists of str.
    Other keys are kept as parsed. Idempotent. build_tools is not guessed here (tarball.py does)."""
    meta = dict(raw)
    for key in ("name", "version", "app"):
        if key in meta and not _is_text(meta[key]):
            raise _error(f"{key} must be a string")
    for key in ("description", "elixir"):
        if meta.get(key) is not None and not _is_text(meta[key]):
            raise _error(f"{key} must be a string")
    for key in ("licenses", "files", "build_tools", "maintainers"):
        if key in meta:
            meta[key] = _string_list(meta[key], key)
    if "links" in meta:
        links = _pairs(meta["links"], "links")
        if not all(_is_text(v) for _k, v in links):
            raise _error("links must map names to URL strings")
        meta["links"] = dict(links)
    if "extra" in meta:
        meta["extra"] = {k: _extra_value(v) for k, v in _pairs(meta["extra"], "extra", any_key=True)}
    if "requirements" in meta:
        meta["requirements"] = _requirements(meta["requirements"])
    return meta


def read_metadata(data):
    """metadata.config bytes -> normalized dict. A key given twice keeps its last value."""
    meta = {}
    for term, line in _parse(data):
        if not (isinstance(term, tuple) and len(term) == 2 and _is_text(term[0])):
            raise _error("expected a {<<\"key\">>, Value} pair with a string key", line)
        meta[term[0]] = term[1]
    return normalize_metadata(meta)


# -- writing ------------------------------------------------------------------------------------

_OUT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f",
                "\v": "\\v", "\x1b": "\\e", "\x7f": "\\d"}
_PLAIN_ATOM = re.compile(r"[a-z][A-Za-z0-9_@]*")


def _quote(text, quote):
    return "".join(_OUT_ESCAPES.get(c) or (f"\\x{{{ord(c):X}}}" if c < " " else "\\'" if c == quote == "'" else c)
                   for c in text)


def _write(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "undefined"
    if isinstance(value, Atom):
        return value if _PLAIN_ATOM.fullmatch(value) and value not in _SPECIAL_ATOMS else f"'{_quote(value, chr(39))}'"
    if isinstance(value, str):
        value.encode("utf-8")  # refuse lone surrogates before writing anything
        suffix = "/utf8" if any(ord(c) > 127 for c in value) else ""
        return f'<<"{_quote(value, chr(34))}"{suffix}>>'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("metadata.config cannot hold inf or nan")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        # Erlang floats need digits on both sides of the point: 1e+20 must be 1.0e+20.
        return (mantissa if "." in mantissa else mantissa + ".0") + (e + exponent if e else "")
    if isinstance(value, dict):
        return _write([(k, v) for k, v in sorted(value.items(), key=lambda kv: _sort_key(kv[0]))])
    if isinstance(value, list):
        return "[" + ",".join(_write(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "{" + ",".join(_write(v) for v in value) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to metadata.config")


def _sort_key(key):
    if not isinstance(key, str):
        raise TypeError(f"metadata keys must be strings, not {type(key).__name__}")
    return key.encode("utf-8")  # Erlang orders binaries bytewise


def _mix_requirements(value):
    """The shape mix writes: [[{<<"app">>,..},{<<"name">>,..},{<<"optional">>,..},
    {<<"repository">>,..},{<<"requirement">>,..}], ...]; repository left out when None."""
    out = []
    for dep in _requirements(value):
        fields = [("app", dep["app"]), ("name", dep["name"]), ("optional", dep["optional"])]
        if dep["repository"] is not None:
            fields.append(("repository", dep["repository"]))
        out.append(fields + [("requirement", dep["requirement"])])
    return out


def format_metadata(meta):
    """dict -> metadata.config bytes as hex_core writes them; None-valued keys are left out."""
    lines = []
    for key in sorted(meta, key=_sort_key):
        value = meta[key]
        if value is None:
            continue
        if key == "requirements":
            value = _mix_requirements(value)
        lines.append("{" + _write(key) + "," + _write(value) + "}.\n")
    return "".join(lines).encode("utf-8")
