"""The OAuth device login of `mix hex.user auth` (identity/device.py, routes/oauth.py) over real
HTTP: the client's requests as Hex sends them (ETF), the verification page driven as a browser
would (webclient), and what each token can do afterwards."""

import datetime
import re

import pytest

from appliance import accounts, orgs
from appliance.identity import device
from appliance.models import DeviceAuthorization
from tests.driver import erlang_package
from tests.webclient import WebSession, http_from

CLIENT = device.HEX_CLIENT_ID


def start(hv, name="laptop", http=None):
    body = {"client_id": CLIENT, "scope": "api repositories", "name": name}
    if http is not None:
        hv = _Via(hv, http)
    return hv.api("POST", "oauth/device_authorization", key=False, body=body)


class _Via:
    """hv.api through another requests session (another client address)."""

    def __init__(self, hv, http):
        self.hv, self.http = hv, http

    def api(self, *args, **kwargs):
        saved, self.hv.http = self.hv.http, self.http
        try:
            return self.hv.api(*args, **kwargs)
        finally:
            self.hv.http = saved


def poll(hv, device_code):
    return hv.api("POST", "oauth/token", key=False,
                  body={"grant_type": device.DEVICE_GRANT, "device_code": device_code, "client_id": CLIENT})


def refresh(hv, refresh_token):
    return hv.api("POST", "oauth/token", key=False,
                  body={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT})


def forget_last_poll(device_code):
    """Let the next poll come after the interval without waiting it out."""
    DeviceAuthorization.update(last_polled_at=None).execute()


def browser(hv, username="admin", password="admin-password"):
    web = WebSession(hv.url)
    assert web.login(username, password).status_code == 200
    return web


def decide(web, user_code, decision="approve"):
    page = web.get("/admin/device", params={"user_code": user_code})
    assert page.status_code == 200, page.text
    return web.post("/admin/device", {"user_code": user_code, "decision": decision})


def logged_in(hv, username="admin", password="admin-password"):
    started = start(hv).term
    decide(browser(hv, username, password), started["user_code"])
    tokens = poll(hv, started["device_code"])
    assert tokens.status_code == 200, tokens.term
    return tokens.term


def test_an_approved_device_login_gets_tokens_that_act_as_the_user(hv):
    started = start(hv)
    assert started.status_code == 200
    term = started.term
    assert set(term) == {"device_code", "user_code", "verification_uri", "verification_uri_complete",
                         "expires_in", "interval"}
    assert re.fullmatch(r"[A-Z]{8}", term["user_code"])  # Hex prints it with a dash of its own
    assert term["verification_uri"] == hv.url + "/admin/device"
    assert term["verification_uri_complete"].endswith(f"?user_code={term['user_code'][:4]}-{term['user_code'][4:]}")

    waiting = poll(hv, term["device_code"])
    assert waiting.status_code == 400 and waiting.term["error"] == "authorization_pending"
    too_fast = poll(hv, term["device_code"])
    assert too_fast.status_code == 400 and too_fast.term["error"] == "slow_down"

    web = browser(hv)
    page = web.get("/admin/device", params={"user_code": term["user_code"].lower()})  # typed any case
    assert page.status_code == 200
    assert "laptop" in page.text and "<code>api</code>" in page.text and "<code>repositories</code>" in page.text
    approved = web.post("/admin/device", {"user_code": term["user_code"], "decision": "approve"})
    assert approved.status_code == 200 and "laptop is logged in as admin" in approved.text

    forget_last_poll(term["device_code"])
    tokens = poll(hv, term["device_code"])
    assert tokens.status_code == 200
    assert tokens.term["token_type"] == "Bearer" and tokens.term["expires_in"] == device.ACCESS_TTL
    assert tokens.term["scope"] == "api repositories"
    bearer = "Bearer " + tokens.term["access_token"]
    assert hv.api("GET", "users/me", key=bearer).term["username"] == "admin"
    assert hv.publish(erlang_package("viadevice", "1.0.0"), key=bearer).status_code == 201
    assert hv.repo("packages/viadevice", key=bearer).status_code == 200
    # Single use: the device code is spent.
    again = poll(hv, term["device_code"])
    assert again.status_code == 400 and again.term["error"] == "invalid_grant"


