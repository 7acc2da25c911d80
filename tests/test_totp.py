"""Two-factor authentication (TOTP) of local accounts over real HTTP (tests/webclient.py) and in
headless Chromium: enrolment with a QR code, the code after the password, replay, recovery
codes, limits, HTTP Basic, the admin requirement and the admin's reset."""

import re
import time

import pyotp
import pytest
import requests

from appliance import accounts
from appliance.models import AuditLog, RecoveryCode, User
from tests.test_webui_browser import browser, shot, submit  # noqa: F401  (the Chromium fixture)
from tests.webclient import WebSession

SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7]+)<')


def signed_in(response):
    return response.status_code == 200 and 'action="/admin/logout"' in response.text


def enrol(web):
    """Set up two-factor on ``web``'s account; returns (pyotp.TOTP, recovery codes)."""
    page = web.get("/admin/account/2fa")
    assert page.status_code == 200 and "<svg" in page.text
    otp = pyotp.TOTP(SECRET_RE.search(page.text).group(1))
    done = web.post("/admin/account/2fa/enable", {"code": otp.now()})
    assert done.status_code == 200, done.text
    assert page.headers["Cache-Control"] == done.headers["Cache-Control"] == "no-store"  # secrets: no copies
    codes = re.findall(r"<li><code>([0-9a-f]{8}-[0-9a-f]{8})</code></li>", done.text)
    assert len(codes) == 10
    return otp, codes


def next_code(otp):
    """The code of the next 30 s step: accepted (clock drift) and not yet used."""
    return otp.at(time.time() + otp.interval)


def test_enrolment_then_every_login_asks_for_a_code_once(hv):
    web = WebSession(hv.url)
    assert signed_in(web.login())
    otp, codes = enrol(web)
    admin = User.get(User.username == "admin")
    assert admin.totp_enabled_at is not None
    stored = [r.code_hash for r in RecoveryCode.select().where(RecoveryCode.user == admin.id)]
    assert len(stored) == 10 and not set(codes) & set(stored)  # hashes only
    assert otp.secret not in (admin.totp_secret_encrypted or "")  # encrypted at rest

    fresh = WebSession(hv.url)
    asked = fresh.login()
    assert asked.url.endswith("/admin/login/code") and not signed_in(asked)
    assert not signed_in(fresh.get("/admin/account"))  # the password alone is no session
    assert fresh.post("/admin/login/code", {"code": "000000"}).status_code == 401
    # The code used to turn it on was seen: it is worth nothing now.
    assert fresh.post("/admin/login/code", {"code": otp.now()}).status_code == 401
    assert signed_in(fresh.post("/admin/login/code", {"code": next_code(otp)}))

    third = WebSession(hv.url, address="127.0.0.2")
    third.login()
    assert third.post("/admin/login/code", {"code": next_code(otp)}).status_code == 401  # replayed
    assert signed_in(third.post("/admin/login/code", {"code": codes[0].upper()}))  # a recovery code, once
    fourth = WebSession(hv.url, address="127.0.0.3")
    fourth.login()
    assert fourth.post("/admin/login/code", {"code": codes[0]}).status_code == 401
    actions = [a.action for a in AuditLog.select().where(AuditLog.action.startswith("user.2fa"))]
    assert actions == ["user.2fa_enable", "user.2fa_recovery_code"]


def test_wrong_codes_are_limited_like_wrong_passwords(hv):
    web = WebSession(hv.url)
    web.login()
    otp, _codes = enrol(web)
    guesser = WebSession(hv.url, address="127.0.0.4")
    guesser.login()
    # Five wrong codes from one address block the account there, as five wrong passwords would.
    for guess in ("111111", "222222", "333333", "444444", "555555"):
        assert guesser.post("/admin/login/code", {"code": guess}).status_code == 401
    assert guesser.post("/admin/login/code", {"code": next_code(otp)}).status_code == 429


