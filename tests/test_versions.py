"""SemVer ordering and Elixir requirement matching, as Hex uses them."""

import pytest

from appliance.protocol.versions import (InvalidRequirement, InvalidVersion, check_release_version,
                                         check_requirement, parse_requirement, parse_version, sort_versions)

ORDER = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
         "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"]


def test_semver_precedence():
    assert sort_versions(reversed(ORDER)) == ORDER
    assert [str(parse_version(v)) for v in ORDER] == ORDER


@pytest.mark.parametrize("text", ["1.0", "1", "01.0.0", "1.0.0-01", "1.0.0-", "v1.0.0", "1.0.0 ", ""])
def test_invalid_versions(text):
    with pytest.raises(InvalidVersion):
        parse_version(text)


def test_release_rules_refuse_build_metadata_and_huge_numbers():
    assert parse_version("1.0.0+build.1").build == "build.1"
    with pytest.raises(InvalidVersion, match="build number not allowed"):
        check_release_version("1.0.0+build.1")
    with pytest.raises(InvalidVersion):
        check_release_version("100000000000000.0.0")
    with pytest.raises(InvalidVersion):
        check_release_version("1.0.0-" + "a" * 65)


@pytest.mark.parametrize("requirement, version, expected", [
    ("~> 1.2", "1.9.9", True), ("~> 1.2", "2.0.0", False), ("~> 1.2", "1.1.0", False),
    ("~> 1.2.3", "1.2.9", True), ("~> 1.2.3", "1.3.0", False),
    (">= 1.0.0 and < 2.0.0", "1.5.0", True), (">= 1.0.0 and < 2.0.0", "2.0.0", False),
    ("== 1.0.0 or == 2.0.0", "2.0.0", True), ("1.0.0", "1.0.0", True), ("1.0.0", "1.0.1", False),
    (">= 0.0.0", "1.0.0-rc.1", False),  # prereleases match only a requirement that names one
    (">= 1.0.0-rc.0", "1.0.0-rc.1", True), ("~> 2.0", "2.1.0-beta", False),
])
def test_requirement_matching(requirement, version, expected):
    assert parse_requirement(requirement).matches(parse_version(version)) is expected


@pytest.mark.parametrize("text", ["", "~>", "~> banana", ">= 1.0 and", "=> 1.0.0", "1.0.0 1.0.1"])
def test_invalid_requirements(text):
    with pytest.raises(InvalidRequirement):
        parse_requirement(text)


def test_not_equal_is_refused_for_published_requirements():
    assert parse_requirement("!= 1.0.0").matches(parse_version("1.0.1"))
    with pytest.raises(InvalidRequirement, match="!="):
        check_requirement("!= 1.0.0")
