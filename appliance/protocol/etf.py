"""Erlang external term format for ``application/vnd.hex+erlang`` bodies, on top of erlang-py.

Contract:

* ``encode(value) -> bytes``: dict -> map, str -> UTF-8 binary, bytes -> binary, True/False ->
  atoms ``true``/``false``, None -> atom ``nil`` (Elixir's nil: mix matches
  ``%{"retirement" => nil}``), int -> integer, float -> float, list/tuple -> list, datetime ->
  ISO-8601 UTC string truncated to seconds (hexpm lib/hexpm/utils.ex ``binarify``). Atoms are
  written as SMALL_ATOM_UTF8_EXT, which every OTP since R16 reads. Never compressed.
* ``decode(data, *, max_size=MAX_SIZE, max_depth=MAX_DEPTH, max_terms=MAX_TERMS)``: binary ->
  str (bytes when not UTF-8), true/false -> bool, nil/undefined -> None, other atoms -> str,
  charlist -> str, list -> list, tuple -> tuple, map -> dict. Anything else, and anything
  malformed, raises ``ETFError`` and nothing else.

erlang-py's own mapping is not Hex's (it writes Python bytes as a charlist and None as
``undefined``), hence the conversion on both sides. Its decoder recurses without a bound and
trusts length fields, so every body is first walked here without recursion (``_scan``): tags
limited to what Hex clients send, lengths checked against the bytes actually present, depth,
term count and bignum size capped, no compressed terms (hexpm lib/hexpm_web/erlang_format.ex
refuses ``<<131, 80>>``), nothing executable (funs, pids, ports, refs), no improper lists, no
duplicate map keys (OTP's binary_to_term refuses them; erlang-py would silently keep the last).
"""

import datetime
import math
import struct

import erlang

MAX_SIZE = 1024 * 1024
MAX_DEPTH = 100
MAX_TERMS = 100_000
MAX_BIG_BYTES = 64  # Hex sends nothing near 512-bit integers; bounds erlang-py's O(n^2) bignum loop
MAX_ATOM_BYTES = 255 * 4  # OTP atoms are at most 255 characters

VERSION = 131
_TRUE, _FALSE, _NIL = erlang.OtpErlangAtom("true"), erlang.OtpErlangAtom("false"), erlang.OtpErlangAtom("nil")

# tag -> bytes that follow it, for terms of a fixed size
_FIXED = {97: 1, 98: 4, 70: 8, 99: 31, 106: 0}  # small int, int, new float, old float, []
_ATOMS = {100: ">H", 118: ">H", 115: ">B", 119: ">B"}  # ATOM_EXT, ATOM_UTF8, SMALL_ATOM, SMALL_ATOM_UTF8
_BLOBS = {107: ">H", 109: ">I"}  # STRING_EXT (charlist), BINARY_EXT
_BIGS = {110: ">B", 111: ">I"}
_CONTAINERS = {104: ">B", 105: ">I", 108: ">I", 116: ">I"}  # small/large tuple, list, map
_LIST, _MAP = 108, 116
_REFUSED = {
    80: "compressed terms are not accepted",
    77: "bitstrings are not accepted",
    78: "atom cache references are not accepted",
    121: "LOCAL_EXT terms are not accepted",
    **dict.fromkeys((112, 113, 117), "functions are not accepted"),
    **dict.fromkeys((88, 103), "pids are not accepted"),
    **dict.fromkeys((89, 102, 120), "ports are not accepted"),
    **dict.fromkeys((90, 101, 114), "references are not accepted"),
}


class ETFError(ValueError):
    pass


# -- encoding ---------------------------------------------------------------------------------------

