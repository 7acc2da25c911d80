"""Erlang external term format for `application/vnd.hex+erlang` bodies, on top of erlang-py.

erlang-py's own mapping is not Hex's (it writes Python bytes as charlists and None as
`undefined`), so values are converted on the way in and out: str <-> binary, None <-> nil,
bool <-> true/false. Decoding is hardened for hostile input: bounded size and depth, no
compressed terms (hexpm refuses <<131,80>>), nothing executable.
"""

import datetime

import erlang

MAX_SIZE = 1024 * 1024
MAX_DEPTH = 100
_ATOMS = {True: erlang.OtpErlangAtom(b"true"), False: erlang.OtpErlangAtom(b"false")}
_NIL = erlang.OtpErlangAtom(b"nil")
_REFUSED = (erlang.OtpErlangFunction, erlang.OtpErlangPid, erlang.OtpErlangPort, erlang.OtpErlangReference)


class ETFError(ValueError):
    pass


def _to_erlang(value, depth=0):
    if depth > MAX_DEPTH:
        raise ETFError("term too deep")
    if value is None:
        return _NIL
    if isinstance(value, bool):
        return _ATOMS[value]
    if isinstance(value, str):
        return erlang.OtpErlangBinary(value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray)):
        return erlang.OtpErlangBinary(bytes(value))
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime.datetime):
        return erlang.OtpErlangBinary(value.replace(microsecond=0).isoformat().encode() + b"Z")
    if isinstance(value, dict):
        return {_to_erlang(k, depth + 1): _to_erlang(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_erlang(v, depth + 1) for v in value]
    raise ETFError(f"cannot encode {type(value).__name__}")


def encode(value):
    return erlang.term_to_binary(_to_erlang(value))


def _from_erlang(term, depth=0):
    if depth > MAX_DEPTH:
        raise ETFError("term too deep")
    if term is None or isinstance(term, bool):  # erlang-py maps true/false/undefined itself
        return term
    if isinstance(term, erlang.OtpErlangBinary):
        data = term.value
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    if isinstance(term, erlang.OtpErlangAtom):
        name = term.value.decode("utf-8", "replace") if isinstance(term.value, bytes) else str(term.value)
        return {"true": True, "false": False, "nil": None, "undefined": None}.get(name, name)
    if isinstance(term, _REFUSED):
        raise ETFError("executable or process terms are not accepted")
    if isinstance(term, erlang.OtpErlangList):
        return [_from_erlang(v, depth + 1) for v in term.value]
    if isinstance(term, list):
        return [_from_erlang(v, depth + 1) for v in term]
    if isinstance(term, tuple):
        return tuple(_from_erlang(v, depth + 1) for v in term)
    if isinstance(term, dict):
        out = {}
        for k, v in term.items():
            key = _from_erlang(k, depth + 1)
            if isinstance(key, (list, dict)):
                key = repr(key)
            out[key] = _from_erlang(v, depth + 1)
        return out
    if isinstance(term, (str, int, float)):
        return term
    if isinstance(term, bytes):
        return term.decode("latin-1")
    raise ETFError(f"unsupported term {type(term).__name__}")


def _check_structure(data):
    """Reject what erlang-py would otherwise allocate for or recurse into without bounds."""
    if not data:
        raise ETFError("empty body")
    if len(data) > MAX_SIZE:
        raise ETFError("body too large")
    if data[0] != 131:
        raise ETFError("not an Erlang external term (version byte)")
    if len(data) > 1 and data[1] == 80:
        raise ETFError("compressed terms are not accepted")


def decode(data):
    _check_structure(bytes(data[:2]) if data else b"")
    if len(data) > MAX_SIZE:
        raise ETFError("body too large")
    try:
        term = erlang.binary_to_term(bytes(data))
    except ETFError:
        raise
    except RecursionError:
        raise ETFError("term too deep") from None
    except Exception as exc:
        raise ETFError(f"malformed term: {exc}") from None
    return _from_erlang(term)
