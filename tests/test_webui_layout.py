"""Issue 13.5 in real headless Chromium: links in the theme's colours, and no admin page scrolls
sideways at 1280 px or at a 390 px phone width, with the longest names the appliance accepts.

Every page is screenshotted at both widths to test-artifacts/layout-PAGE-WIDTH.png.
"""

import base64
import os

import pytest

from appliance import accounts, audit, keys, orgs, packages, registry_builder
from appliance.db import write_tx
from appliance.ops import webhooks
from tests.conftest import ARTIFACTS
from tests.driver import erlang_package
from tests.test_webui_browser import browser, pytestmark, submit  # noqa: F401  (the fixture, the chromium skip)

ACCENT, ACCENT_HOVER = "rgb(75, 46, 131)", "rgb(122, 79, 208)"  # --accent, --accent-hover in hexvault.css
BROWSER_BLUE, BROWSER_PURPLE = "rgb(0, 0, 238)", "rgb(85, 26, 139)"
WIDTHS = (1280, 390)

LONG_ORG = "org_" + "o" * 36  # 40: orgs.ORG_NAME_RE's longest
LONG_USER = "user." + "u" * 35  # 40: accounts.USERNAME_RE's longest
LONG_PACKAGE = "pkg_" + "p" * 96  # 100: protocol.names.MAX_NAME_LENGTH
LONG_VERSION = "1.0.0-" + "r" * 60
LONG_KEY = "key-" + "k" * 76  # 80: keys.KEY_NAME_RE's longest


def _login(driver, url, username="admin", password="admin-password"):
    from selenium.webdriver.common.by import By

    driver.get(url + "/admin/login")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    submit(driver, "form")


