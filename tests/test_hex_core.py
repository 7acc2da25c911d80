"""The real client library against a live Hexvault: hex_core (as bundled in Debian's rebar3)
creates, publishes, retires, reverts, fetches and verifies, and unpacks what Hexvault serves.

hex_core is what rebar3 fetches with and what mix's Hex client vendors for its API calls, so
these are the publish-side checks a test can run without mix (see tests/hexcore.py)."""

import hashlib

import pytest

from appliance.protocol import tarball
from tests.driver import erlang_package
from tests.hexcore import HexCore


@pytest.fixture(scope="session")
def hex_core(tmp_path_factory):
    return HexCore(tmp_path_factory.mktemp("hex_core"))


def package_metadata(name, version, requirements=None):
    return {"name": name, "version": version, "app": name, "description": f"{name} from hex_core",
            "licenses": ["Apache-2.0"], "build_tools": ["rebar3"], "files": [f"src/{name}.app.src", f"src/{name}.erl"],
            "requirements": requirements or {}, "links": {"Source": "https://git.corp/" + name}}


def package_files(name, version):
    return {f"src/{name}.app.src": f'{{application, {name}, [{{vsn, "{version}"}}, {{applications, [kernel, stdlib]}}]}}.\n'.encode(),
            f"src/{name}.erl": f"-module({name}).\n-export([v/0]).\nv() -> <<\"{version}\">>.\n".encode()}


def api_config(hv, key=None):
    return {"api_url": f"{hv.url}/api", "api_key": key or hv.api_key, "api_repository": "acme"}


def repo_config(hv, key=None):
    return {"repo_url": f"{hv.url}/repos/acme", "repo_name": "acme", "repo_key": key or hv.repo_key,
            "repo_public_key": hv.public_key_pem, "repo_verify": True, "repo_verify_origin": True}


def test_hex_core_publishes_then_fetches_verifies_and_unpacks(hv, hex_core, tmp_path):
    made = hex_core.create(package_metadata("corelib", "1.2.0"), package_files("corelib", "1.2.0"),
                           tmp_path / "corelib.tar")
    assert made[0] == "ok"
    data = (tmp_path / "corelib.tar").read_bytes()
    assert made[1]["outer_checksum"] == hashlib.sha256(data).digest()

    status, _headers, body = _ok(hex_core.api("publish", api_config(hv), path=str(tmp_path / "corelib.tar")))
    assert status == 201, body
    assert body["version"] == "1.2.0" and body["checksum"] == made[1]["outer_checksum"].hex()  # hex-protocol.md: API checksum is the outer one

    status, _headers, names = _ok(hex_core.repo("names", repo_config(hv)))
    assert status == 200 and [p["name"] for p in names] == ["corelib"]
    status, _headers, versions = _ok(hex_core.repo("versions", repo_config(hv)))
    assert status == 200 and versions == [{"name": "corelib", "versions": ["1.2.0"], "retired": []}]
    status, _headers, releases = _ok(hex_core.repo("package", repo_config(hv), name="corelib"))
    assert status == 200 and len(releases) == 1
    assert releases[0]["version"] == "1.2.0"
    assert releases[0]["inner_checksum"] == made[1]["inner_checksum"]
    assert releases[0]["outer_checksum"] == made[1]["outer_checksum"]

    fetched = tmp_path / "fetched.tar"
    assert hex_core.repo("tarball", repo_config(hv), name="corelib", version="1.2.0", out=str(fetched)) == ("ok", 200)
    assert fetched.read_bytes() == data
    unpacked = _ok(hex_core.unpack(fetched))
    assert unpacked["metadata"]["name"] == "corelib" and sorted(unpacked["files"]) == sorted(package_files("corelib", "1.2.0"))


