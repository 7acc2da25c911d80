"""The Hex HTTP API over real HTTP with ETF bodies, as mix and rebar3_hex call it."""

import hashlib
import socket

import pytest

from appliance import accounts, keys, orgs
from appliance.protocol import etf
from tests.driver import ETF, erlang_package


def test_users_me_has_organizations_and_username(hv):
    response = hv.api("GET", "users/me")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(ETF)
    assert response.term["username"] == "admin"
    assert response.term["organizations"] == [{"name": "acme", "role": "admin"}]


def test_json_is_served_when_asked(hv):
    response = hv.api("GET", "users/me", accept="application/json")
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["username"] == "admin"


def test_publish_fetch_retire_unretire_revert_round_trip(hv):
    data = erlang_package("hello", "0.1.0")
    response = hv.publish(data)
    assert response.status_code == 201
    release = response.term
    assert release["version"] == "0.1.0"
    assert release["checksum"] == hashlib.sha256(data).hexdigest()
    assert release["retirement"] is None
    assert release["publisher"]["username"] == "admin"
    assert release["url"].endswith("/api/repos/acme/packages/hello/releases/0.1.0")

    info = hv.api("GET", "repos/acme/packages/hello").term
    assert info["latest_version"] == "0.1.0" and info["latest_stable_version"] == "0.1.0"
    assert isinstance(info["meta"], dict) and isinstance(info["configs"]["mix.exs"], str)
    assert [r["version"] for r in info["releases"]] == ["0.1.0"]

    retire = hv.api("POST", "repos/acme/packages/hello/releases/0.1.0/retire",
                    body={"reason": "security", "message": "CVE-2026-1"})
    assert retire.status_code == 204
    assert hv.registry_package("hello")["releases"][0]["retired"] == {"reason": "security", "message": "CVE-2026-1"}
    assert hv.registry_versions()["packages"][0]["retired"] == [0]
    shown = hv.api("GET", "repos/acme/packages/hello/releases/0.1.0").term
    assert shown["retirement"] == {"reason": "security", "message": "CVE-2026-1"}

    assert hv.api("DELETE", "repos/acme/packages/hello/releases/0.1.0/retire").status_code == 204
    assert not hv.registry_package("hello")["releases"][0].get("retired")

    assert hv.publish(erlang_package("hello", "0.2.0")).status_code == 201
    assert hv.api("DELETE", "repos/acme/packages/hello/releases/0.2.0").status_code == 204
    assert [r["version"] for r in hv.registry_package("hello")["releases"]] == ["0.1.0"]
    assert hv.repo("tarballs/hello-0.2.0.tar").status_code == 404
    # reverting the last release deletes the package everywhere
    assert hv.api("DELETE", "repos/acme/packages/hello/releases/0.1.0").status_code == 204
    assert hv.repo("packages/hello").status_code == 404
    assert hv.registry_names()["packages"] == []
    assert hv.api("GET", "repos/acme/packages/hello").status_code == 404


def test_publish_without_repos_prefix_goes_to_default_org_and_hexpm_means_default(hv):
    data = erlang_package("hello", "0.1.0")
    response = hv.api("POST", "packages/hello/releases?replace=false", data=data)
    assert response.status_code == 201
    assert hv.api("GET", "repos/hexpm/packages/hello").term["repository"] == "acme"
    assert hv.api("GET", "packages/hello").term["name"] == "hello"


def test_legacy_publish_endpoint_reads_name_from_tarball(hv):
    response = hv.api("POST", "repos/acme/publish?replace=false", data=erlang_package("oldclient", "1.0.0"))
    assert response.status_code == 201
    assert hv.registry_package("oldclient")["releases"][0]["version"] == "1.0.0"


