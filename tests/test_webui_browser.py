"""The admin UI in real headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

Screenshots of the main pages are saved to test-artifacts/ for people to look at.
"""

import os
import re
import shutil
import tempfile

import pytest
import requests

from tests.conftest import ARTIFACTS
from tests.driver import erlang_package

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                                reason="Debian's chromium and chromium-driver are not installed (scripts/test.sh does)")


@pytest.fixture
def browser():
    os.environ["SE_AVOID_STATS"] = "true"  # Selenium must not phone home or download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hexvault-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1366,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    os.makedirs(ARTIFACTS, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name):
    driver.save_screenshot(os.path.join(ARTIFACTS, f"{name}.png"))


def submit(driver, form_css):
    """Click the form's submit button and wait until the next page has replaced this one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element(By.CSS_SELECTOR, f"{form_css} button[type=submit]")
    button.click()

    def replaced(_driver):
        # Mid-navigation chromedriver may answer "node does not belong to the document" instead
        # of StaleElementReference: either way the old page is gone.
        try:
            button.is_enabled()
            return False
        except WebDriverException:
            return True

    WebDriverWait(driver, 10).until(replaced)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_admin_journey_in_chromium(hv, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    browser.get(hv.url + "/")
    assert "Log in" in browser.title
    shot(browser, "01-login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-password")
    submit(browser, "form")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Organizations"

    # create an organization
    browser.find_element(By.CSS_SELECTOR, "form[action$='/admin/orgs'] input[name=name]").send_keys("widgets")
    submit(browser, "form[action$='/admin/orgs']")
    assert browser.find_element(By.TAG_NAME, "h1").text == "widgets"
    shot(browser, "02-organization")
    browser.find_element(By.ID, "tab-org_setup").click()
    assert "mix hex.repo add widgets" in browser.find_element(By.ID, "mix-setup").text
    shot(browser, "02b-organization-client-setup")
    browser.find_element(By.ID, "tab-org_show").click()

    # create a key on it; the secret is shown once
    browser.find_element(By.CSS_SELECTOR, "form[action$='/keys'] input[name=name]").send_keys("deploy")
    submit(browser, "form[action$='/admin/orgs/widgets/keys']")
    old_secret = browser.find_element(By.ID, "secret").text
    assert re.fullmatch(r"[0-9a-f]{32}", old_secret)
    shot(browser, "03-new-key-secret")
    assert requests.get(f"{hv.url}/repos/widgets/names", headers={"authorization": old_secret}).status_code == 200

    # rotate it: by default the old secret keeps working for a day, and the page says until when
    browser.get(hv.url + "/admin/orgs/widgets")
    assert Select(browser.find_element(By.NAME, "grace_seconds")).first_selected_option.text == "in 24 hours"
    submit(browser, "form[action*='/rotate']")
    new_secret = browser.find_element(By.ID, "secret").text
    assert new_secret != old_secret
    assert browser.find_element(By.ID, "key-title").text == "Key deploy rotated"
    assert "keeps working until" in browser.find_element(By.ID, "rotation").text
    shot(browser, "03b-key-rotated")
    assert requests.get(f"{hv.url}/repos/widgets/names", headers={"authorization": old_secret}).status_code == 200
    assert requests.get(f"{hv.url}/repos/widgets/names", headers={"authorization": new_secret}).status_code == 200
    browser.refresh()  # a reload shows no secret and makes no key
    assert browser.find_element(By.ID, "secret-gone")

    # revoke the new one, after a confirmation page
    browser.get(hv.url + "/admin/orgs/widgets")
    submit(browser, "tr:not(.revoked) form[action*='/revoke']")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Revoke key deploy?"
    shot(browser, "03c-revoke-confirm")
    submit(browser, "form")
    assert requests.get(f"{hv.url}/repos/widgets/names", headers={"authorization": new_secret}).status_code == 401

    # retire a release from its package page
    browser.get(hv.url + "/admin/orgs/acme/packages/hello")
    shot(browser, "04-package")
    Select(browser.find_element(By.NAME, "reason")).select_by_visible_text("deprecated")
    browser.find_element(By.NAME, "message").send_keys("use hello 2")
    submit(browser, "form[action$='/retire']")
    assert "Retired (deprecated)" in browser.find_element(By.CLASS_NAME, "warning").text
    assert hv.registry_package("hello")["releases"][0]["retired"] == {"reason": "deprecated",
                                                                      "message": "use hello 2"}

    browser.get(hv.url + "/admin/audit")
    rows = browser.find_element(By.CSS_SELECTOR, "table.audit").text
    assert "key.rotate" in rows and "release.retire" in rows and "organization.create" in rows
    shot(browser, "05-audit-log")
    browser.get(hv.url + "/admin/keys")
    shot(browser, "06-my-keys")


def test_forged_cross_site_post_is_refused_in_the_browser(hv, browser):
    """A page elsewhere cannot post into the admin UI: no CSRF token, no change."""
    from selenium.webdriver.common.by import By

    browser.get(hv.url + "/admin/login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-password")
    submit(browser, "form")
    browser.execute_script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/admin/orgs';"
        "const i = document.createElement('input'); i.name = 'name'; i.value = 'forged'; f.appendChild(i);"
        "document.body.appendChild(f); f.submit();")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda d: "CSRF" in d.find_element(By.TAG_NAME, "body").text)
    assert "CSRF token missing or invalid" in browser.find_element(By.TAG_NAME, "body").text
    browser.get(hv.url + "/admin/")
    assert "forged" not in browser.find_element(By.TAG_NAME, "table").text


def test_webhook_created_delivered_and_redelivered_in_chromium(hv, browser):
    from selenium.webdriver.common.by import By

    from appliance.ops.delivery import DeliveryWorker
    from tests.webhook_receiver import Receiver

    hv.runtime.config = hv.runtime.config.with_updates(webhook_retry_seconds=0.02, webhook_retry_max_seconds=0.1)
    browser.get(hv.url + "/admin/login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-password")
    submit(browser, "form")
    with Receiver() as rx:
        browser.get(hv.url + "/admin/orgs/acme")
        browser.find_element(By.LINK_TEXT, "Webhooks").click()
        browser.find_element(By.NAME, "url").send_keys(rx.url)
        submit(browser, "form[action$='/admin/orgs/acme/webhooks']")
        rx.secret = browser.find_element(By.ID, "secret").text
        assert re.fullmatch(r"[0-9a-f]{64}", rx.secret)
        shot(browser, "07-webhook-secret")

        worker = DeliveryWorker(hv.runtime).start()
        try:
            assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
            first = rx.wait_for(lambda r: len(r) == 1, what="the publish event")[0]
            assert first["signed"] and first["event"]["type"] == "release.publish"
            browser.find_element(By.LINK_TEXT, "Deliveries of this webhook").click()
            for _ in range(50):  # the delivery is recorded just after the receiver answered
                if browser.find_elements(By.CSS_SELECTOR, "tr.delivery-delivered"):
                    break
                browser.refresh()
            assert "delivered" in browser.find_element(By.CSS_SELECTOR, "tr.delivery-delivered td.state").text
            shot(browser, "08-webhook-deliveries")
            submit(browser, "form[action$='/redeliver']")
            assert "queued for delivery again" in browser.find_element(By.CLASS_NAME, "flash").text
            again = rx.wait_for(lambda r: len(r) == 2, what="the redelivery")[1]
            assert again["signed"] and again["event"]["id"] == first["event"]["id"]
        finally:
            worker.stop()


def test_offboarding_in_chromium(hv, browser):
    """Issue 13.1: the users page, a user's page, the password reset confirmation, deleting a user."""
    from selenium.webdriver.common.by import By

    from appliance import accounts, keys, orgs

    leaver = accounts.create_user("leaver", "leaver-password", rounds=4)
    orgs.add_member(hv.org, leaver, "write")
    _k, secret = keys.create(hv.runtime.app_secret, "laptop", [["repository", "acme"]], user=leaver)
    browser.get(hv.url + "/admin/login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-password")
    submit(browser, "form")
    browser.get(hv.url + "/admin/users")
    row = browser.find_element(By.XPATH, "//table[@id='users']//tr[td/a[text()='leaver']]").text
    assert "active" in row and "never" in row and "acme (write)" in row
    shot(browser, "13-users")
    browser.find_element(By.LINK_TEXT, "leaver").click()
    browser.find_element(By.LINK_TEXT, "Reset password…").click()
    assert "Reset the password of leaver?" in browser.find_element(By.TAG_NAME, "h1").text
    shot(browser, "13-reset-password-confirm")
    browser.get(hv.url + "/admin/users/leaver")
    shot(browser, "13-user")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/delete'] input[name=confirm]").send_keys("leaver")
    submit(browser, "form[action$='/delete']")
    assert "User leaver deleted" in browser.find_element(By.CLASS_NAME, "flash").text
    assert requests.get(f"{hv.url}/repos/acme/names", headers={"authorization": secret}).status_code == 401