def full_page_shot(driver, name):
    """The whole page, not only the window: what a reader scrolls through."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    height = (metrics.get("cssContentSize") or metrics["contentSize"])["height"]
    # Beyond the viewport the page is laid out without a scroll bar: the window's whole width.
    width = driver.execute_script("return window.innerWidth")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": {
        "x": 0, "y": 0, "width": width, "height": min(height, 8000), "scale": 1}})
    with open(os.path.join(ARTIFACTS, f"{name}.png"), "wb") as fh:
        fh.write(base64.b64decode(shot["data"]))


@pytest.fixture
def long_world(hv):
    """An organization, user, package, keys, webhook and audit rows with the longest names and
    details the appliance accepts, so that anything that does not wrap pushes a page sideways."""
    rt = hv.runtime
    org = orgs.create(LONG_ORG)
    registry_builder.ensure_index(rt, org)
    orgs.add_member(org, hv.admin, "admin")
    user = accounts.create_user(LONG_USER, "long-user-password", rounds=4,
                                email="e" * 60 + "@" + "d" * 60 + ".example", full_name="Maximiliana " + "Longname" * 8)
    orgs.add_member(org, user, "write")
    orgs.add_member(hv.org, user, "read")
    readme = (f"# {LONG_PACKAGE}\n\n" + "averyverylongwordwithoutanybreak" * 8 + "\n\n    x = "
              + "f(" * 60 + ")" * 60 + "\n")
    hexpm_dep = "hexpm_dependency_" + "z" * 83
    for version in (LONG_VERSION, "1.0.1"):
        data = erlang_package(LONG_PACKAGE, version, readme=readme, description="d" * 300, requirements=[
            dict(name=hexpm_dep, app=hexpm_dep, requirement=">= 0.0.0 and < 99.0.0-" + "r" * 60, optional=True,
                 repository="hexpm")])
        assert hv.publish(data, org=LONG_ORG).status_code == 201
    packages.retire(rt, org, LONG_PACKAGE, LONG_VERSION, "security", "m" * 140)
    dependent = "dependent_" + "q" * 90
    assert hv.publish(erlang_package(dependent, "2.0.0", requirements=[dict(
        name=LONG_PACKAGE, app=LONG_PACKAGE, requirement=">= 1.0.0-" + "r" * 60, optional=False)]),
        org=LONG_ORG).status_code == 201
    packages.retire(rt, org, dependent, "2.0.0", "deprecated")  # a retired latest release in the lists
    for name in (LONG_KEY, "ci-" + "c" * 77):
        keys.create(rt.app_secret, name, [["repository", LONG_ORG], ["api", "write"]], organization=org)
    keys.create(rt.app_secret, LONG_KEY, [["repository", LONG_ORG], ["api", "write"]], user=hv.admin)
    hook, _secret = webhooks.create(rt, org, "https://ci.corp.example/hooks/" + "h" * 400)
    with write_tx():
        audit.record(audit.CLI, "release.retire", organization=LONG_ORG, target=f"{LONG_PACKAGE} {LONG_VERSION}",
                     message="x" * 400, reason="security-" * 30)
    return dict(org=org, user=user, hook=hook, dependent=dependent)


def pages(world):
    org, hook = LONG_ORG, world["hook"]
    return {
        "organizations": "/admin/",
        "org": f"/admin/orgs/{org}",
        "org-setup": f"/admin/orgs/{org}/setup",
        "packages": f"/admin/orgs/{org}/packages",
        "package": f"/admin/orgs/{org}/packages/{LONG_PACKAGE}/{LONG_VERSION}",
        "package-dependent": f"/admin/orgs/{org}/packages/{world['dependent']}",
        "webhooks": f"/admin/orgs/{org}/webhooks",
        "webhook": f"/admin/orgs/{org}/webhooks/{hook.id}",
        "users": "/admin/users",
        "user": f"/admin/users/{LONG_USER}",
        "user-password": f"/admin/users/{LONG_USER}/password",
        "user-access": f"/admin/users/{LONG_USER}/access",
        "keys": "/admin/keys",
        "audit": "/admin/audit",
        "account": "/admin/account",
        "two-factor": "/admin/account/2fa",
        "signing-key": "/admin/signing-key",
        "device": "/admin/device",
        "not-found": f"/admin/orgs/{org}/packages/{LONG_PACKAGE}/9.9.9-{'n' * 60}",
    }


# What sticks out past the right edge, to name in a failure.
OVERFLOW_JS = """
const limit = document.documentElement.clientWidth;
const wide = [];
for (const el of document.body.querySelectorAll('*')) {
  if (el.closest('.scroll-x, pre')) continue;  // these scroll inside their own box
  const right = el.getBoundingClientRect().right;
  if (right > limit + 0.5) wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '') + ' ' + Math.round(right));
}
return [document.documentElement.scrollWidth, limit, window.innerWidth, wide.slice(0, 5)];
"""


def test_no_admin_page_scrolls_sideways_at_1280_px_or_at_a_390_px_phone_width(hv, long_world, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    os.makedirs(ARTIFACTS, exist_ok=True)
    _login(browser, hv.url)
    failures = []
    for width in WIDTHS:
        browser.set_window_size(width, 900)
        assert browser.execute_script("return window.innerWidth") == width
        for name, path in pages(long_world).items():
            browser.get(hv.url + path)
            WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
            assert "/admin/login" not in browser.current_url, path
            scroll_width, client_width, inner_width, wide = browser.execute_script(OVERFLOW_JS)
            if not (scroll_width <= client_width <= inner_width):
                failures.append(f"{name} at {width} px: scrollWidth {scroll_width} > {client_width}: {wide}")
            full_page_shot(browser, f"layout-{name}-{width}")
    assert failures == [], "\n".join(failures)


def test_links_take_the_theme_colours_visited_or_hovered(hv, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    _login(browser, hv.url)
    browser.set_window_size(1280, 900)
    browser.get(hv.url + "/admin/orgs/acme/packages/hello")
    browser.get(hv.url + "/admin/orgs/acme")  # the package's link is a visited one now
    link = browser.find_element(By.CSS_SELECTOR, "#org-packages a[href$='/packages/hello']")
    color = browser.execute_script("return getComputedStyle(arguments[0]).color", link)
    assert color == ACCENT and color not in (BROWSER_BLUE, BROWSER_PURPLE)
    # Browsers never tell scripts a link is visited (getComputedStyle answers as if it were
    # not), so the rule itself is what can be checked: visited links keep the theme's colour.
    visited = browser.execute_script("""
        const rules = [];
        for (const sheet of document.styleSheets) for (const rule of sheet.cssRules)
          if (rule.selectorText && rule.selectorText.split(',').some(s => s.trim() === 'a:visited')) rules.push(rule.style.color);
        return rules;""")
    assert visited == ["var(--accent)"]
    ActionChains(browser).move_to_element(link).perform()
    assert browser.execute_script("return getComputedStyle(arguments[0]).color", link) == ACCENT_HOVER
    # Header links stay white on the theme's bar.
    nav = browser.find_element(By.CSS_SELECTOR, "header.top nav a")
    assert browser.execute_script("return getComputedStyle(arguments[0]).color", nav) == "rgb(255, 255, 255)"