def test_republish_needs_replace_and_replace_swaps_the_tarball(hv):
    first = erlang_package("hello", "0.1.0")
    second = erlang_package("hello", "0.1.0", module_body='greet() -> <<"changed">>.\n')
    assert hv.publish(first).status_code == 201
    refused = hv.publish(second)
    assert refused.status_code == 422
    assert "--replace" in str(refused.term["errors"])
    assert hv.repo("tarballs/hello-0.1.0.tar").content == first
    replaced = hv.publish(second, replace=True)
    assert replaced.status_code == 200
    assert hv.repo("tarballs/hello-0.1.0.tar").content == second
    assert hv.registry_package("hello")["releases"][0]["outer_checksum"] == hashlib.sha256(second).digest()


def test_url_name_must_match_metadata(hv):
    response = hv.publish(erlang_package("hello", "0.1.0"), name="other")
    assert response.status_code == 422
    assert response.term["status"] == 422
    assert "does not match" in response.term["errors"]["name"]


def test_error_shape_is_status_message_errors_with_string_values(hv):
    response = hv.api("POST", "repos/acme/packages/x/releases?replace=false", data=b"not a tarball")
    assert response.status_code == 422
    term = response.term
    assert set(term) == {"status", "message", "errors"}
    assert term["message"] == "Validation error(s)"
    assert all(isinstance(v, str) for v in term["errors"].values())


def test_unauthenticated_and_unauthorized_api_calls(hv):
    assert hv.api("GET", "users/me", key=False).status_code == 401
    bad = hv.api("GET", "users/me", key="0" * 32)
    assert bad.status_code == 401 and bad.term["message"] == "invalid API key"
    reader = accounts.create_user("reader", "reader-password", rounds=4)
    orgs.add_member(hv.org, reader, "read")
    _row, read_key = keys.create(hv.runtime.app_secret, "r", [["api", None]], user=reader)
    response = hv.publish(erlang_package("hello", "0.1.0"), key=read_key)
    assert response.status_code == 403
    _row, repo_only = keys.create(hv.runtime.app_secret, "ro", [["api", "read"]], user=hv.admin)
    assert hv.publish(erlang_package("hello", "0.1.0"), key=repo_only).status_code == 403
    assert hv.repo("packages/hello").status_code == 404  # nothing was stored


def test_non_members_cannot_see_private_packages(hv):
    assert hv.publish(erlang_package("secret", "1.0.0")).status_code == 201
    outsider = accounts.create_user("outsider", "outsider-password", rounds=4)
    _row, key = keys.create(hv.runtime.app_secret, "o", [["api", None]], user=outsider)
    assert hv.api("GET", "repos/acme/packages/secret", key=key).status_code == 404
    assert hv.api("GET", "packages?search=secret", key=key).term == []
    assert hv.api("POST", "repos/acme/packages/secret/releases/1.0.0/retire", key=key,
                  body={"reason": "other"}).status_code == 403


def test_org_key_with_api_write_can_publish_for_ci(hv):
    _row, ci_key = keys.create(hv.runtime.app_secret, "ci", [["api", "write"]], organization=hv.org)
    me = hv.api("GET", "users/me", key=ci_key)
    assert me.status_code == 200 and me.term["organizations"] == [{"name": "acme", "role": "write"}]
    assert hv.publish(erlang_package("cipkg", "1.0.0"), key=ci_key).status_code == 201
    # A repository-only organization key reads; it must not present itself as a publisher.
    reader = hv.api("GET", "users/me", key=hv.repo_key)
    assert reader.status_code == 200 and reader.term["organizations"] == [{"name": "acme", "role": "read"}]


def test_auth_endpoint_checks_repository_access(hv):
    ok = hv.api("GET", "auth?domain=repository&resource=acme", key=hv.repo_key)
    assert ok.status_code == 200
    assert ok.term["key"] == {"name": "acme-read", "owner": {"type": "organization", "name": "acme"}}
    orgs.create("beta")
    assert hv.api("GET", "auth?domain=repository&resource=beta", key=hv.repo_key).status_code == 403
    assert hv.api("GET", "auth?domain=repository&resource=acme", key="0" * 32).status_code == 401


