"""The admin UI over real HTTP: login, CSRF, access rules, keys, rotation, retirement, docs."""

import concurrent.futures
import re
import threading

import pytest
import requests

from appliance import accounts, keys, orgs, registry_builder
from appliance.protocol import tarball
from tests.driver import erlang_package
from tests.webclient import WebSession


@pytest.fixture
def web(hv):
    session = WebSession(hv.url)
    assert session.login().status_code == 200
    return session


def test_login_sets_a_hardened_session_cookie_and_logout_ends_it(hv):
    session = WebSession(hv.url)
    response = session.login()
    assert response.status_code == 200 and "Organizations" in response.text
    cookie = response.history[0].headers["Set-Cookie"]  # set by the POST that logged in
    assert cookie.startswith("hexvault_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    session.post("/admin/logout")
    assert session.get("/admin/orgs/acme", allow_redirects=False).status_code == 302


def test_wrong_password_then_rate_limit_per_account(hv):
    session = WebSession(hv.url)
    for _ in range(5):
        response = session.login(password="wrong-password")
        assert response.status_code == 401
        assert "invalid username and password combination" in response.text.lower()
    blocked = session.login()  # even the right password is refused while locked out
    assert blocked.status_code == 429
    assert "Too many failed logins" in blocked.text


def test_posts_without_csrf_token_are_refused_and_change_nothing(hv, web):
    response = web.post("/admin/orgs", {"name": "sneaky"}, csrf=False)
    assert response.status_code == 400 and "CSRF" in response.text
    response = web.post("/admin/orgs", {"name": "sneaky", "csrf_token": "forged"}, csrf=False)
    assert response.status_code == 400
    assert "sneaky" not in [o.name for o in orgs.list_all()]


def test_non_members_cannot_see_other_organizations(hv, web):
    beta = orgs.create("beta")
    registry_builder.ensure_index(hv.runtime, beta)
    accounts.create_user("carol", "carol-password", rounds=4)
    orgs.add_member(hv.org, accounts.get_user("carol"), "read")
    carol = WebSession(hv.url)
    carol.login("carol", "carol-password")
    assert carol.get("/admin/orgs/acme").status_code == 200
    assert carol.get("/admin/orgs/beta").status_code == 404
    assert carol.get("/admin/orgs/beta/packages").status_code == 404
    # a read member can't manage acme
    response = carol.post("/admin/orgs/acme/keys", {"name": "x", "repository": "1"})
    assert response.status_code == 403
    assert carol.get("/admin/users").status_code == 403


def test_org_key_create_rotate_revoke_take_effect_at_once(hv, web):
    created = web.post("/admin/orgs/acme/keys", {"name": "deploy", "repository": "1"})
    assert created.status_code == 200 and created.history[0].status_code == 303
    assert created.headers["Cache-Control"] == "no-store"
    old = re.search(r'<pre id="secret" class="secret">([0-9a-f]{32})</pre>', created.text).group(1)
    assert f"--auth-key {old}" in created.text
    assert hv.repo("names", key=old).status_code == 200
    key_id = re.search(r"/admin/keys/(\d+)/rotate", web.get("/admin/orgs/acme").text).group(1)
    rotated = web.post(f"/admin/keys/{key_id}/rotate", {"grace_seconds": "0"})
    new = re.search(r'<pre id="secret" class="secret">([0-9a-f]{32})</pre>', rotated.text).group(1)
    assert new != old
    assert hv.repo("names", key=old).status_code == 401
    assert hv.repo("names", key=new).status_code == 200
    page = web.get("/admin/orgs/acme").text
    assert old not in page and new not in page  # shown once only
    audit = web.get("/admin/audit?org=acme&action=key.").text
    assert "key.rotate" in audit and "key.generate" in audit


def test_rotate_with_grace_keeps_the_old_secret_working(hv, web):
    created = web.post("/admin/orgs/acme/keys", {"name": "ci", "repository": "1"})
    old = re.search(r'class="secret">([0-9a-f]{32})<', created.text).group(1)
    key_id = re.search(r"/admin/keys/(\d+)/rotate", web.get("/admin/orgs/acme").text).group(1)
    rotated = web.post(f"/admin/keys/{key_id}/rotate", {"grace_seconds": "3600"})
    new = re.search(r'class="secret">([0-9a-f]{32})<', rotated.text).group(1)
    assert hv.repo("names", key=old).status_code == 200
    assert hv.repo("names", key=new).status_code == 200
    assert web.post(f"/admin/keys/{key_id}/rotate", {"grace_seconds": "12345"}).status_code == 422


def test_members_roles_and_user_admin(hv, web):
    created = web.post("/admin/users", {"username": "dave", "password": "dave-password", "email": "dave@corp.example",
                                        "full_name": "Dave D"})
    assert created.status_code == 200
    assert re.search(r'dave</a>\s*<br>Dave D\s*<br><span class="muted">dave@corp.example</span>', created.text)
    assert web.post("/admin/orgs/acme/members", {"username": "dave", "role": "write"}).status_code == 200
    assert orgs.role_of(accounts.get_user("dave"), hv.org) == "write"
    web.post("/admin/orgs/acme/members/dave/role", {"role": "read"})
    assert orgs.role_of(accounts.get_user("dave"), hv.org) == "read"
    web.post("/admin/users/dave/password", {"password": "reset-password"})
    assert WebSession(hv.url).login("dave", "reset-password").status_code == 200
    web.post("/admin/orgs/acme/members/dave/remove")
    assert orgs.role_of(accounts.get_user("dave"), hv.org) is None


def test_change_own_password_needs_the_current_one(hv, web):
    wrong = web.post("/admin/account", {"current_password": "nope", "new_password": "new-password-1",
                                        "confirm_password": "new-password-1"})
    assert wrong.status_code == 422
    ok = web.post("/admin/account", {"current_password": "admin-password", "new_password": "new-password-1",
                                     "confirm_password": "new-password-1"})
    assert ok.status_code == 200 and "Password changed" in ok.text
    assert WebSession(hv.url).login(password="new-password-1").status_code == 200


def test_a_password_change_ends_the_users_other_sessions(hv, web):
    other = WebSession(hv.url)  # the same admin, logged in elsewhere (or a stolen cookie)
    assert other.login().status_code == 200
    assert other.get("/admin/account", allow_redirects=False).status_code == 200
    changed = web.post("/admin/account", {"current_password": "admin-password", "new_password": "new-password-2",
                                          "confirm_password": "new-password-2"})
    assert changed.status_code == 200 and "Password changed" in changed.text
    assert web.get("/admin/account", allow_redirects=False).status_code == 200  # this session goes on
    assert other.get("/admin/account", allow_redirects=False).status_code == 302  # that one is over
    # An admin resetting someone's password ends that user's sessions too.
    accounts.create_user("carol", "carol-password", rounds=4)
    carol = WebSession(hv.url)
    assert carol.login("carol", "carol-password").status_code == 200
    accounts.set_password(accounts.get_user("carol"), "carol-new-password", rounds=4)
    assert carol.get("/admin/account", allow_redirects=False).status_code == 302


def test_sign_out_other_sessions_keeps_only_this_one(hv, web):
    other = WebSession(hv.url)
    assert other.login().status_code == 200
    ended = web.post("/admin/account/sessions")
    assert ended.status_code == 200 and "Signed out of every other session" in ended.text
    assert web.get("/admin/account", allow_redirects=False).status_code == 200
    assert other.get("/admin/account", allow_redirects=False).status_code == 302
    assert other.login().status_code == 200  # logging in again works
    audit_page = web.get("/admin/audit?action=user.sessions_end").text
    assert "user.sessions_end" in audit_page
    assert web.post("/admin/account/sessions", csrf=False).status_code == 400


def test_logging_in_starts_a_fresh_session(hv):
    session = WebSession(hv.url)
    session.get("/admin/login")
    planted = session.token  # a token from before login, as a fixation attack would plant
    assert session.login().status_code == 200
    session.get("/admin/account")
    assert session.token and session.token != planted
    assert session.post("/admin/orgs", {"name": "planted", "csrf_token": planted}, csrf=False).status_code == 400


def test_package_page_retire_and_unretire(hv, web):
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    page = web.get("/admin/orgs/acme/packages/hello")
    assert page.status_code == 200
    assert hv.registry_package("hello")["releases"][0]["outer_checksum"].hex() in page.text
    response = web.post("/admin/orgs/acme/packages/hello/0.1.0/retire", {"reason": "security", "message": "CVE-9"})
    assert response.status_code == 200 and "Retired (security)" in response.text
    assert hv.registry_package("hello")["releases"][0]["retired"] == {"reason": "security", "message": "CVE-9"}
    web.post("/admin/orgs/acme/packages/hello/0.1.0/unretire")
    assert hv.registry_package("hello")["releases"][0]["retired"] is None
    assert "hello" in web.get("/admin/orgs/acme/packages?q=hel").text
    assert "No packages" in web.get("/admin/orgs/acme/packages?q=zzz").text


def test_readme_html_is_neutralised(hv, web):
    evil = "# Title\n\n<script>alert(1)</script>\n\n[x](javascript:alert(2)) <img src=x onerror=alert(3)>\n"
    data = erlang_package("evilreadme", "1.0.0")
    meta = tarball.read_package(data).metadata
    files = {"src/evilreadme.erl": b"-module(evilreadme).\n", "README.md": evil.encode()}
    meta["files"] = sorted(files)
    assert hv.publish(tarball.create_package(meta, files)).status_code == 201
    page = web.get("/admin/orgs/acme/packages/evilreadme").text
    assert "<h1>Title</h1>" in page
    assert "<script>alert(1)" not in page and "onerror=" not in page.replace("onerror=alert(3)&gt;", "")
    assert 'href="javascript:' not in page


def test_private_docs_are_sandboxed_and_need_membership(hv, web):
    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    docs = tarball.create_docs({"index.html": b"<h1>Hello docs</h1>", "dist/app.js": b"console.log(1)"})
    assert hv.api("POST", "repos/acme/packages/hello/releases/0.1.0/docs", data=docs).status_code == 201
    page = web.get("/docs/acme/hello/0.1.0/")
    assert page.status_code == 200 and "Hello docs" in page.text
    assert page.headers["Content-Security-Policy"].startswith("sandbox")
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert web.get("/docs/acme/hello/0.1.0/dist/app.js").headers["Content-Type"].startswith(
        ("application/javascript", "text/javascript"))
    latest = web.get("/docs/acme/hello/", allow_redirects=False)
    assert latest.status_code == 302 and latest.headers["Location"].endswith("/docs/acme/hello/0.1.0/")
    # anonymous: to the login form and back, never a Basic challenge a browser would cache and
    # replay to the API
    anonymous = WebSession(hv.url).get("/docs/acme/hello/0.1.0/", allow_redirects=False)
    assert anonymous.status_code == 302 and "WWW-Authenticate" not in anonymous.headers
    assert anonymous.headers["Location"].endswith("/admin/login?next=/docs/acme/hello/0.1.0/")
    assert "Hello docs" not in anonymous.text
    # a wrong key is still a plain 401
    assert hv.http.get(f"{hv.url}/docs/acme/hello/0.1.0/", headers={"authorization": "0" * 32}).status_code == 401
    # a repository key of the organization reads docs too, without a session
    assert hv.http.get(f"{hv.url}/docs/acme/hello/0.1.0/", headers={"authorization": hv.repo_key}).status_code == 200
    assert web.get("/docs/acme/hello/0.1.0/../../../etc/passwd").status_code == 404


def test_setup_page_client_commands_name_urls_that_serve_the_repository(hv, web):
    import html

    page = web.get("/admin/orgs/acme/setup").text
    block = html.unescape(re.search(r'<pre id="mix-hexpm-org">(.*?)</pre>', page, re.S).group(1))
    mirror = re.search(r"mix hex.repo set hexpm --url (\S+)\n", block)
    org_repo = re.search(r"mix hex.repo add hexpm:acme (\S+) --public-key acme.pem", block)
    auth = re.search(r"HEX_API_URL=(\S+) mix hex.organization auth acme --key <REPOSITORY_KEY>", block)
    assert mirror and org_repo and auth and org_repo.group(1) == f"{mirror.group(1)}/repos/acme"
    # `mix hex.organization auth` checks the key at the API first:
    checked = hv.http.get(f"{auth.group(1)}/auth", params={"domain": "repository", "resource": "acme"},
                          headers={"authorization": hv.repo_key})
    assert checked.status_code in (200, 204)
    # What mix will fetch for an `organization: "acme"` dep with that set-up:
    names = hv.http.get(f"{org_repo.group(1)}/names", headers={"authorization": hv.repo_key})
    assert names.status_code == 200 and names.content == hv.repo("names").content
    plain = re.search(r"mix hex.repo add acme (\S+) --public-key acme.pem", page).group(1)
    assert hv.http.get(f"{plain}/names", headers={"authorization": hv.repo_key}).status_code == 200


def test_setup_page_shows_the_rebar3_hex_commands_the_client_tests_run(hv, web):
    import html

    from appliance import clientsetup
    from appliance.models import SigningKey

    page = web.get("/admin/orgs/acme/setup").text
    signing = SigningKey.current()
    setup = clientsetup.for_org(hv.url, "acme", signing.public_pem, signing.fingerprint)
    for block_id, expected in (("rebar3-setup", setup.rebar3_config), ("rebar3-hex", setup.rebar3_hex_commands())):
        block = html.unescape(re.search(rf'<pre id="{block_id}">(.*?)</pre>', page, re.S).group(1))
        assert block == expected
    assert "HEX_API_KEY=<API_KEY> rebar3 hex publish --repo acme" in html.unescape(page)


@pytest.mark.parametrize("target,expected", [
    ("/admin/orgs/acme", "/admin/orgs/acme"),
    ("/%09/evil.example", "/admin/"), ("/\t/evil.example", "/admin/"), ("/\\evil.example", "/admin/"),
    ("//evil.example", "/admin/"), ("https://evil.example/", "/admin/"), ("javascript:alert(1)", "/admin/"),
])
def test_login_redirects_only_to_paths_on_this_site(hv, target, expected):
    import urllib.parse

    session = WebSession(hv.url)
    session.get("/admin/login")
    query = target if "%" in target else urllib.parse.quote(target, safe="/:")
    response = session.post(f"/admin/login?next={query}", {"username": "admin", "password": "admin-password"},
                            allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] in (expected, hv.url + expected)


# -- issue 14 item 9: logging out ends the session on the server ---------------------------------

def test_a_cookie_copied_before_logout_is_dead_after_it(hv):
    session = WebSession(hv.url)
    assert session.login().status_code == 200
    assert session.get("/admin/account").status_code == 200
    copied, token = session.http.cookies.get("hexvault_session"), session.token
    assert session.post("/admin/logout").status_code == 200
    replay = requests.Session()
    replay.cookies.set("hexvault_session", copied)
    page = replay.get(f"{hv.url}/admin/account", allow_redirects=False)
    assert page.status_code == 302 and "/admin/login" in page.headers["Location"]
    sneaky = replay.post(f"{hv.url}/admin/orgs", data={"name": "sneaky", "csrf_token": token}, allow_redirects=False)
    assert sneaky.status_code in (302, 400) and "sneaky" not in [o.name for o in orgs.list_all()]


def test_disabling_a_user_ends_their_sessions_for_good(hv):
    carol_user = accounts.create_user("carol", "carol-password", rounds=4)
    carol = WebSession(hv.url)
    assert carol.login("carol", "carol-password").status_code == 200
    accounts.set_disabled(carol_user, True)
    accounts.set_disabled(carol_user, False)
    assert carol.get("/admin/account", allow_redirects=False).status_code == 302


# -- issue 14 item 5: one rotation of a key wins --------------------------------------------------

def test_parallel_rotations_of_one_key_leave_one_live_key(hv, web):
    created = web.post("/admin/orgs/acme/keys", {"name": "deploy", "repository": "1"})
    old = re.search(r'class="secret">([0-9a-f]{32})<', created.text).group(1)
    key_id = re.search(r"/admin/keys/(\d+)/rotate", web.get("/admin/orgs/acme").text).group(1)
    admins = [WebSession(hv.url) for _ in range(4)]
    for admin in admins:
        assert admin.login().status_code == 200
        admin.get("/admin/orgs/acme")
    start = threading.Barrier(len(admins))

    def rotate(admin):
        start.wait()
        return admin.post(f"/admin/keys/{key_id}/rotate", {"grace_seconds": "0"})

    with concurrent.futures.ThreadPoolExecutor(len(admins)) as pool:
        answers = list(pool.map(rotate, admins))
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert all("already rotated or revoked" in a.text for a in answers if a.status_code == 409)
    winner = next(re.search(r'class="secret">([0-9a-f]{32})<', a.text).group(1) for a in answers if a.status_code == 200)
    live = [k for k in keys.list_for(organization=hv.org, include_revoked=False) if k.is_active()]
    assert [k.name for k in live if k.name.startswith("deploy")] == ["deploy"]
    assert hv.repo("names", key=winner).status_code == 200
    assert hv.repo("names", key=old).status_code == 401


def test_a_key_rotated_with_grace_cannot_be_rotated_again(hv, web):
    web.post("/admin/orgs/acme/keys", {"name": "ci", "repository": "1"})
    key_id = re.search(r"/admin/keys/(\d+)/rotate", web.get("/admin/orgs/acme").text).group(1)
    assert web.post(f"/admin/keys/{key_id}/rotate", {"grace_seconds": "3600"}).status_code == 200
    again = web.post(f"/admin/keys/{key_id}/rotate", {"grace_seconds": "3600"})
    assert again.status_code == 409 and "already rotated or revoked" in again.text
    assert [k.name for k in keys.list_for(organization=hv.org, include_revoked=False)].count("ci") == 1
