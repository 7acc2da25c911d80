"""Erlang term format bodies: the bytes OTP sends, the bytes Hex clients decode, hostile input.

Terms are assembled byte by byte from the external term format specification (erts
doc/specs/external_term_format), so these tests do not lean on erlang-py to check erlang-py."""

import datetime
import shutil
import struct
import subprocess
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.protocol.etf import ETFError, decode, encode

V = b"\x83"  # version byte
NIL = b"j"  # NIL_EXT 106


def binary(text):
    data = text.encode() if isinstance(text, str) else text
    return b"m" + struct.pack(">I", len(data)) + data  # BINARY_EXT 109


def atom_ext(name):
    return b"d" + struct.pack(">H", len(name)) + name  # ATOM_EXT 100, as OTP 25 writes atoms


def small_atom_utf8(name):
    return b"w" + bytes([len(name)]) + name  # SMALL_ATOM_UTF8_EXT 119, OTP >= 26


def map_ext(*pairs):
    return b"t" + struct.pack(">I", len(pairs)) + b"".join(k + v for k, v in pairs)  # MAP_EXT 116


def list_ext(*items):
    return b"l" + struct.pack(">I", len(items)) + b"".join(items) + NIL  # LIST_EXT 108


def test_decodes_a_key_request_as_otp_25_writes_it():
    # #{<<"name">> => <<"k">>, <<"permissions">> => [#{<<"domain">> => <<"repository">>,
    #   <<"resource">> => <<"acme">>}]}, as mix sends for `mix hex.organization key acme generate`
    term = V + map_ext(
        (binary("name"), binary("k")),
        (binary("permissions"), list_ext(map_ext((binary("domain"), binary("repository")),
                                                 (binary("resource"), binary("acme"))))))
    assert term[:10] == b"\x83t\x00\x00\x00\x02m\x00\x00\x00"
    assert decode(term) == {"name": "k", "permissions": [{"domain": "repository", "resource": "acme"}]}


@pytest.mark.parametrize("atom, value", [
    (atom_ext(b"true"), True),                        # ATOM_EXT: OTP 25 sends `true` as 100,0,4,"true"
    (b"d\x00\x04true", True),
    (small_atom_utf8(b"true"), True),                 # SMALL_ATOM_UTF8_EXT 119 (OTP >= 26)
    (b"v\x00\x05false", False),                       # ATOM_UTF8_EXT 118
    (b"s\x03nil", None),                              # SMALL_ATOM_EXT 115 (legacy)
    (small_atom_utf8(b"nil"), None),
    (atom_ext(b"undefined"), None),
    (atom_ext(b"ok"), "ok"),
    (atom_ext(b"caf\xe9"), "café"),                   # ATOM_EXT is Latin-1
    (small_atom_utf8("café".encode()), "café"),
])
def test_atom_spellings(atom, value):
    assert decode(V + atom) == value and type(decode(V + atom)) is type(value)


@pytest.mark.parametrize("term, value", [
    (b"k\x00\x03abc", "abc"),                                      # STRING_EXT: a charlist
    (binary(""), ""), (NIL, []), (b"l\x00\x00\x00\x00j", []),
    (binary(b"\xff\xfe"), b"\xff\xfe"),                            # not UTF-8: kept as bytes
    (binary("grün"), "grün"),
    (b"h\x02a\x01m\x00\x00\x00\x01x", (1, "x")),                   # SMALL_TUPLE_EXT
    (b"i\x00\x00\x00\x01a\x07", (7,)),                             # LARGE_TUPLE_EXT
    (b"a\xff", 255), (b"b\xff\xff\xff\xff", -1), (b"b\x7f\xff\xff\xff", 2 ** 31 - 1),
    (b"n\x05\x00" + (2 ** 32).to_bytes(5, "little"), 2 ** 32),     # SMALL_BIG_EXT, little-endian digits
    (b"n\x09\x01" + (2 ** 64).to_bytes(9, "little"), -(2 ** 64)),
    (b"o\x00\x00\x00\x01\x00\x05", 5),                             # LARGE_BIG_EXT
    (b"F" + struct.pack(">d", 1.5), 1.5),                          # NEW_FLOAT_EXT
    (b"c" + b"1.50000000000000000000e+00".ljust(31, b"\x00"), 1.5),  # old FLOAT_EXT
    (map_ext(), {}),
    (map_ext((atom_ext(b"a"), binary("x")), (b"a\x01", NIL)), {"a": "x", 1: []}),
])
def test_term_types(term, value):
    assert decode(V + term) == value


