"""OpenID Connect single sign-on (identity/oidc.py, webui/sso.py) against a real OpenID Provider
(pyop, tests/oidc_provider.py) over HTTPS: the code flow with PKCE, state and nonce, the ID token
checks, claims to user, groups to roles, and "SSO only" for non-admins. The full journey runs in
headless Chromium; the refusals are driven over HTTP."""

import os
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from appliance import accounts, orgs
from appliance.errors import Unauthenticated
from appliance.identity import oidc
from appliance.models import AuditLog, User
from tests.oidc_provider import OpenIDProvider
from tests.test_webui_browser import CHROMEDRIVER, CHROMIUM, submit
from tests.webclient import WebSession

USERS = {
    "alice": {"password": "alice-op-pw", "preferred_username": "alice", "email": "alice@corp.example",
              "email_verified": True, "name": "Alice Liddell", "groups": ["elixir-devs", "staff"]},
    "admin": {"password": "admin-op-pw", "preferred_username": "admin", "email": "admin@corp.example",
              "name": "Not The Admin", "groups": ["elixir-admins"]},
}


@pytest.fixture
def sso(hv, tmp_path):
    """hv with SSO configured against a running pyop provider; ``sso.op`` is the provider."""
    callback = hv.url + "/admin/login/sso/callback"
    clients = {"hexvault": {"redirect_uris": [callback], "response_types": ["code"],
                            "token_endpoint_auth_method": "none"},
               "other-app": {"redirect_uris": [callback], "response_types": ["code"],
                             "token_endpoint_auth_method": "none"}}
    with OpenIDProvider(tmp_path, clients, USERS) as op:
        hv.runtime.config = hv.runtime.config.with_updates(
            oidc_issuer=op.issuer, oidc_client_id="hexvault", oidc_ca_file=str(op.ca_file),
            oidc_display_name="Corp", oidc_group_roles=(("elixir-devs", ("acme:write",)),
                                                        ("elixir-admins", ("acme:admin",))))
        hv.op = op
        yield hv


