"""Every validator of a name, version, path or token matches the whole text: a trailing newline
(which Python's ``$`` lets through), a NUL, or a non-ASCII look-alike never passes, and never
finds an existing thing by another spelling."""

import pytest

from appliance import accounts, audit, keys, mirror, orgs, packages
from appliance.errors import Invalid, NotFound, Unauthenticated
from appliance.protocol.names import MAX_NAME_LENGTH, is_package_name
from storage import InvalidKey
from storage.local import check_key
from tests.driver import erlang_package

CYRILLIC_A = "\u0430"  # looks like "a"
KELVIN = "\u212a"  # lower-cases to ASCII "k"


def spoilt(good):
    """The ways to spell ``good`` almost: newline, NUL, a look-alike letter."""
    return [good + "\n", good + "\x00", good.replace("a", CYRILLIC_A, 1), KELVIN + good[1:]]


@pytest.mark.parametrize("name", spoilt("kafka"))
def test_package_name(name):
    assert is_package_name("kafka")
    assert not is_package_name(name)
    with pytest.raises(Invalid):
        packages.check_package_name(name)


def test_package_name_bounds():
    assert is_package_name("ab") and is_package_name("a" * MAX_NAME_LENGTH)
    assert not is_package_name("a") and not is_package_name("a" * (MAX_NAME_LENGTH + 1))


@pytest.mark.parametrize("version", ["1.0.0\n", "1.0.0\x00", "1.0.\u0664", "\uff11.0.0"])
def test_version(version):
    packages.check_version("1.0.0")
    with pytest.raises(Invalid):
        packages.check_version(version)


@pytest.mark.parametrize("name", spoilt("kafka"))
def test_organization_names(runtime, name):
    orgs.create("kafka")
    with pytest.raises(Invalid):
        orgs.create(name)
    with pytest.raises(NotFound):
        orgs.get(name)
    assert orgs.get("kafka").name == "kafka"


@pytest.mark.parametrize("name", spoilt("kafka"))
def test_usernames(runtime, name):
    accounts.create_user("kafka", "a-long-password", rounds=4)
    with pytest.raises(Invalid):
        accounts.create_user(name, "a-long-password", rounds=4)
    with pytest.raises(NotFound):
        accounts.get_user(name)


@pytest.mark.parametrize("name", spoilt("kafka"))
def test_key_names(runtime, name):
    org = orgs.create("acme")
    keys.create(runtime.app_secret, "kafka", [["repository", "acme"]], organization=org)
    with pytest.raises(Invalid):
        keys.create(runtime.app_secret, name, [["repository", "acme"]], organization=org)


def test_access_tokens(runtime):
    org = orgs.create("acme")
    key, _secret = keys.create(runtime.app_secret, "ci", [["repository", "acme"]], organization=org)
    token = keys.issue_token(runtime.app_secret, key)
    assert keys.authenticate_token(runtime.app_secret, token)[0].id == key.id
    for bad in (token + "\n", token + "\x00", token.replace("hvt_", "hvt\uff3f")):
        with pytest.raises(Unauthenticated):
            keys.authenticate_token(runtime.app_secret, bad)


@pytest.mark.parametrize("segment", ["names\n", "names\x00", "n" + CYRILLIC_A + "mes", "a" * 256])
def test_blob_keys(segment):
    assert check_key("registry/acme/names")
    with pytest.raises(InvalidKey):
        check_key(f"registry/acme/{segment}")


@pytest.mark.parametrize("path", ["names\n", "packages/kafka\n", "tarballs/kafka-1.0.0.tar\n",
                                  "packages/k" + CYRILLIC_A + "fka", "packages/" + "k" * 101])
def test_mirror_file_names(runtime, path):
    with pytest.raises(NotFound):
        mirror.blob(runtime, path)


def test_repository_paths_over_http(hv):
    packages.publish(hv.runtime, orgs.get("acme"), erlang_package("kafka", "1.0.0"), actor=audit.CLI)
    assert hv.repo("packages/kafka").status_code == 200
    assert hv.repo("tarballs/kafka-1.0.0.tar").status_code == 200
    for path in ("packages/kafka%0A", "packages/kafka%00", "names%0A", "tarballs/kafka-1.0.0.tar%0A",
                 "packages/k%D0%B0fka"):
        assert hv.repo(path).status_code == 404, path