def test_encodes_strings_as_binaries_and_none_as_nil():
    assert encode({"a": True}) == V + map_ext((binary("a"), small_atom_utf8(b"true")))
    assert encode(None) == V + small_atom_utf8(b"nil")
    assert encode(False) == V + small_atom_utf8(b"false")
    assert encode(b"\x00\xff") == V + binary(b"\x00\xff")  # bytes stay a binary, never a charlist
    assert encode("") == V + binary("")
    assert encode([]) == V + NIL
    assert encode(("a", 1)) == V + list_ext(binary("a"), b"a\x01")  # tuples become lists
    assert encode(-1) == V + b"b\xff\xff\xff\xff"
    assert encode(2 ** 40) == V + b"n\x06\x00" + (2 ** 40).to_bytes(6, "little")
    assert encode(1.5) == V + b"F" + struct.pack(">d", 1.5)
    value = {"retirement": None, "name": "x", "ok": True, "n": [1, 2 ** 40, -7], "nested": {"k": ["v"]}}
    assert decode(encode(value)) == value


def test_datetimes_are_iso8601_utc_seconds():
    naive = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901)
    aware = datetime.datetime(2026, 1, 2, 4, 4, 5, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert encode(naive) == encode(aware) == V + binary("2026-01-02T03:04:05Z")


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), float("inf"), {"a": 1, b"a": 2},
                                   datetime.date(2026, 1, 1)])
def test_unencodable_values(value):
    with pytest.raises(ETFError):
        encode(value)


def test_encoding_refuses_cycles_and_absurd_depth():
    loop = []
    loop.append(loop)
    with pytest.raises(ETFError, match="deep"):
        encode(loop)


def _nested_lists(depth):
    return b"l\x00\x00\x00\x01" * depth + NIL + NIL * depth


compressed = V + b"P" + struct.pack(">I", 2) + zlib.compress(NIL + NIL)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"), (b"\x82j", "version"), (V, "truncated"), (b"\x83j\x00", "trailing"),
    (compressed, "compressed"),
    (V + b"p" + struct.pack(">I", 5) + b"\x00" * 8, "functions"),            # NEW_FUN_EXT
    (V + b"q" + atom_ext(b"m") + atom_ext(b"f") + b"a\x01", "functions"),      # EXPORT_EXT fun m:f/1
    (V + b"X" + atom_ext(b"n@h") + b"\x00" * 12, "pids"),                     # NEW_PID_EXT
    (V + b"Y" + atom_ext(b"n@h") + b"\x00" * 8, "ports"),                      # NEW_PORT_EXT
    (V + b"Z\x00\x01" + atom_ext(b"n@h") + b"\x00" * 8, "references"),         # NEWER_REFERENCE_EXT
    (V + b"M\x00\x00\x00\x01\x03\xff", "bitstrings"),
    (V + b"N\x00", "atom cache"), (V + b"y", "LOCAL_EXT"), (V + b"\xc8", "unknown term tag"),
    (V + b"l\xff\xff\xff\xff", "claims more"),                                # 2^32-1 elements, no bytes
    (V + b"t\xff\xff\xff\xff" + binary("a"), "claims more"),
    (V + b"h\xff" + NIL * 10, "claims more"),
    (V + b"m\x00\x00\x10\x00ab", "truncated"), (V + b"k\xff\xffab", "truncated"),
    (V + b"l\x00\x00\x00\x01a\x01a\x02", "improper"),                          # [1 | 2]
    (V + b"o\xff\xff\xff\xff\x00", "integer too large"),
    (V + b"n\xff\x00" + b"\x01" * 255, "integer too large"),
    (V + _nested_lists(101), "nested deeper"),
    (V + _nested_lists(150_000), "nested deeper"),                            # no RecursionError
    (V + map_ext((binary("a"), NIL), (binary("a"), NIL)), "duplicate"),        # OTP refuses these
    (V + map_ext((atom_ext(b"a"), NIL), (small_atom_utf8(b"a"), NIL)), "duplicate"),
    (V + map_ext((binary("a"), NIL), (b"k\x00\x01a", NIL)), "duplicate"),      # binary and charlist "a"
    (V + map_ext((b"a\x01", NIL), (b"F" + struct.pack(">d", 1.0), NIL)), "duplicate"),
    (V + map_ext((list_ext(b"a\x01"), NIL)), "map keys"),
    (V + b"v\x00\x02\xff\xfe", "malformed"),                                  # atom that is not UTF-8
    (V + b"F" + struct.pack(">d", float("nan")), "finite"),
    (V + b"c" + b"nan".ljust(31, b"\x00"), "finite"),
    (V + b"c" + b"banana".ljust(31, b"\x00"), "malformed"),
])
def test_hostile_input_is_a_clean_error(data, message):
    with pytest.raises(ETFError, match=message):
        decode(data)


