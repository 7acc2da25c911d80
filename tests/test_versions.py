"""SemVer 2.0 precedence, hex.pm's publish rules and Elixir requirement matching, checked against
the tables of Elixir's Version docs and tests (elixir-lang/elixir lib/elixir/lib/version.ex)."""

import functools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.protocol.versions import (InvalidRequirement, InvalidVersion, Version, check_release_version,
                                         check_requirement, parse_requirement, parse_version, sort_versions)

# SemVer 2.0 §11 example, plus numeric-vs-lexical checks on each component.
ORDER = ["0.0.1", "0.1.0", "0.9.0", "0.10.0", "1.0.0-0", "1.0.0-2", "1.0.0-10", "1.0.0-alpha", "1.0.0-alpha.1",
         "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1",
         "1.2.0", "1.10.0", "2.0.0-rc.1", "2.0.0", "10.0.0", "99999999999999.0.0"]


def test_semver_precedence():
    for _ in range(20):
        shuffled = random.sample(ORDER, len(ORDER))
        assert sort_versions(shuffled) == ORDER
    parsed = [parse_version(v) for v in ORDER]
    assert all(a < b for a, b in zip(parsed, parsed[1:]))
    assert all(b > a and a <= b and a != b for a, b in zip(parsed, parsed[1:]))


@pytest.mark.parametrize("text", ["1.0.0", "0.0.0", "1.0.0-rc.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92",
                                  "1.0.0-x-y-z.--", "1.0.0-alpha+001", "1.0.0+20130313144700",
                                  "1.0.0-beta+exp.sha.5114f85", "1.0.0+21AF26D3----117B344092BD",
                                  "1.0.0-6-g3318bd5"])
def test_round_trips_to_the_same_text(text):
    assert str(parse_version(text)) == text


def test_fields_and_prerelease_identifiers():
    version = parse_version("1.4.5-6.7.eight+build.09")
    assert (version.major, version.minor, version.patch) == (1, 4, 5)
    assert version.pre == (6, 7, "eight") and version.build == "build.09" and version.is_prerelease
    assert not parse_version("1.4.5+b").is_prerelease
    assert parse_version("1.0.0-6-g3318bd5").pre == ("6-g3318bd5",)


def test_build_metadata_is_ignored_by_ordering_and_equality():
    a, b, c = parse_version("1.0.0+a"), parse_version("1.0.0+b"), parse_version("1.0.0")
    assert a == b == c and hash(a) == hash(c) and not a < b and not b < a
    assert len({a, b, c}) == 1


def test_versions_are_immutable():
    version = parse_version("1.2.3")
    with pytest.raises(AttributeError):
        version.major = 2
    assert version == Version(1, 2, 3)
    assert (version == "1.2.3") is False


@pytest.mark.parametrize("text", [
    "", "1", "1.0", "1.0.0.0", "01.0.0", "1.01.0", "1.0.00", "1.0.0-01", "1.0.0-", "1.0.0+", "1.0.0-a..b",
    "1.0.0-a.", "1.0.0+a+b", "1.0.0-a_b", "1.0.0-α", "v1.0.0", " 1.0.0", "1.0.0 ", "1.0.0\n", "1..0",
    "١.0.0",  # Arabic-Indic digit: Python's \d would take it, Elixir does not
    "-1.0.0", "1.0.0-rc.1 ", "100000000000000.0.0", "1.0.0-100000000000000", None, 1,
])
def test_invalid_versions(text):
    with pytest.raises(InvalidVersion):
        parse_version(text)


def test_long_alphanumeric_prerelease_is_still_a_version():
    assert parse_version("1.0.0-100000000000000-alpha").pre == ("100000000000000-alpha",)


def test_release_rules_of_hex_pm():
    assert parse_version("1.0.0+build.1").build == "build.1"
    with pytest.raises(InvalidVersion, match="build number not allowed"):
        check_release_version("1.0.0+build.1")
    with pytest.raises(InvalidVersion, match="build number not allowed"):
        parse_version("1.0.0+b", allow_build=False)
    assert check_release_version("99999999999999.99999999999999.99999999999999-99999999999999")
    with pytest.raises(InvalidVersion, match="at most 99999999999999"):
        check_release_version("100000000000000.0.0")
    assert check_release_version("1.0.0-" + "a" * 64).pre == ("a" * 64,)
    assert check_release_version("1.0.0-" + "a." * 31 + "ab")  # 64 characters with the dots
    with pytest.raises(InvalidVersion, match="64 characters"):
        check_release_version("1.0.0-" + "a" * 65)
    for bad in ("1.0", "1.0.0-01", "1.0.0-a..b", "01.0.0"):
        with pytest.raises(InvalidVersion):
            check_release_version(bad)