def sign_in(hv, username, password, web=None):
    """The browser's round trip without a browser: Hexvault -> provider's form -> callback."""
    web = web or WebSession(hv.url)
    start = web.http.get(hv.url + "/admin/login/sso", allow_redirects=False)
    assert start.status_code == 302, start.text
    form = dict(parse_qs(urlsplit(start.headers["Location"]).query, keep_blank_values=True))
    form = {k: v[0] for k, v in form.items()}
    answered = requests.post(hv.op.issuer + "/authorize", data=dict(form, username=username, password=password),
                             verify=str(hv.op.ca_file), allow_redirects=False)
    assert answered.status_code == 302
    return web, web.http.get(answered.headers["Location"]), form


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="Debian's chromium and chromium-driver are not installed (scripts/test.sh does)")
def test_sign_in_with_the_company_provider_in_chromium(sso):
    os.environ["SE_AVOID_STATS"] = "true"
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    profile = tempfile.mkdtemp(prefix="hexvault-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}",
                 # The test provider's certificate comes from a CA made for this test only.
                 "--ignore-certificate-errors"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.implicitly_wait(5)
    try:
        browser.get(sso.url + "/admin/keys")
        sso_button = browser.find_element(By.ID, "sso")
        assert sso_button.text == "Sign in with Corp"
        sso_button.click()
        browser.find_element(By.ID, "op-login")
        assert browser.current_url.startswith(sso.op.issuer + "/authorize")
        browser.find_element(By.NAME, "username").send_keys("alice")
        browser.find_element(By.NAME, "password").send_keys("alice-op-pw")
        submit(browser, "#op-login")
        assert browser.current_url == sso.url + "/admin/keys"  # back where the login started
        assert "alice" in browser.find_element(By.CSS_SELECTOR, ".who").text
    finally:
        browser.quit()
    alice = User.get(User.username == "alice")
    assert (alice.email, alice.full_name, alice.password_hash) == ("alice@corp.example", "Alice Liddell", None)
    assert alice.auth_source == "oidc"
    assert orgs.role_of(alice, sso.org) == "write"  # elixir-devs -> acme:write
    request = sso.op.app.seen_authorization_requests[-1]
    assert request["code_challenge_method"] == "S256" and request["code_challenge"]
    assert request["nonce"] and request["state"] and request["scope"] == "openid email profile"


def test_memberships_follow_the_groups_at_every_sign_in(sso):
    _web, page, _form = sign_in(sso, "alice", "alice-op-pw")
    assert page.status_code == 200 and "alice" in page.text
    alice = User.get(User.username == "alice")
    assert orgs.role_of(alice, sso.org) == "write"
    try:
        USERS["alice"]["groups"] = ["elixir-admins", "staff"]  # moved to the leads in the directory
        sign_in(sso, "alice", "alice-op-pw")
        assert orgs.role_of(alice, sso.org) == "admin"
        assert AuditLog.select().where((AuditLog.action == "membership.role") & (AuditLog.target == "alice")).exists()
        USERS["alice"]["groups"] = ["staff"]  # in none of the mapped groups: no sign-in at all
        web, page, _form = sign_in(sso, "alice", "alice-op-pw")
        assert page.status_code == 401 and "none of the groups" in page.text
        assert web.get("/admin/account", allow_redirects=False).status_code == 302
    finally:
        USERS["alice"]["groups"] = ["elixir-devs", "staff"]


def test_a_local_account_is_never_taken_over_by_a_provider_user_of_that_name(sso):
    web, page, _form = sign_in(sso, "admin", "admin-op-pw")
    assert page.status_code == 401 and "Admin is a local account" in page.text
    assert User.get(User.username == "admin").auth_source == "local"
    assert web.get("/admin/account", allow_redirects=False).status_code == 302  # not signed in


def test_a_forged_or_replayed_callback_signs_nobody_in(sso):
    web, page, form = sign_in(sso, "alice", "wrong-password")
    assert page.status_code == 401 and "refused" in page.text
    # A callback with a state this browser never got (login CSRF), then a replay of a used one.
    attacker, _page, _form = sign_in(sso, "alice", "alice-op-pw")
    victim = WebSession(sso.url)
    victim.http.get(sso.url + "/admin/login/sso", allow_redirects=False)
    forged = victim.http.get(sso.url + "/admin/login/sso/callback", params={"code": "x", "state": form["state"]})
    assert forged.status_code == 401
    assert victim.get("/admin/account", allow_redirects=False).status_code == 302


def test_id_tokens_for_another_client_or_nonce_are_refused(sso):
    """A real ID token from the provider, issued to another client, checked as Hexvault's."""
    from authlib.integrations.requests_client import OAuth2Session

    callback = sso.url + "/admin/login/sso/callback"
    other = OAuth2Session("other-app", scope="openid email profile", redirect_uri=callback,
                          code_challenge_method="S256", token_endpoint_auth_method="none")
    url, _state = other.create_authorization_url(sso.op.issuer + "/authorize", nonce="n-1", code_verifier="v" * 50)
    form = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    answered = requests.post(sso.op.issuer + "/authorize", data=dict(form, username="alice", password="alice-op-pw"),
                             verify=str(sso.op.ca_file), allow_redirects=False)
    code = parse_qs(urlsplit(answered.headers["Location"]).query)["code"][0]
    id_token = other.fetch_token(sso.op.issuer + "/token", code=code, code_verifier="v" * 50,
                                 verify=str(sso.op.ca_file))["id_token"]
    as_other = oidc.Provider(sso.runtime.config.with_updates(oidc_client_id="other-app"))
    assert as_other.verify_id_token(id_token, "n-1")["preferred_username"] == "alice"  # genuine
    with pytest.raises(Unauthenticated, match="aud"):
        oidc.provider_for(sso.runtime.config).verify_id_token(id_token, "n-1")
    with pytest.raises(Unauthenticated, match="nonce"):
        as_other.verify_id_token(id_token, "another-nonce")
    tampered = id_token[:-4] + ("AAAA" if not id_token.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated):
        as_other.verify_id_token(tampered, "n-1")


def test_sso_only_keeps_passwords_for_administrators(sso):
    accounts.create_user("bob", "bob-password", rounds=4)
    sso.runtime.config = sso.runtime.config.with_updates(sso_only=True)
    refused = WebSession(sso.url).login("bob", "bob-password")
    assert refused.status_code == 403 and "Sign in with Corp" in refused.text
    assert WebSession(sso.url).login("bob", "wrong-password").status_code == 401  # tells nothing more
    admin = WebSession(sso.url)
    assert admin.login().status_code == 200 and admin.get("/admin/account").status_code == 200