def test_audit_log_wraps_long_details_and_pages_in_chromium(hv, browser):
    """Issue 13.3: a long detail wraps inside its column instead of pushing the page sideways."""
    from selenium.webdriver.common.by import By

    from appliance import audit
    from appliance.db import write_tx

    with write_tx():
        audit.record(audit.CLI, "release.retire", organization="acme", target="hello 0.1.0",
                     message="x" * 400, reason="security-" * 30)
    browser.set_window_size(1280, 900)
    browser.get(hv.url + "/admin/login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-password")
    submit(browser, "form")
    browser.get(hv.url + "/admin/audit?org=acme")
    assert "release.retire" in browser.find_element(By.CSS_SELECTOR, "table.audit").text
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    shot(browser, "13-audit-log")
    browser.find_element(By.NAME, "action").send_keys("release.retire")
    submit(browser, "#audit-filter")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.audit tbody tr")
    assert len(rows) == 1 and "CSV" in browser.find_element(By.ID, "export-csv").text


def test_a_refused_form_keeps_its_input_in_chromium(hv, browser):
    """Issue 13.4: the error is next to the field, on the same page, with what was typed."""
    from selenium.webdriver.common.by import By

    browser.get(hv.url + "/admin/login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-password")
    submit(browser, "form")
    browser.get(hv.url + "/admin/orgs/acme")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/members'] input[name=username]").send_keys("nobody")
    submit(browser, "form[action$='/members']")
    assert browser.find_element(By.ID, "error-username").text == "There is no user named nobody."
    typed = browser.find_element(By.CSS_SELECTOR, "form[action$='/members'] input[name=username]")
    assert typed.get_attribute("value") == "nobody"
    browser.execute_script("arguments[0].scrollIntoView()", typed)
    shot(browser, "13-form-error-inline")
