"""The repository protocol over real HTTP: signed registry v2 files, tarballs, ETags, access."""

import gzip
import hashlib
import http.client

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from appliance import keys, orgs, registry_builder
from appliance.protocol import registry
from tests.driver import erlang_package


@pytest.fixture
def published(hv):
    data = erlang_package("hello", "0.1.0")
    assert hv.publish(data).status_code == 201
    assert hv.publish(erlang_package("hello", "0.2.0-rc.1")).status_code == 201
    assert hv.publish(erlang_package("hello", "0.10.0")).status_code == 201
    return data


def test_package_record_is_gzip_signed_protobuf_verifying_with_the_public_key(hv, published):
    response = hv.repo("packages/hello")
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    signed = registry.Signed()
    signed.ParseFromString(gzip.decompress(response.content))
    # Verify with cryptography directly: PKCS#1 v1.5 + SHA-512 over the payload bytes.
    hv.public_key.verify(signed.signature, signed.payload, padding.PKCS1v15(), hashes.SHA512())
    record = registry.decode_package(signed.payload, "acme", "hello")
    assert [r["version"] for r in record["releases"]] == ["0.1.0", "0.2.0-rc.1", "0.10.0"]
    first = record["releases"][0]
    assert first["outer_checksum"] == hashlib.sha256(published).digest()
    assert len(first["inner_checksum"]) == 32


def test_tarball_bytes_match_the_signed_outer_checksum(hv, published):
    response = hv.repo("tarballs/hello-0.1.0.tar")
    assert response.status_code == 200
    assert response.content == published
    assert "Content-Encoding" not in response.headers
    assert response.headers["ETag"] == f'"{hashlib.sha256(published).hexdigest()}"'
    assert response.headers["Cache-Control"].startswith("private")


def test_names_and_versions_list_everything_in_semver_order(hv, published):
    assert hv.publish(erlang_package("abc", "1.0.0")).status_code == 201
    names = hv.registry_names()
    assert [p["name"] for p in names["packages"]] == ["abc", "hello"]
    versions = {p["name"]: p for p in hv.registry_versions()["packages"]}
    assert versions["hello"]["versions"] == ["0.1.0", "0.2.0-rc.1", "0.10.0"]