def test_org_keys_generate_list_revoke_like_mix_hex_organization(hv):
    created = hv.api("POST", "orgs/acme/keys",
                     body={"name": "deploy", "permissions": [{"domain": "repository", "resource": "acme"}]})
    assert created.status_code == 201
    secret = created.term["secret"]
    assert len(secret) == 32 and created.headers["Location"].endswith("/orgs/acme/keys/deploy")
    assert hv.repo("names", key=secret).status_code == 200
    listed = hv.api("GET", "orgs/acme/keys").term
    assert {"deploy", "acme-read"} <= {k["name"] for k in listed}
    assert all(k["secret"] is None and k["inserted_at"] for k in listed)
    assert hv.api("DELETE", "orgs/acme/keys/deploy").status_code == 200
    assert hv.repo("names", key=secret).status_code == 401


def test_user_keys_can_be_created_with_basic_auth_like_old_clients(hv):
    import base64

    basic = "Basic " + base64.b64encode(b"admin:admin-password").decode()
    created = hv.api("POST", "keys", key=basic, body={"name": "host-api", "permissions": [{"domain": "api"}]})
    assert created.status_code == 201
    assert hv.api("GET", "users/me", key=created.term["secret"]).term["username"] == "admin"
    wrong = "Basic " + base64.b64encode(b"admin:nope-nope-nope").decode()
    assert hv.api("POST", "keys", key=wrong, body={"name": "x", "permissions": [{"domain": "api"}]}).status_code == 401


def test_keys_cannot_escalate(hv):
    orgs.create("beta")
    member = accounts.create_user("member", "member-password", rounds=4)
    orgs.add_member(hv.org, member, "write")
    _row, key = keys.create(hv.runtime.app_secret, "m", [["api", None]], user=member)
    response = hv.api("POST", "keys", key=key,
                      body={"name": "x", "permissions": [{"domain": "repository", "resource": "beta"}]})
    assert response.status_code == 403
    assert hv.api("POST", "orgs/acme/keys", key=key,
                  body={"name": "x", "permissions": [{"domain": "repository", "resource": "acme"}]}).status_code == 403


def test_oauth_client_credentials_exchange_returns_a_working_token(hv):
    response = hv.api("POST", "oauth/token", key=False,
                      body={"grant_type": "client_credentials", "client_id": "x", "client_secret": hv.repo_key,
                            "scope": "repositories"})
    assert response.status_code == 200
    token = response.term["access_token"]
    assert response.term["expires_in"] == keys.TOKEN_TTL == 900 and response.term["token_type"] == "Bearer"
    # Hex saves the token in ~/.hex/hex.config: it must not be the long-lived key itself.
    assert hv.repo_key not in token
    assert hv.repo("names", key=f"Bearer {token}").status_code == 200
    assert hv.repo("tarballs/none-1.0.0.tar", key=f"Bearer {token}").status_code == 404  # authenticated
    # The token has exactly its key's permissions: a repository key's token cannot publish.
    assert hv.publish(erlang_package("tok", "1.0.0"), key=f"Bearer {token}").status_code == 403
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert hv.repo("names", key=f"Bearer {forged}").status_code == 401
    longer = token.replace(token.split("_")[2], str(int(token.split("_")[2]) + 10_000), 1)
    assert hv.repo("names", key=f"Bearer {longer}").status_code == 401  # the expiry is signed too
    denied = hv.api("POST", "oauth/token", key=False,
                    body={"grant_type": "client_credentials", "client_id": "x", "client_secret": "0" * 32})
    assert denied.status_code == 401
    # Revoking the key kills its tokens on the next request.
    keys.revoke(keys.get("acme-read", organization=hv.org))
    revoked = hv.repo("names", key=f"Bearer {token}")
    assert revoked.status_code == 401 and b"revoked" in revoked.content


