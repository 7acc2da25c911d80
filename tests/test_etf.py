"""Erlang term format bodies: what OTP sends, what Hex clients decode, hostile input."""

import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.protocol.etf import ETFError, decode, encode


def binary(text):
    data = text.encode()
    return b"m" + struct.pack(">I", len(data)) + data


def test_decodes_a_key_request_as_otp_25_writes_it():
    # #{<<"name">> => <<"k">>, <<"permissions">> => [#{<<"domain">> => <<"repository">>,
    #   <<"resource">> => <<"acme">>}], <<"flag">> => true}, with `true` as OTP 25's ATOM_EXT
    inner = b"t" + struct.pack(">I", 2) + binary("domain") + binary("repository") + binary("resource") + binary("acme")
    term = (b"\x83t" + struct.pack(">I", 3) + binary("name") + binary("k") + binary("permissions") +
            b"l" + struct.pack(">I", 1) + inner + b"j" + binary("flag") + b"d\x00\x04true")
    assert decode(term) == {"name": "k", "permissions": [{"domain": "repository", "resource": "acme"}], "flag": True}


@pytest.mark.parametrize("atom, value", [(b"w\x04true", True), (b"v\x00\x05false", False), (b"s\x03nil", None),
                                         (b"d\x00\x09undefined", None)])
def test_atom_spellings(atom, value):
    assert decode(b"\x83" + atom) is value


def test_encodes_strings_as_binaries_and_none_as_nil():
    data = encode({"retirement": None, "name": "x", "ok": True, "n": [1, 2 ** 40]})
    assert binary("retirement")[1:] in data and b"nil" in data and b"true" in data
    assert b"k\x00" not in data  # never a charlist
    assert decode(data) == {"retirement": None, "name": "x", "ok": True, "n": [1, 2 ** 40]}


@pytest.mark.parametrize("data", [b"", b"\x82", b"\x83P\x00\x00\x00\x10x\x9c", b"\x83l\xff\xff\xff\xff",
                                  b"\x83m\x00\x00\x10\x00ab", b"\x83" + b"l\x00\x00\x00\x01" * 5000])
def test_hostile_input_is_a_clean_error(data):
    with pytest.raises(ETFError):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decode_raises_only_etf_errors(data):
    try:
        decode(b"\x83" + data)
    except ETFError:
        pass


@pytest.mark.skipif(shutil.which("erl") is None, reason="erlang is not installed")
def test_round_trip_through_real_erlang():
    value = {"name": "grün", "list": [1, "two", True, None], "nested": {"a": 1.5}}
    hexed = encode(value).hex()
    expr = (f'B = binary:decode_hex(<<"{hexed}">>), T = binary_to_term(B, [safe]), '
            'io:format("~s", [binary:encode_hex(term_to_binary(T))]), halt().')
    out = subprocess.run(["erl", "-noshell", "-eval", expr], capture_output=True, text=True, timeout=60).stdout
    assert decode(bytes.fromhex(out)) == value