def test_depth_limit_is_exactly_one_hundred():
    assert decode(V + _nested_lists(100)) is not None
    with pytest.raises(ETFError):
        decode(V + _nested_lists(101))
    assert decode(V + _nested_lists(101), max_depth=101) is not None
    with pytest.raises(ETFError, match="nested deeper"):  # the walk is iterative: no RecursionError
        decode(V + _nested_lists(1_000_000), max_size=8 * 1024 * 1024)


def test_size_and_term_limits():
    body = V + list_ext(*[b"a\x01"] * 1000)
    assert len(decode(body)) == 1000
    with pytest.raises(ETFError, match="larger than"):
        decode(body, max_size=len(body) - 1)
    with pytest.raises(ETFError, match="terms"):
        decode(body, max_terms=500)
    with pytest.raises(ETFError, match="larger than"):
        decode(V + b"m" + struct.pack(">I", 2 * 1024 * 1024) + b"x" * (2 * 1024 * 1024))
    with pytest.raises(ETFError, match="expected bytes"):
        decode("\x83j")
    assert decode(bytearray(V + NIL)) == [] and decode(memoryview(V + NIL)) == []


@pytest.mark.parametrize("data,reason", [
    (V + b"o" + struct.pack(">I", 900_000) + b"\x00" + b"\x01" * 900_000, "integer too large"),  # bignum DoS
    (V + b"l" + struct.pack(">I", 2 ** 32 - 1) + b"a\x01" * 400_000, "length claims more elements than there are bytes"),
    (V + _nested_lists(170_000), "nested deeper than"),
])
def test_hostile_input_is_refused_by_its_limit_before_the_work(data, reason):
    """Each is refused by the check for its kind, which runs before the costly part: a bignum's
    size before converting it, a list's claimed length against the bytes present, the depth as
    each level is entered. (No timing: the reason shows which check stopped it.)"""
    with pytest.raises(ETFError, match=reason):
        decode(data)


# -- fuzzing --------------------------------------------------------------------------------------------

SAMPLE = encode({"name": "k", "permissions": [{"domain": "repository", "resource": "acme"}],
                 "flag": True, "n": None, "big": 2 ** 70, "f": 2.5, "t": [1, -300, b"\xff"]})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decode_raises_only_etf_errors(data):
    for body in (data, V + data):
        try:
            decode(body)
        except ETFError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(SAMPLE)))
def test_fuzz_mutated_valid_terms_raise_only_etf_errors(edits, cut):
    data = bytearray(SAMPLE)
    for index, byte in edits:
        data[index] = byte
    for body in (bytes(data), bytes(data[:cut])):
        try:
            decode(body)
        except ETFError:
            pass


_json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 100), 2 ** 100) | st.text(max_size=10)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json_like)
def test_round_trip_of_json_like_values(value):
    assert decode(encode(value)) == value


# -- against a real Erlang VM ----------------------------------------------------------------------------

def _erl(expr):
    result = subprocess.run(["erl", "-noshell", "-eval", expr + " halt()."], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


needs_erl = pytest.mark.skipif(shutil.which("erl") is None, reason="Erlang (erl) is not installed")


@needs_erl
def test_round_trip_through_real_erlang():
    value = {"name": "grün", "list": [1, "two", True, None, False], "nested": {"a": 1.5, "b": -(2 ** 70)},
             "empty": [], "bytes": b"\x00\xff"}
    # binary_to_term(B, [safe]) is what hex_core does: it refuses atoms that do not exist yet, so
    # this also proves we only write true, false and nil.
    out = _erl(f'B = binary:decode_hex(<<"{encode(value).hex()}">>), T = binary_to_term(B, [safe]), '
               f'#{{<<"name">> := <<"grün"/utf8>>, <<"list">> := [1, <<"two">>, true, nil, false]}} = T, '
               'io:format("~s", [binary:encode_hex(term_to_binary(T))]),')
    assert decode(bytes.fromhex(out)) == value


@needs_erl
@pytest.mark.parametrize("options", ["[]", "[{minor_version, 2}]"])  # OTP 25 default, and utf8 atoms (OTP 26)
def test_decodes_what_erlang_writes(options):
    out = _erl('T = #{<<"name">> => <<"k"/utf8>>, <<"flag">> => true, <<"none">> => nil, <<"u">> => undefined, '
               '<<"big">> => 1 bsl 70, <<"neg">> => -5, <<"f">> => 2.5, <<"chars">> => "abc", '
               '<<"tuple">> => {ok, 1}, <<"perms">> => [#{<<"domain">> => <<"repository">>}]}, '
               f'io:format("~s", [binary:encode_hex(term_to_binary(T, {options}))]),')
    assert decode(bytes.fromhex(out)) == {
        "name": "k", "flag": True, "none": None, "u": None, "big": 2 ** 70, "neg": -5, "f": 2.5, "chars": "abc",
        "tuple": ("ok", 1), "perms": [{"domain": "repository"}]}