# Requirement | version | allow_pre | matches; from Elixir's Version moduledoc table and tests.
ELIXIR_TABLE = [
    ("~> 2.0", "2.1.0", None, True), ("~> 2.0", "3.0.0", None, False),
    ("~> 2.0.0", "2.0.5", None, True), ("~> 2.0.0", "2.1.0", None, False),
    ("~> 2.1.2", "2.1.6-dev", True, True), ("~> 2.1.2", "2.1.6-dev", False, False),
    ("~> 2.1-dev", "2.2.0-dev", None, True), ("~> 2.1.2-dev", "2.1.6-dev", None, True),
    (">= 2.1.0", "2.2.0-dev", True, True), (">= 2.1.0", "2.2.0-dev", False, False),
    (">= 2.1.0-dev", "2.2.6-dev", None, True), ("< 2.2.0", "2.1.0-dev", None, True),
    ("~> 2.1.0", "2.2.0-dev", None, False), ("~> 2.1.0-dev", "2.2.0-dev", None, False),  # upper bound
    ("~> 2.1", "3.0.0-0", None, False), ("~> 1.0", "1.1.0-beta", False, False),
    ("~> 1.0.0-beta", "1.0.1-beta", False, True), (">= 1.0.0-beta", "1.1.0-beta", False, True),
    ("> 1.0.0", "1.0.1-rc", False, False), ("> 1.0.0-rc", "1.0.0", None, True),
    ("<= 2.0.0", "2.0.0-rc", False, True), ("== 1.0.0-rc.1", "1.0.0-rc.1", False, True),
    ("!= 1.0.0", "2.0.0-dev", False, True),
]


@pytest.mark.parametrize("requirement, version, allow_pre, expected", ELIXIR_TABLE)
def test_elixir_match_table(requirement, version, allow_pre, expected):
    parsed = parse_requirement(requirement)
    for flag in ((True, False) if allow_pre is None else (allow_pre,)):
        assert parsed.matches(parse_version(version), allow_pre=flag) is expected


@pytest.mark.parametrize("requirement, version, expected", [
    ("~> 1.2", "1.9.9", True), ("~> 1.2", "2.0.0", False), ("~> 1.2", "1.1.9", False), ("~> 1.2", "1.2.0", True),
    ("~> 1.2.3", "1.2.3", True), ("~> 1.2.3", "1.2.9", True), ("~> 1.2.3", "1.3.0", False),
    ("~> 1.2.3", "1.2.2", False), ("~> 0.1", "0.9.0", True), ("~> 0.1.0", "0.2.0", False),
    (">= 1.0.0 and < 2.0.0", "1.5.0", True), (">= 1.0.0 and < 2.0.0", "2.0.0", False),
    ("== 1.0.0 or == 2.0.0", "2.0.0", True), ("== 1.0.0 or == 2.0.0", "1.5.0", False),
    # "and" binds tighter than "or"
    ("== 1.0.0 or >= 2.0.0 and < 3.0.0", "1.0.0", True), ("== 1.0.0 or >= 2.0.0 and < 3.0.0", "2.5.0", True),
    ("== 1.0.0 or >= 2.0.0 and < 3.0.0", "3.0.0", False), ("> 1.0.0 and < 1.5.0 or == 9.9.9", "9.9.9", True),
    ("> 1.0.0 and < 1.5.0 or == 9.9.9", "1.6.0", False),
    ("1.0.0", "1.0.0", True), ("1.0.0", "1.0.1", False), ("1.0.0", "1.0.0+build", True),
    ("== 1.0.0+build", "1.0.0", True), ("> 1.0.0", "1.0.0", False), ("<= 1.0.0", "1.0.0", True),
    ("!= 1.0.0", "1.0.1", True), ("!= 1.0.0", "1.0.0", False), ("! 1.0.0", "1.0.0", False),
    (">=1.0.0", "1.0.0", True), ("  >= 1.0.0  ", "1.0.0", True), (">= 1.0.0  and  < 2.0.0", "1.1.0", True),
    (">= 0.0.0", "1.0.0-rc.1", False),  # Hex never picks a prerelease unless asked
    ("~> 2.0", "2.1.0-beta", False), (">= 1.0.0-rc.0", "1.0.0-rc.1", True),
    # the prerelease exception is per clause: the >= operand here is no prerelease
    (">= 1.0.0 and < 2.0.0-rc.1", "1.5.0-dev", False), (">= 1.0.0-a and < 2.0.0", "1.5.0-dev", True),
])
def test_requirement_matching_without_prereleases(requirement, version, expected):
    assert parse_requirement(requirement).matches(parse_version(version)) is expected
    assert parse_requirement(requirement).matches(version) is expected  # text is parsed too