def _to_erlang(value, depth):
    if depth > MAX_DEPTH:
        raise ETFError("value nested too deeply to encode")
    if value is None:
        return _NIL
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, str):
        return erlang.OtpErlangBinary(value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return erlang.OtpErlangBinary(bytes(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ETFError("Erlang has no NaN or infinity")
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:  # naive datetimes are taken to be UTC, as Hexvault stores them
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return erlang.OtpErlangBinary((value.replace(microsecond=0).isoformat() + "Z").encode())
    if isinstance(value, dict):
        out = {_to_erlang(k, depth + 1): _to_erlang(v, depth + 1) for k, v in value.items()}
        if len(out) != len(value):  # e.g. "a" and b"a" are the same binary
            raise ETFError("map keys collide once encoded")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_erlang(v, depth + 1) for v in value]
    raise ETFError(f"cannot encode {type(value).__name__}")


def encode(value):
    return erlang.term_to_binary(_to_erlang(value, 0))


# -- decoding ---------------------------------------------------------------------------------------

def _read(data, i, fmt):
    size = struct.calcsize(fmt)
    if i + size > len(data):
        raise ETFError("truncated term")
    return struct.unpack_from(fmt, data, i)[0], i + size


def _scan(data, max_depth, max_terms):
    """Walk the term iteratively; return the pair count of every map in byte order.

    ``pending`` holds, per open container, how many terms it still expects. A list also expects
    its NIL tail once its elements are read. Every term takes at least one byte, so a count larger
    than the bytes left is refused before anything is allocated."""
    n, i, terms = len(data), 1, 0
    pending, kinds, map_sizes = [1], [None], []
    while pending:
        if pending[-1] == 0:
            pending.pop()
            if kinds.pop() == _LIST:
                if i >= n or data[i] != 106:
                    raise ETFError("improper lists are not accepted")
                i += 1
            continue
        pending[-1] -= 1
        terms += 1
        if terms > max_terms:
            raise ETFError(f"more than {max_terms} terms")
        if i >= n:
            raise ETFError("truncated term")
        tag, i = data[i], i + 1
        if tag in _FIXED:
            i += _FIXED[tag]
        elif tag in _ATOMS:
            length, i = _read(data, i, _ATOMS[tag])
            if length > MAX_ATOM_BYTES:
                raise ETFError("atom too long")
            i += length
        elif tag in _BLOBS:
            length, i = _read(data, i, _BLOBS[tag])
            i += length
        elif tag in _BIGS:
            length, i = _read(data, i, _BIGS[tag])
            if length > MAX_BIG_BYTES:
                raise ETFError("integer too large")
            i += 1 + length  # sign byte, then digits
        elif tag in _CONTAINERS:
            count, i = _read(data, i, _CONTAINERS[tag])
            if tag == _MAP:
                map_sizes.append(count)
                count *= 2
            if count > n - i:
                raise ETFError("truncated term (a length claims more elements than there are bytes)")
            if len(pending) > max_depth:
                raise ETFError(f"term nested deeper than {max_depth} levels")
            pending.append(count)
            kinds.append(tag)
        elif tag in _REFUSED:
            raise ETFError(_REFUSED[tag])
        else:
            raise ETFError(f"unknown term tag {tag}")
        if i > n:
            raise ETFError("truncated term")
    if i != n:
        raise ETFError("trailing bytes after the term")
    return map_sizes


def decode(data, *, max_size=MAX_SIZE, max_depth=MAX_DEPTH, max_terms=MAX_TERMS):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ETFError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise ETFError(f"body larger than {max_size} bytes")
    data = bytes(data)
    if not data:
        raise ETFError("empty body")
    if data[0] != VERSION:
        raise ETFError("not an Erlang external term (version byte is not 131)")
    map_sizes = _scan(data, max_depth, max_terms)
    try:
        term = erlang.binary_to_term(data)
    except Exception as exc:  # erlang-py raises its own exceptions, struct.error, UnicodeDecodeError...
        raise ETFError(f"malformed term: {exc}") from None
    try:
        return _from_erlang(term, iter(map_sizes))
    except ETFError:
        raise
    except Exception as exc:  # defensive: whatever erlang-py built, only ETFError leaves this module
        raise ETFError(f"malformed term: {exc}") from None


def _from_erlang(term, map_sizes):
    # Depth is bounded by _scan, so recursion here is safe.
    if term is None or isinstance(term, bool):  # erlang-py maps true, false and undefined itself
        return term
    if isinstance(term, erlang.OtpErlangBinary):
        try:
            return term.value.decode("utf-8")
        except UnicodeDecodeError:
            return term.value
    if isinstance(term, erlang.OtpErlangAtom):
        value = term.value
        name = value.decode("latin-1") if isinstance(value, bytes) else str(value)  # ATOM_EXT is Latin-1
        return {"true": True, "false": False, "nil": None, "undefined": None}.get(name, name)
    if isinstance(term, bytes):  # STRING_EXT: a charlist of code points below 256
        return term.decode("latin-1")
    if isinstance(term, float):
        if not math.isfinite(term):
            raise ETFError("float is not finite")
        return term
    if isinstance(term, int):
        return term
    if isinstance(term, list):
        return [_from_erlang(v, map_sizes) for v in term]
    if isinstance(term, tuple):
        return tuple(_from_erlang(v, map_sizes) for v in term)
    if isinstance(term, dict):
        # erlang-py keeps the last of duplicate keys silently; OTP refuses such a map.
        if len(term) != next(map_sizes):
            raise ETFError("duplicate map keys")
        out = {}
        for key, value in term.items():
            if isinstance(key, (erlang.OtpErlangList, tuple, dict)):  # erlang-py's wrappers for list/map keys
                raise ETFError("map keys must be binaries, atoms or numbers")
            out[_from_erlang(key, map_sizes)] = _from_erlang(value, map_sizes)
        if len(out) != len(term):  # e.g. a binary and a charlist spelling the same key
            raise ETFError("duplicate map keys")
        return out
    raise ETFError(f"unsupported term {type(term).__name__}")