def test_a_token_is_bound_to_its_user_and_does_no_more_than_they_may(hv):
    reader = accounts.create_user("reader", "reader-password", rounds=4)
    orgs.add_member(hv.org, reader, "read")
    tokens = logged_in(hv, "reader", "reader-password")
    bearer = "Bearer " + tokens["access_token"]
    assert hv.api("GET", "users/me", key=bearer).term["username"] == "reader"
    assert hv.repo("names", key=bearer).status_code == 200
    assert hv.publish(erlang_package("notmine", "1.0.0"), key=bearer).status_code == 403
    # A token with a forged grant id or scope fails its signature.
    forged = tokens["access_token"].replace(f"hvo_{tokens['access_token'].split('_')[1]}_", "hvo_999_", 1)
    assert hv.api("GET", "users/me", key="Bearer " + forged).status_code == 401


def test_denied_and_expired_logins_get_no_token(hv):
    denied = start(hv).term
    web = browser(hv)
    assert "denied" in decide(web, denied["user_code"], "deny").text
    answer = poll(hv, denied["device_code"])
    assert answer.status_code == 403 and answer.term["error"] == "access_denied"
    # A decided code cannot be decided again (an approval after a denial would be a login).
    assert web.post("/admin/device", {"user_code": denied["user_code"], "decision": "approve"}).status_code == 404

    late = start(hv).term
    DeviceAuthorization.update(expires_at=datetime.datetime(2000, 1, 1)).execute()
    assert web.get("/admin/device", params={"user_code": late["user_code"]}).status_code == 404
    assert poll(hv, late["device_code"]).term["error"] == "expired_token"
    assert poll(hv, "not-a-device-code").term["error"] == "invalid_grant"


def test_device_logins_are_limited_per_address(hv):
    for _ in range(device.MAX_STARTS_PER_ADDRESS):
        assert start(hv).status_code == 200
    refused = start(hv)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert start(hv, http=http_from("127.0.0.2")).status_code == 200  # others are not locked out


def test_only_hex_is_a_client_and_the_scope_is_checked(hv):
    wrong = hv.api("POST", "oauth/device_authorization", key=False,
                   body={"client_id": "someone-else", "scope": "api", "name": "x"})
    assert wrong.status_code == 401 and wrong.term["error"] == "invalid_client"
    greedy = hv.api("POST", "oauth/device_authorization", key=False,
                    body={"client_id": CLIENT, "scope": "api admin", "name": "x"})
    assert greedy.status_code == 400 and greedy.term["error"] == "invalid_scope"
    odd = hv.api("POST", "oauth/token", key=False, body={"grant_type": "password", "client_id": CLIENT})
    assert odd.status_code == 400 and odd.term["error"] == "unsupported_grant_type"


def test_the_verification_page_needs_a_login_and_the_csrf_token(hv):
    term = start(hv).term
    anonymous = WebSession(hv.url)
    page = anonymous.get("/admin/device", params={"user_code": term["user_code"]}, allow_redirects=False)
    assert page.status_code == 302 and "/admin/login" in page.headers["Location"]
    # The login form sends the user back to the code.
    anonymous.get(page.headers["Location"])
    back = anonymous.post(page.headers["Location"].replace(hv.url, ""),
                          {"username": "admin", "password": "admin-password"})
    assert back.status_code == 200 and "Approve" in back.text and "laptop" in back.text
    forged = browser(hv).post("/admin/device", {"user_code": term["user_code"], "decision": "approve"}, csrf=False)
    assert forged.status_code == 400
    assert poll(hv, term["device_code"]).term["error"] == "authorization_pending"


