"""The hand-written metadata.config reader: every spelling clients write, nothing executable."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import InvalidMetadata
from appliance.protocol.metadata import format_metadata, parse_terms, read_metadata

MIX = (b'{<<"name">>,<<"foo">>}.\n{<<"version">>,<<"0.1.0">>}.\n{<<"app">>,<<"foo">>}.\n'
       b'{<<"requirements">>,[[{<<"app">>,<<"bar">>},{<<"name">>,<<"bar">>},{<<"optional">>,false},'
       b'{<<"repository">>,<<"hexpm">>},{<<"requirement">>,<<"~> 0.1">>}]]}.\n'
       b'{<<"links">>,[{<<"GitHub">>,<<"https://example.com">>}]}.\n{<<"build_tools">>,[<<"mix">>]}.\n')
REBAR3 = (b'{<<"name">>,<<"baz">>}.\n{<<"requirements">>,[{<<"cowboy">>,[{<<"app">>,<<"cowboy">>},'
          b'{<<"optional">>,false},{<<"requirement">>,<<"2.9.0">>}]}]}.\n')


def test_mix_requirements_shape():
    meta = read_metadata(MIX)
    assert meta["requirements"] == [{"name": "bar", "app": "bar", "requirement": "~> 0.1", "optional": False,
                                     "repository": "hexpm"}]
    assert meta["links"] == {"GitHub": "https://example.com"}
    assert meta["build_tools"] == ["mix"]


def test_rebar3_requirements_shape_has_no_repository():
    assert read_metadata(REBAR3)["requirements"] == [
        {"name": "cowboy", "app": "cowboy", "requirement": "2.9.0", "optional": False, "repository": None}]


@pytest.mark.parametrize("spelling", [b'<<"gr\xc3\xbcn"/utf8>>', b"<<103,114,195,188,110>>",
                                      b'<<"gr\\x{FC}n"/utf8>>', b'"gr\xc3\xbcn"'])
def test_binary_spellings(spelling):
    assert read_metadata(b'{<<"description">>,' + spelling + b"}.\n")["description"] == "grün"


def test_latin1_file_falls_back():
    assert read_metadata(b'{<<"description">>,<<"gr\xfcn">>}.\n')["description"] == "grün"


def test_atoms_numbers_nested_extra_and_comments():
    data = (b'% a comment\n{<<"extra">>,[{<<"k">>,[{<<"deep">>,true}]},{<<"n">>,-12}]}.\n'
            b'{<<"files">>,[<<"lib">>,\n    <<"mix.exs">>]}.\n{<<"x">>,{some_atom,1.5}}.\n')
    meta = read_metadata(data)
    assert meta["extra"] == {"k": {"deep": True}, "n": -12}
    assert meta["files"] == ["lib", "mix.exs"]
    assert meta["x"] == ("some_atom", 1.5)


@pytest.mark.parametrize("data", [
    b'{<<"name">>, os:cmd("touch /tmp/pwned")}.\n', b'{<<"f">>, fun() -> 1 end}.\n', b'{<<"name">>,<<"x',
    b'{<<"name">>,<<"x">>}', b'[1,2].\n', b'{<<"a">>,' + b"[" * 100 + b"]" * 100 + b"}.\n",
    b'{<<"name">>,<<256>>}.\n', b'{<<"n">>,<<"a"/latin>>}.\n',
    b"{<<\"requirements\">>,<<\"oops\">>}.\n", b'{<<"files">>,[1,2]}.\n', b"x" * (1024 * 1024 + 1),
])
def test_refused(data):
    with pytest.raises(InvalidMetadata):
        read_metadata(data)


def test_writer_round_trips():
    meta = {"name": "foo", "version": "1.0.0", "description": "grün ✓", "licenses": ["MIT"],
            "links": {"Docs": "https://x"}, "build_tools": ["rebar3"],
            "requirements": [{"name": "bar", "app": "bar", "requirement": "~> 1.0", "optional": True,
                              "repository": None}]}
    assert read_metadata(format_metadata(meta)) == meta


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    try:
        parse_terms(data)
        read_metadata(data)
    except InvalidMetadata:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(MIX) - 1), st.integers(0, 255))
def test_fuzz_mutations_of_a_valid_file(position, byte):
    try:
        read_metadata(MIX[:position] + bytes([byte]) + MIX[position + 1:])
    except InvalidMetadata:
        pass