@pytest.mark.parametrize("path", ["names", "versions", "packages/hello", "tarballs/hello-0.1.0.tar"])
def test_every_file_has_an_etag_and_answers_304(hv, published, path):
    first = hv.repo(path)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = hv.repo(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    # rebar3 3.19 sends an empty If-None-Match on a first download: that is "no ETag"
    assert hv.repo(path, headers={"If-None-Match": ""}).status_code == 200
    assert hv.repo(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_a_304_keeps_the_connection_open_for_the_next_request(hv, published):
    """Clients revalidate every cached registry file; each 304 must not cost a new connection."""
    etag = hv.repo("packages/hello").headers["ETag"]
    conn = http.client.HTTPConnection(hv.url.removeprefix("http://"), timeout=10)
    try:
        conn.request("GET", "/repos/acme/packages/hello", headers={"authorization": hv.repo_key, "if-none-match": etag})
        first = conn.getresponse()
        assert first.status == 304 and first.read() == b"" and first.getheader("Connection") is None
        sock = conn.sock
        assert sock is not None and not first.will_close
        conn.request("GET", "/repos/acme/names", headers={"authorization": hv.repo_key})
        second = conn.getresponse()
        assert second.status == 200 and len(second.read()) > 0 and conn.sock is sock
        conn.request("GET", "/repos/acme/names", headers={"authorization": hv.repo_key, "connection": "close"})
        third = conn.getresponse()
        assert third.status == 200 and third.will_close  # a client that asks to close still can
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["names", "versions", "packages/hello", "tarballs/hello-0.1.0.tar", "public_key"])
def test_each_repository_also_answers_under_the_mirror_for_hexpm_org_deps(hv, published, path):
    """mix fetches `organization: "acme"` deps from <hexpm URL>/repos/acme; with hexpm set to
    the mirror, that is /mirror/hexpm/repos/acme: the same files under the same rules."""
    canonical = hv.repo(path)
    alias = hv.http.get(f"{hv.url}/mirror/hexpm/repos/acme/{path}", headers={"authorization": hv.repo_key})
    assert canonical.status_code == alias.status_code == 200
    assert alias.content == canonical.content and alias.headers.get("ETag") == canonical.headers.get("ETag")
    if path != "public_key":
        assert hv.http.get(f"{hv.url}/mirror/hexpm/repos/acme/{path}").status_code == 401
        other = orgs.create("beta")
        _k, beta_key = keys.create(hv.runtime.app_secret, "b", [["repository", "beta"]], organization=other)
        refused = hv.http.get(f"{hv.url}/mirror/hexpm/repos/acme/{path}", headers={"authorization": beta_key})
        assert refused.status_code == 403 and refused.content != canonical.content


def test_etag_changes_when_the_registry_changes(hv, published):
    before = hv.repo("packages/hello").headers["ETag"]
    assert hv.api("POST", "repos/acme/packages/hello/releases/0.1.0/retire",
                  body={"reason": "security", "message": "CVE-1"}).status_code == 204
    assert hv.repo("packages/hello", headers={"If-None-Match": before}).status_code == 200


@pytest.mark.parametrize("path", ["names", "versions", "packages/hello", "tarballs/hello-0.1.0.tar"])
def test_no_key_and_bad_keys_get_401_and_no_bytes(hv, published, path):
    for key in (False, "0" * 32, "not-a-key"):
        response = hv.repo(path, key=key)
        assert response.status_code == 401
        assert b"hello" not in response.content
        assert response.headers["Content-Type"].startswith("text/plain")


def test_revoked_key_stops_working_at_once(hv, published):
    row, secret = keys.create(hv.runtime.app_secret, "temp", [["repository", "acme"]], organization=hv.org)
    assert hv.repo("packages/hello", key=secret).status_code == 200
    keys.revoke(row)
    response = hv.repo("packages/hello", key=secret)
    assert response.status_code == 401
    assert "revoked" in response.text


def test_other_orgs_key_and_api_only_key_get_403(hv, published):
    beta = orgs.create("beta")
    registry_builder.ensure_index(hv.runtime, beta)
    _row, beta_key = keys.create(hv.runtime.app_secret, "beta", [["repository", "beta"]], organization=beta)
    assert hv.repo("names", org="beta", key=beta_key).status_code == 200
    for path in ("names", "packages/hello", "tarballs/hello-0.1.0.tar"):
        response = hv.repo(path, key=beta_key)
        assert response.status_code == 403
        assert b"hello" not in response.content
    # an api key does not open the repository (hexpm check_access?)
    assert hv.repo("packages/hello", key=hv.api_key).status_code == 403
    # an unknown organization looks the same as a forbidden one
    assert hv.repo("names", org="nosuchorg", key=beta_key).status_code == 403


def test_user_key_with_repositories_reads_orgs_of_its_user_only(hv, published):
    _row, secret = keys.create(hv.runtime.app_secret, "all", [["repositories", None]], user=hv.admin)
    assert hv.repo("packages/hello", key=secret).status_code == 200


def test_basic_and_bearer_forms_are_accepted(hv, published):
    import base64

    basic = "Basic " + base64.b64encode(f"ci:{hv.repo_key}".encode()).decode()
    assert hv.repo("packages/hello", key=basic).status_code == 200
    assert hv.repo("packages/hello", key=f"Bearer {hv.repo_key}").status_code == 200


def test_public_key_is_served_as_pem(hv):
    response = hv.repo("public_key", key=False)
    assert response.status_code == 200
    assert response.text.startswith("-----BEGIN PUBLIC KEY-----")


def test_new_org_has_empty_signed_index(hv):
    beta = orgs.create("beta")
    _row, secret = keys.create(hv.runtime.app_secret, "b", [["repository", "beta"]], organization=beta)
    response = hv.repo("names", org="beta", key=secret)
    assert response.status_code == 200
    assert registry.decode_names(registry.decode_signed(response.content, hv.public_key), "beta")["packages"] == []


def test_unknown_package_and_tarball_are_404(hv, published):
    assert hv.repo("packages/nope").status_code == 404
    assert hv.repo("tarballs/hello-9.9.9.tar").status_code == 404
    assert hv.repo("tarballs/garbage").status_code == 404


def test_double_slash_paths_are_served_without_redirect(hv, published):
    response = hv.http.get(f"{hv.url}/repos/acme//packages/hello", headers={"authorization": hv.repo_key},
                           allow_redirects=False)
    assert response.status_code == 200


def test_key_revoked_by_another_process_is_refused_on_the_next_request(hv, published):
    """The server caches authentication data; a write by the CLI (another process) must still
    take effect at once."""
    import os
    import subprocess
    import sys

    assert hv.repo("packages/hello").status_code == 200  # warm the cache
    env = dict(os.environ, HEXVAULT_DATA_DIR=hv.runtime.config.data_dir, HEXVAULT_CONFIG="")
    result = subprocess.run([sys.executable, "-m", "appliance", "key", "revoke", "acme-read", "--org", "acme"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    response = hv.repo("packages/hello")
    assert response.status_code == 401 and "revoked" in response.text


def test_access_log_has_one_line_per_request_and_no_credentials(hv, published, caplog):
    import logging

    from appliance import create_app

    app = create_app(hv.runtime.config.with_updates(access_log=True), hv.runtime)
    with caplog.at_level(logging.INFO, logger="hexvault.access"):
        response = app.test_client().get("/repos/acme/packages/hello", headers={"authorization": hv.repo_key})
    assert response.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "hexvault.access"]
    assert len(lines) == 1 and "GET /repos/acme/packages/hello 200" in lines[0]
    assert hv.repo_key not in caplog.text