def test_a_token_does_only_what_its_scope_allows(hv):
    """A hex.config copied off a laptop holds a token: scope "repositories" (what Hex asks for)
    must not let it publish or mint a lasting key, even when the key behind it could."""
    _row, both = keys.create(hv.runtime.app_secret, "laptop", [["api", "write"], ["repositories", None]], user=hv.admin)

    def exchange(scope=None):
        body = {"grant_type": "client_credentials", "client_id": "x", "client_secret": both}
        if scope is not None:
            body["scope"] = scope
        return hv.api("POST", "oauth/token", key=False, body=body)

    repo_only = exchange()
    assert repo_only.status_code == 200 and repo_only.term["scope"] == "repositories"
    token = "Bearer " + repo_only.term["access_token"]
    assert hv.repo("names", key=token).status_code == 200
    minted = hv.api("POST", "keys", key=token, body={"name": "lasting", "permissions": [{"domain": "api"}]})
    assert minted.status_code == 403
    assert hv.publish(erlang_package("scoped", "1.0.0"), key=token).status_code == 403
    assert hv.api("GET", "auth?domain=api&resource=write", key=token).status_code == 403
    assert hv.api("GET", "auth?domain=repositories", key=token).status_code == 200

    writer = exchange("api:write")
    assert writer.status_code == 200
    assert hv.publish(erlang_package("scoped", "1.0.0"), key="Bearer " + writer.term["access_token"]).status_code == 201
    # A scope never adds to the key: the repository key's token cannot write whatever it asks.
    widened = hv.api("POST", "oauth/token", key=False, body={"grant_type": "client_credentials", "client_id": "x",
                                                             "client_secret": hv.repo_key, "scope": "api:write"})
    assert hv.publish(erlang_package("scoped", "1.0.1"),
                      key="Bearer " + widened.term["access_token"]).status_code == 403
    bad = exchange("everything")
    assert bad.status_code == 400 and bad.term["error"] == "invalid_scope"
    for odd in ({"grant_type": "client_credentials", "client_secret": 12345},
                {"grant_type": "client_credentials", "client_secret": both, "scope": ["api"]},
                {"grant_type": ["client_credentials"]}):
        assert hv.api("POST", "oauth/token", key=False, body=odd).status_code in (400, 401)


def test_users_me_shows_a_key_only_what_it_may_see(hv):
    beta = orgs.create("beta")
    orgs.add_member(beta, hv.admin, "admin")
    hv.admin.email = "admin@corp.example"
    hv.admin.save()
    assert hv.publish(erlang_package("betapkg", "1.0.0"), org="beta").status_code == 201
    full = hv.api("GET", "users/me")  # an api:write key
    assert {o["name"] for o in full.term["organizations"]} == {"acme", "beta"}
    assert full.term["email"] == "admin@corp.example" and [p["name"] for p in full.term["packages"]] == ["betapkg"]
    _row, narrow = keys.create(hv.runtime.app_secret, "acme-only", [["repository", "acme"]], user=hv.admin)
    for credential in (narrow, "Bearer " + keys.issue_token(hv.runtime.app_secret, _row, "repository:acme")):
        me = hv.api("GET", "users/me", key=credential)
        assert me.status_code == 200 and me.term["username"] == "admin"
        assert [o["name"] for o in me.term["organizations"]] == ["acme"]
        assert me.term["packages"] == [] and "email" not in me.term and "full_name" not in me.term
        assert b"betapkg" not in me.content and b"beta" not in me.content


def test_expired_tokens_are_refused(hv):
    key = keys.get("acme-read", organization=hv.org)
    stale = keys.issue_token(hv.runtime.app_secret, key, ttl=-1)
    response = hv.repo("names", key=f"Bearer {stale}")
    assert response.status_code == 401 and b"expired" in response.content
    fresh = keys.issue_token(hv.runtime.app_secret, key, ttl=60)
    assert hv.repo("names", key=f"Bearer {fresh}").status_code == 200