def test_hex_core_retire_unretire_info_and_revert(hv, hex_core, tmp_path):
    hex_core.create(package_metadata("oldlib", "0.1.0"), package_files("oldlib", "0.1.0"), tmp_path / "o.tar")
    assert _ok(hex_core.api("publish", api_config(hv), path=str(tmp_path / "o.tar")))[0] == 201

    status, _h, release = _ok(hex_core.api("release", api_config(hv), name="oldlib", version="0.1.0"))
    assert status == 200 and release["version"] == "0.1.0" and release["retirement"] is None
    status, _h, package = _ok(hex_core.api("package", api_config(hv), name="oldlib"))
    assert status == 200 and [r["version"] for r in package["releases"]] == ["0.1.0"]

    retired = _ok(hex_core.api("retire", api_config(hv), name="oldlib", version="0.1.0",
                               params={"reason": "security", "message": "CVE-2026-1"}))
    assert retired[0] == 204
    status, _h, releases = _ok(hex_core.repo("package", repo_config(hv), name="oldlib"))
    assert releases[0]["retired"] == {"reason": "RETIRED_SECURITY", "message": "CVE-2026-1"}
    assert _ok(hex_core.api("unretire", api_config(hv), name="oldlib", version="0.1.0"))[0] == 204
    status, _h, releases = _ok(hex_core.repo("package", repo_config(hv), name="oldlib"))
    assert "retired" not in releases[0]

    assert _ok(hex_core.api("delete", api_config(hv), name="oldlib", version="0.1.0"))[0] == 204
    status, _h, names = _ok(hex_core.repo("names", repo_config(hv)))
    assert names == []
    assert _ok(hex_core.api("release", api_config(hv), name="oldlib", version="0.1.0"))[0] == 404


def test_hex_core_sees_hexs_errors(hv, hex_core, tmp_path):
    hex_core.create(package_metadata("errlib", "1.0.0"), package_files("errlib", "1.0.0"), tmp_path / "e.tar")
    status, _h, body = _ok(hex_core.api("publish", api_config(hv, key="0" * 32), path=str(tmp_path / "e.tar")))
    assert status == 401 and body["message"]

    (tmp_path / "bad.tar").write_bytes((tmp_path / "e.tar").read_bytes()[:3000])
    status, _h, body = _ok(hex_core.api("publish", api_config(hv), path=str(tmp_path / "bad.tar")))
    assert status == 422 and "truncated" in str(body["errors"]), body

    assert _ok(hex_core.api("publish", api_config(hv), path=str(tmp_path / "e.tar")))[0] == 201
    status, _h, body = _ok(hex_core.api("publish", api_config(hv), path=str(tmp_path / "e.tar")))
    assert status == 422 and "--replace" in str(body["errors"])
    # hex.pm lets the publisher replace a fresh release; hex_core sends ?replace=true
    assert _ok(hex_core.api("publish", api_config(hv), path=str(tmp_path / "e.tar"), replace=True))[0] == 200

    # The repository side: a key of no use and a wrong public key are refused by the client.
    assert _ok(hex_core.repo("names", repo_config(hv, key="0" * 32)))[0] == 401
    wrong = dict(repo_config(hv), repo_public_key=_another_public_key())
    assert hex_core.repo("names", wrong) == ("error", "unverified")  # hex_core: signature does not verify
    misnamed = dict(repo_config(hv), repo_name="other")
    # This hex_core says `unverified` for a registry naming another repository too (newer ones
    # say bad_repo_name); with origin checks off the same file is accepted, so origin it was.
    assert hex_core.repo("names", misnamed) == ("error", "unverified")
    assert _ok(hex_core.repo("names", dict(misnamed, repo_verify_origin=False)))[0] == 200


def test_hex_core_whoami_and_organization_key_that_then_reads_the_repository(hv, hex_core):
    status, _h, me = _ok(hex_core.api("me", api_config(hv)))
    assert status == 200 and me["username"] == "admin"
    org_api = {"api_url": f"{hv.url}/api", "api_key": hv.api_key, "api_organization": "acme"}
    status, _h, created = _ok(hex_core.api("key_add", org_api, name="ci-from-hex-core",
                                           permissions=[{"domain": "repository", "resource": "acme"}]))
    assert status == 201 and len(created["secret"]) == 32
    assert _ok(hex_core.repo("names", repo_config(hv, key=created["secret"])))[0] == 200
    status, _h, listed = _ok(hex_core.api("key_list", org_api))
    assert status == 200 and "ci-from-hex-core" in [k["name"] for k in listed]


def test_tarballs_the_tests_build_are_ones_hex_core_accepts(hex_core, tmp_path):
    """The suite's own fixtures (tarball.create_package) must be real Hex tarballs."""
    path = tmp_path / "fixture.tar"
    data = erlang_package("fixture", "2.0.0")
    path.write_bytes(data)
    unpacked = _ok(hex_core.unpack(path))
    ours = tarball.read_package(data)
    assert unpacked["inner_checksum"] == ours.inner_checksum
    assert unpacked["outer_checksum"] == hashlib.sha256(data).digest()
    assert unpacked["metadata"]["name"] == "fixture" and unpacked["metadata"]["version"] == "2.0.0"


def _ok(result):
    assert result[0] == "ok", result
    return result[1]


def _another_public_key():
    from appliance.protocol import signing

    return signing.public_key_pem(signing.generate_private_key()).decode()