def test_refresh_tokens_rotate_and_a_replayed_one_ends_the_login(hv):
    tokens = logged_in(hv)
    renewed = refresh(hv, tokens["refresh_token"])
    assert renewed.status_code == 200 and renewed.term["refresh_token"] != tokens["refresh_token"]
    bearer = "Bearer " + renewed.term["access_token"]
    assert hv.api("GET", "users/me", key=bearer).status_code == 200
    # The old refresh token again: someone holds a copy, so the login ends for everyone.
    replayed = refresh(hv, tokens["refresh_token"])
    assert replayed.status_code == 400 and replayed.term["error"] == "invalid_grant"
    assert hv.api("GET", "users/me", key=bearer).status_code == 401
    assert refresh(hv, renewed.term["refresh_token"]).term["error"] == "invalid_grant"


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_revoking_either_token_ends_the_login(hv, which):
    tokens = logged_in(hv)
    revoked = hv.api("POST", "oauth/revoke", key=False, body={"token": tokens[which], "client_id": CLIENT})
    assert revoked.status_code == 200
    assert hv.api("GET", "users/me", key="Bearer " + tokens["access_token"]).status_code == 401
    assert refresh(hv, tokens["refresh_token"]).term["error"] == "invalid_grant"
    # Unknown tokens are no error: the answer tells nothing.
    assert hv.api("POST", "oauth/revoke", key=False, body={"token": "nonsense", "client_id": CLIENT}).status_code == 200


def test_disabling_a_user_drops_their_tokens_for_good(hv):
    bob = accounts.create_user("bob", "bob-password", rounds=4)
    orgs.add_member(hv.org, bob, "write")
    tokens = logged_in(hv, "bob", "bob-password")
    bearer = "Bearer " + tokens["access_token"]
    assert hv.api("GET", "users/me", key=bearer).status_code == 200
    accounts.set_disabled(bob, True)
    assert hv.api("GET", "users/me", key=bearer).status_code == 401
    accounts.set_disabled(bob, False)  # enabling again revives nothing
    assert hv.api("GET", "users/me", key=bearer).status_code == 401
    assert refresh(hv, tokens["refresh_token"]).term["error"] == "invalid_grant"


def test_the_account_page_lists_sessions_and_tokens_and_revokes_them(hv):
    bob = accounts.create_user("bob", "bob-password", rounds=4)
    orgs.add_member(hv.org, bob, "write")
    tokens = logged_in(hv, "bob", "bob-password")
    bearer = "Bearer " + tokens["access_token"]
    assert hv.api("GET", "users/me", key=bearer).status_code == 200
    web, other = browser(hv, "bob", "bob-password"), browser(hv, "bob", "bob-password")
    account = web.get("/admin/account").text
    assert "laptop" in account and "from 127.0.0.1" in account  # the token's last use
    assert "(this browser)" in account
    session_ids = re.findall(r'/admin/account/sessions/(\d+)/end', account)
    assert len(session_ids) == 3  # the approving browser and these two
    ended = web.post(f"/admin/account/sessions/{max(session_ids, key=int)}/end")
    assert ended.status_code == 200
    assert other.get("/admin/account", allow_redirects=False).status_code == 302  # that browser is out
    grant_id = re.search(r'/admin/account/tokens/(\d+)/revoke', account).group(1)
    # Someone else's token is not on anyone else's revoke button.
    assert browser(hv, "admin").post(f"/admin/account/tokens/{grant_id}/revoke").status_code == 404
    assert hv.api("GET", "users/me", key=bearer).status_code == 200
    assert "revoked" in web.post(f"/admin/account/tokens/{grant_id}/revoke").text
    assert hv.api("GET", "users/me", key=bearer).status_code == 401


def test_an_administrator_revokes_anyones_tokens_and_sessions(hv):
    bob = accounts.create_user("bob", "bob-password", rounds=4)
    orgs.add_member(hv.org, bob, "write")
    tokens = logged_in(hv, "bob", "bob-password")
    bobs_browser = browser(hv, "bob", "bob-password")
    assert browser(hv, "bob", "bob-password").get("/admin/users/bob/access").status_code == 403
    admin = browser(hv)
    page = admin.get("/admin/users/bob/access").text
    grant_id = re.search(r'/admin/users/bob/tokens/(\d+)/revoke', page).group(1)
    assert admin.post(f"/admin/users/bob/tokens/{grant_id}/revoke").status_code == 200
    assert hv.api("GET", "users/me", key="Bearer " + tokens["access_token"]).status_code == 401
    for session_id in re.findall(r'/admin/users/bob/sessions/(\d+)/end', page):
        assert admin.post(f"/admin/users/bob/sessions/{session_id}/end").status_code == 200
    assert bobs_browser.get("/admin/account", allow_redirects=False).status_code == 302