def test_docs_upload_and_delete(hv):
    import io
    import tarfile

    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("index.html")
        body = b"<h1>docs</h1>"
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    uploaded = hv.api("POST", "repos/acme/packages/hello/releases/0.1.0/docs", data=buf.getvalue())
    assert uploaded.status_code == 201
    assert uploaded.headers["Location"].endswith("/docs/acme/hello/0.1.0/")
    assert hv.repo("docs/hello-0.1.0.tar.gz").content == buf.getvalue()
    assert hv.api("GET", "repos/acme/packages/hello/releases/0.1.0").term["has_docs"] is True
    assert hv.api("DELETE", "repos/acme/packages/hello/releases/0.1.0/docs").status_code == 204
    assert hv.repo("docs/hello-0.1.0.tar.gz").status_code == 404
    assert hv.api("POST", "repos/acme/packages/nope/releases/0.1.0/docs", data=buf.getvalue()).status_code == 404


def test_expect_100_continue_gets_an_interim_response_before_the_body(hv):
    """OTP httpc waits for `100 Continue` before sending any body byte (hex-protocol.md §5.5)."""
    data = erlang_package("hello", "0.1.0")
    host, port = hv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (f"POST /api/repos/acme/packages/hello/releases?replace=false HTTP/1.1\r\nHost: {host}\r\n"
                f"authorization: {hv.api_key}\r\naccept: {ETF}\r\ncontent-type: application/octet-stream\r\n"
                f"content-length: {len(data)}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n")
        sock.sendall(head.encode())
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201")
    body = reply.split(b"\r\n\r\n", 1)[1]
    assert etf.decode(body)["version"] == "0.1.0"


@pytest.mark.parametrize("path", ["packages/hello", "users/me"])
def test_trailing_slash_base_url_double_slash_does_not_redirect(hv, path):
    hv.publish(erlang_package("hello", "0.1.0"))
    response = hv.http.get(f"{hv.url}/api//{path}", headers={"authorization": hv.api_key, "accept": ETF},
                           allow_redirects=False)
    assert response.status_code == 200


def test_mix_facing_details_found_with_the_real_client(hv):
    """From running Hex 2.5.2-dev against Hexvault: the config line names the repo, owners are
    listed, and a repository permission without a resource means the URL's organization."""
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    info = hv.api("GET", "repos/acme/packages/hello").term
    assert info["configs"]["mix.exs"] == '{:hello, "~> 0.1.0", repo: "acme"}'
    assert [o["username"] for o in info["owners"]] == ["admin"]
    created = hv.api("POST", "orgs/acme/keys", body={"name": "r", "permissions": [{"domain": "repository",
                                                                                   "resource": ""}]})
    assert created.status_code == 201
    assert created.term["permissions"] == [{"domain": "repository", "resource": "acme"}]
    refused = hv.api("POST", "keys", body={"name": "r", "permissions": [{"domain": "repository"}]})
    assert refused.status_code == 422 and "requires a resource" in refused.term["errors"]["permissions"]


def test_api_writes_refuse_what_a_browser_can_send_cross_site(hv):
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    retire = f"{hv.url}/api/repos/acme/packages/hello/releases/0.1.0/retire"
    body = '{"reason": "security", "message": "forged"}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = hv.http.post(retire, data=body, headers={"authorization": hv.api_key, "content-type": ctype,
                                                            "accept": "application/json"})
        assert response.status_code == 415 and "unsupported content type" in response.json()["message"]
    cross = hv.http.post(retire, data=body, headers={"authorization": hv.api_key, "content-type": "application/json",
                                                    "sec-fetch-site": "cross-site", "accept": "application/json"})
    assert cross.status_code == 403
    assert hv.registry_package("hello")["releases"][0].get("retired") is None  # nothing happened
    same = hv.http.post(retire, data=body, headers={"authorization": hv.api_key, "content-type": "application/json",
                                                   "accept": "application/json"})
    assert same.status_code == 204