def test_basic_auth_with_the_password_is_refused_once_two_factor_is_on_keys_still_work(hv):
    web = WebSession(hv.url)
    web.login()
    enrol(web)
    refused = requests.get(f"{hv.url}/api/users/me", auth=("admin", "admin-password"), timeout=10)
    assert refused.status_code == 401 and "use an API key" in refused.json()["message"]
    assert hv.api("GET", "users/me").status_code == 200  # the admin's key


def test_turning_it_off_takes_a_code_and_an_admin_can_reset_it(hv):
    accounts.create_user("erin", "erin-password", rounds=4)
    erin = WebSession(hv.url)
    erin.login("erin", "erin-password")
    otp, _codes = enrol(erin)
    assert erin.post("/admin/account/2fa/disable", {"code": "000000"}).status_code == 422  # back with a message
    assert User.get(User.username == "erin").totp_enabled_at is not None
    admin = WebSession(hv.url, address="127.0.0.5")
    admin.login()
    assert admin.post("/admin/users/erin/2fa/reset").status_code == 200
    assert User.get(User.username == "erin").totp_enabled_at is None
    assert not RecoveryCode.select().where(RecoveryCode.user == User.get(User.username == "erin").id).exists()
    assert signed_in(WebSession(hv.url).login("erin", "erin-password"))  # the password alone again
    reset = AuditLog.get(AuditLog.action == "user.2fa_reset")
    assert (reset.actor, reset.target) == ("admin", "erin")


def test_admins_must_set_it_up_first_when_required(hv):
    hv.runtime.config = hv.runtime.config.with_updates(require_2fa_for_admins=True)
    web = WebSession(hv.url)
    landing = web.login()
    assert landing.url.endswith("/admin/account/2fa") and "must set up two-factor" in landing.text
    assert web.get("/admin/keys").url.endswith("/admin/account/2fa")
    refused = requests.get(f"{hv.url}/api/users/me", auth=("admin", "admin-password"), timeout=10)
    assert refused.status_code == 401 and "set up two-factor" in refused.json()["message"]
    enrol(web)
    assert web.get("/admin/keys").url.endswith("/admin/keys")
    # Not an admin: not required.
    accounts.create_user("frank", "frank-password", rounds=4)
    assert signed_in(WebSession(hv.url).login("frank", "frank-password"))


def test_enrolment_and_login_in_chromium(hv, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(hv.url + "/admin/login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-password")
    submit(browser, "form")
    browser.get(hv.url + "/admin/account/2fa")
    qr = browser.find_element(By.CSS_SELECTOR, ".qr svg")
    assert qr.size["width"] > 50 and qr.size["height"] > 50  # drawn, not blocked by the page's CSP
    otp = pyotp.TOTP(browser.find_element(By.ID, "totp-secret").text)
    shot(browser, "totp-01-enrol")
    browser.find_element(By.NAME, "code").send_keys(otp.now())
    submit(browser, "form[action$='/2fa/enable']")
    codes = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#recovery-codes code")]
    assert len(codes) == 10
    shot(browser, "totp-02-recovery-codes")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/admin/logout'] button").click()
    browser.get(hv.url + "/admin/login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-password")
    submit(browser, "form")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Two-factor code"
    shot(browser, "totp-03-code")
    browser.find_element(By.NAME, "code").send_keys(next_code(otp))
    submit(browser, "form")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Organizations"


def test_hexvault_user_reset_2fa_lets_a_locked_out_admin_back_in(hv):
    from click.testing import CliRunner

    from appliance.cli import main

    web = WebSession(hv.url)
    web.login()
    enrol(web)
    env = {"HEXVAULT_CONFIG": "", "HEXVAULT_DATA_DIR": hv.runtime.config.data_dir, "HEXVAULT_BCRYPT_ROUNDS": "4"}
    result = CliRunner().invoke(main, ["user", "reset-2fa", "admin"], env=env, catch_exceptions=False)
    assert result.exit_code == 0 and "two-factor authentication of admin is off" in result.output
    assert signed_in(WebSession(hv.url).login())
    assert AuditLog.get(AuditLog.action == "user.2fa_reset").actor == "cli"