@pytest.mark.parametrize("text", [
    "", " ", "~>", "~> banana", ">= 1.0", "== 1.0", "1.0", "~> 1", "~> 1.0.0.0", ">= 1.0.0 and", "and >= 1.0.0",
    "or 1.0.0", "=> 1.0.0", "1.0.0 1.0.1", ">= >= 1.0.0", "== == 1.0.0", ">= 1.0.0and < 2.0.0",
    ">= 1.0.0 && < 2.0.0", ">= 1.0.0, < 2.0.0", "~> 1.0 or", ">= 1.0.0 or or < 2.0.0", "\t>= 1.0.0",
    ">= 1.0.0\n", "~> 01.0", ">= 1.0.0-", "> v1.0.0", "1.0.0 or", "x" * 2000, ">= 1.0.0 " + "and >= 1.0.0 " * 100,
    None,
])
def test_invalid_requirements(text):
    with pytest.raises(InvalidRequirement):
        parse_requirement(text)


def test_requirement_keeps_its_source_text():
    assert str(parse_requirement("~> 1.0 or ~> 2.0")) == "~> 1.0 or ~> 2.0"


@pytest.mark.parametrize("text", ["!= 1.0.0", "! 1.0.0", ">= 1.0.0 and != 1.5.0", "~> 1.0 or !=2.0.0"])
def test_not_equal_is_refused_for_published_requirements(text):
    assert parse_requirement(text)  # valid Elixir, but hex.pm will not publish it
    with pytest.raises(InvalidRequirement, match="!= is not allowed in requirements"):
        check_requirement(text)


def test_published_requirement_rules():
    assert check_requirement("~> 1.0").matches(parse_version("1.3.0"))
    with pytest.raises(InvalidRequirement, match='use ">= 0.0.0" instead'):
        check_requirement(None)
    with pytest.raises(InvalidRequirement, match='invalid requirement: "~> banana"'):
        check_requirement("~> banana")


# -- properties ---------------------------------------------------------------------------------------

def _reference_compare(a, b):
    """SemVer 2.0 §11 written out step by step, independently of Version's sort key."""
    for x, y in zip(a[:3], b[:3]):
        if x != y:
            return -1 if x < y else 1
    pa, pb = a[3], b[3]
    if not pa or not pb:
        return (len(pb) > 0) - (len(pa) > 0)  # the one without a prerelease is greater
    for x, y in zip(pa, pb):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return (len(pa) > len(pb)) - (len(pa) < len(pb))


_identifier = st.one_of(st.integers(0, 30).map(str), st.text("abcXYZ-", min_size=1, max_size=3),
                        st.sampled_from(["alpha", "beta", "rc", "0a", "a0"]))
_versions = st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3),
                      st.lists(_identifier, max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(_versions, min_size=2, max_size=12))
def test_sorting_matches_the_semver_rules_written_out(parts):
    texts = [f"{a}.{b}.{c}" + ("-" + ".".join(pre) if pre else "") for a, b, c, pre in parts]
    expected = sorted(parts, key=functools.cmp_to_key(_reference_compare))
    assert [parse_version(t) for t in sort_versions(texts)] == \
        [parse_version(f"{a}.{b}.{c}" + ("-" + ".".join(pre) if pre else "")) for a, b, c, pre in expected]
    for text in texts:
        assert str(parse_version(text)) == text


@settings(max_examples=300, deadline=None)
@given(_versions, st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.booleans())
def test_tilde_is_the_range_elixir_documents(version, major, minor, patch, with_patch):
    a, b, c, pre = version
    candidate = parse_version(f"{a}.{b}.{c}" + ("-" + ".".join(pre) if pre else ""))
    if with_patch:
        tilde, explicit = f"~> {major}.{minor}.{patch}", f">= {major}.{minor}.{patch} and < {major}.{minor + 1}.0-0"
    else:
        tilde, explicit = f"~> {major}.{minor}", f">= {major}.{minor}.0 and < {major + 1}.0.0-0"
    for allow_pre in (True, False):
        assert parse_requirement(tilde).matches(candidate, allow_pre) == \
            parse_requirement(explicit).matches(candidate, allow_pre)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" <>=~!.-+0123456789andorxv\t\n", max_size=40))
def test_requirement_parser_only_raises_invalid_requirement(text):
    try:
        requirement = parse_requirement(text)
    except InvalidRequirement:
        return
    requirement.matches(parse_version("1.0.0"))
    requirement.matches(parse_version("1.0.0-rc.1"), allow_pre=True)
