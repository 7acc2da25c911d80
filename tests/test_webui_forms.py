"""Issue 13.4: a refused form comes back on its own page with what was typed and a plain
sentence next to the field, never a bare error page."""

import html
import os
import re

from appliance import accounts, keys, orgs
from tests.conftest import ARTIFACTS
from tests.test_webui_browser import browser, submit  # noqa: F401  (the Chromium fixture)
from tests.test_webui_browser import pytestmark as needs_chromium
from tests.webclient import WebSession


def _admin(hv):
    session = WebSession(hv.url)
    assert session.login().status_code == 200
    return session


def _field_error(page, field):
    match = re.search(rf'<p class="field-error" id="error-{field}">([^<]*)</p>', page)
    return html.unescape(match.group(1)) if match else None


def test_a_duplicate_organization_name_is_shown_next_to_the_field_with_what_was_typed(hv):
    web = _admin(hv)
    page = web.post("/admin/orgs", {"name": "acme"})
    assert page.status_code == 409 and "<h1>Organizations</h1>" in page.text
    assert _field_error(page.text, "name") == "The name has already been taken."
    assert 'name="name" placeholder="name (a-z, 0-9, _)" required value="acme"' in page.text
    bad = web.post("/admin/orgs", {"name": "No Good"})
    assert bad.status_code == 422 and 'value="No Good"' in bad.text
    assert _field_error(bad.text, "name").startswith("Use 3-40 characters")


def test_a_new_user_form_keeps_its_input_but_never_the_password(hv):
    web = _admin(hv)
    short = web.post("/admin/users", {"username": "newbie", "email": "newbie@corp", "password": "short"})
    assert short.status_code == 422 and "<h1>Users</h1>" in short.text
    assert _field_error(short.text, "password") == "The password must be at least 8 characters."
    assert 'value="newbie"' in short.text and 'value="newbie@corp"' in short.text
    assert "short" not in re.sub(r'id="error-password">[^<]*', "", short.text)
    taken = web.post("/admin/users", {"username": "admin", "password": "long-enough-password"})
    assert taken.status_code == 409 and _field_error(taken.text, "username") == "The username has already been taken."
    assert "long-enough-password" not in taken.text


def test_adding_an_unknown_user_or_a_member_twice_says_so_on_the_organization_page(hv):
    web = _admin(hv)
    unknown = web.post("/admin/orgs/acme/members", {"username": "nobody", "role": "read"})
    assert unknown.status_code == 422 and "<h1>acme</h1>" in unknown.text
    assert _field_error(unknown.text, "username") == "There is no user named nobody."
    assert 'placeholder="username" required value="nobody"' in unknown.text
    twice = web.post("/admin/orgs/acme/members", {"username": "admin", "role": "read"})
    assert twice.status_code == 409 and _field_error(twice.text, "username") == "admin is already a member of acme."
    assert orgs.role_of(accounts.get_user("admin"), hv.org) == "admin"


def test_key_forms_explain_a_refusal_next_to_the_fields(hv):
    web = _admin(hv)
    none = web.post("/admin/orgs/acme/keys", {"name": "ci"})
    assert none.status_code == 422 and _field_error(none.text, "permissions") == "Choose at least one permission."
    assert 'placeholder="key name, e.g. ci-read" required value="ci"' in none.text
    bad_name = web.post("/admin/keys", {"name": "has space", "api": "read"})
    assert bad_name.status_code == 422 and "<h1>My keys</h1>" in bad_name.text
    assert _field_error(bad_name.text, "name") == "Use 1-80 letters, digits or _ - . @ :." and 'value="has space"' in bad_name.text
    orgs.create("beta")
    refused = web.post("/admin/keys", {"name": "sneaky", "repository": "nope"})
    assert refused.status_code == 403 and "a key never reads more than its owner" in _field_error(refused.text, "permissions")
    assert keys.list_for(user=hv.admin, include_revoked=True)[0].name == "admin-write"


# -- every other form (issue 13.4): a refusal re-renders the form's own page ------------------

def _refused_on(page, status, heading):
    """``page`` is the form's own page (its heading), not the generic error page."""
    assert page.status_code == status, page.text
    assert heading in page.text and 'class="error-message"' not in page.text


def _selected(page, value):
    return re.search(rf'<option(?: value="{re.escape(value)}")? selected>', page) is not None


def _org_admin(hv, org_name="beta"):
    """A user who administers ``org_name`` alone (no appliance administrator)."""
    user = accounts.create_user("orgadmin", "orgadmin-password", rounds=4)
    org = orgs.create(org_name)
    orgs.add_member(org, user, "admin")
    web = WebSession(hv.url)
    assert web.login("orgadmin", "orgadmin-password").status_code == 200
    return web, org, user


def test_demoting_the_last_admin_says_why_next_to_that_member_with_the_role_chosen(hv):
    web, beta, user = _org_admin(hv)
    demoted = web.post("/admin/orgs/beta/members/orgadmin/role", {"role": "write"})
    _refused_on(demoted, 422, "<h1>beta</h1>")
    assert _field_error(demoted.text, "member-orgadmin") == \
        "You are the last admin of beta: make someone else an admin first."
    assert _selected(demoted.text, "write") and orgs.role_of(user, beta) == "admin"
    bad = web.post("/admin/orgs/beta/members/orgadmin/role", {"role": "owner"})
    _refused_on(bad, 422, "<h1>beta</h1>")
    assert _field_error(bad.text, "member-orgadmin") == "The role must be one of read, write, admin."


def test_removing_the_last_admin_or_a_member_gone_meanwhile_says_so_on_the_organization_page(hv):
    web, beta, user = _org_admin(hv)
    removed = web.post("/admin/orgs/beta/members/orgadmin/remove")
    _refused_on(removed, 422, "<h1>beta</h1>")
    assert _field_error(removed.text, "member-orgadmin") == \
        "You are the last admin of beta: make someone else an admin first."
    orgs.add_member(beta, accounts.create_user("gone", "gone-password", rounds=4), "read")
    orgs.remove_member(beta, accounts.get_user("gone"))  # in another tab, say
    stale = web.post("/admin/orgs/beta/members/gone/remove")
    _refused_on(stale, 404, "<h1>beta</h1>")
    assert _field_error(stale.text, "members") == "gone is not a member of beta."


def test_deleting_an_organization_with_its_name_typed_wrong_keeps_what_was_typed(hv):
    from tests.driver import erlang_package

    assert hv.publish(erlang_package("thing", "1.0.0")).status_code == 201
    web = _admin(hv)
    refused = web.post("/admin/orgs/acme/delete", {"confirm": "acm"})
    _refused_on(refused, 422, "<h1>acme</h1>")
    assert _field_error(refused.text, "confirm") == \
        "The organization acme holds 1 package(s); type its name to delete it with them."
    assert 'name="confirm" placeholder="acme" autocomplete="off" required value="acm"' in refused.text
    assert [o.name for o in orgs.list_all()] == ["acme"]


def test_rotating_the_signing_key_without_typing_rotate_says_so_under_the_field(hv):
    from appliance.models import SigningKey

    web = _admin(hv)
    before = SigningKey.current().fingerprint
    refused = web.post("/admin/signing-key", {"confirm": "yes"})
    _refused_on(refused, 422, "<h1>Registry signing key</h1>")
    assert _field_error(refused.text, "confirm").startswith("Type rotate to confirm")
    assert 'placeholder="type rotate to confirm" required value="yes"' in refused.text
    assert SigningKey.current().fingerprint == before


def test_an_audit_filter_with_a_date_that_is_no_date_comes_back_with_what_was_typed(hv):
    web = _admin(hv)
    page = web.get("/admin/audit", params={"user": "admin", "since": "yesterday"})
    _refused_on(page, 422, "<h1>Audit log</h1>")
    assert _field_error(page.text, "since") == "Write the date as YYYY-MM-DD, e.g. 2026-12-03."
    assert 'name="since" type="date" value="yesterday"' in page.text and 'name="user" value="admin"' in page.text


def test_a_password_reset_that_is_too_short_stays_on_its_page_and_is_not_echoed(hv):
    accounts.create_user("bob", "bob-password", rounds=4)
    web = _admin(hv)
    short = web.post("/admin/users/bob/password", {"password": "s3cr"})
    _refused_on(short, 422, "<h1>Reset the password of bob?</h1>")
    assert _field_error(short.text, "password") == "The password must be at least 8 characters."
    assert "s3cr" not in short.text
    assert accounts.check_login("bob", "bob-password", rounds=4)


def test_disabling_yourself_is_refused_next_to_the_button_on_the_page_it_was_pressed(hv):
    web = _admin(hv)
    listed = web.post("/admin/users/admin/disabled", {"disabled": "1", "from": "users"})
    _refused_on(listed, 422, "<h1>Users</h1>")
    assert _field_error(listed.text, "user-admin") == "You cannot disable your own account."
    own_page = web.post("/admin/users/admin/disabled", {"disabled": "1"})
    _refused_on(own_page, 422, "<h1>admin</h1>")
    assert _field_error(own_page.text, "disabled") == "You cannot disable your own account."
    assert accounts.get_user("admin").disabled_at is None


def test_deleting_a_user_says_what_is_wrong_next_to_the_confirmation_and_keeps_it(hv):
    accounts.create_user("leaver", "leaver-password", rounds=4)
    web = _admin(hv)
    typo = web.post("/admin/users/leaver/delete", {"confirm": "leavr"})
    _refused_on(typo, 422, "<h1>leaver</h1>")
    assert _field_error(typo.text, "confirm") == "Type leaver to confirm the deletion."
    assert 'name="confirm" autocomplete="off" required value="leavr"' in typo.text
    own = web.post("/admin/users/admin/delete", {"confirm": "admin"})
    _refused_on(own, 422, "<h1>admin</h1>")
    assert _field_error(own.text, "confirm") == "You cannot delete your own account."
    assert accounts.get_user("leaver") and accounts.get_user("admin")


def test_rotating_a_key_from_a_stale_page_says_so_in_its_row(hv):
    web = _admin(hv)
    key = keys.get("acme-read", organization=hv.org)
    assert web.post(f"/admin/keys/{key.id}/rotate", {"grace_seconds": "3600"}, allow_redirects=False).status_code == 303
    again = web.post(f"/admin/keys/{key.id}/rotate", {"grace_seconds": "3600"})  # the old page, pressed again
    _refused_on(again, 409, "<h1>acme</h1>")
    assert _field_error(again.text, f"key-{key.id}") == \
        f"Key acme-read-rotated-{key.id} was already rotated or revoked; rotate its replacement instead."
    mine = keys.get("admin-write", user=hv.admin)
    made_up = web.post(f"/admin/keys/{mine.id}/rotate", {"grace_seconds": "12345"})
    _refused_on(made_up, 422, "<h1>My keys</h1>")
    assert _field_error(made_up.text, f"key-{mine.id}") == "The grace period is not one of the offered choices."


def test_a_webhook_url_refused_or_already_there_comes_back_with_the_url_typed(hv):
    web = _admin(hv)
    own = f"{hv.url}/hook"
    refused = web.post("/admin/orgs/acme/webhooks", {"url": own})
    _refused_on(refused, 422, "New webhook")
    assert _field_error(refused.text, "url") == \
        "The URL points at this Hexvault server itself; give the address of the receiving service."
    assert f'placeholder="https://ci.corp/hooks/hexvault" required value="{own}"' in refused.text
    assert web.post("/admin/orgs/acme/webhooks", {"url": "http://ci.corp.example/hook"}).status_code == 200
    twice = web.post("/admin/orgs/acme/webhooks", {"url": "http://ci.corp.example/hook"})
    _refused_on(twice, 409, "New webhook")
    assert _field_error(twice.text, "url") == "The URL is already a webhook of this organization."
    assert 'value="http://ci.corp.example/hook"' in twice.text


def test_retiring_with_a_message_too_short_keeps_the_reason_and_the_message(hv):
    from tests.driver import erlang_package

    assert hv.publish(erlang_package("thing", "1.0.0")).status_code == 201
    web = _admin(hv)
    short = web.post("/admin/orgs/acme/packages/thing/1.0.0/retire", {"reason": "security", "message": "no"})
    _refused_on(short, 422, "/ thing <span class=\"version\">1.0.0</span></h1>")
    assert _field_error(short.text, "message") == "The message must be between 3 and 140 characters."
    assert 'placeholder="3–140 characters" value="no"' in short.text and _selected(short.text, "security")


def test_changing_your_password_says_which_field_is_wrong_and_echoes_no_password(hv):
    web = _admin(hv)
    wrong = web.post("/admin/account", {"current_password": "not-my-password", "new_password": "new-password-1",
                                        "confirm_password": "new-password-1"})
    _refused_on(wrong, 422, "<h2>Change password</h2>")
    assert _field_error(wrong.text, "current_password") == "The current password is wrong."
    mismatch = web.post("/admin/account", {"current_password": "admin-password", "new_password": "new-password-1",
                                           "confirm_password": "new-password-2"})
    assert _field_error(mismatch.text, "confirm_password") == "The new passwords do not match."
    short = web.post("/admin/account", {"current_password": "admin-password", "new_password": "tiny",
                                        "confirm_password": "tiny"})
    _refused_on(short, 422, "<h2>Change password</h2>")
    assert _field_error(short.text, "new_password") == "The password must be at least 8 characters."
    for page in (wrong, mismatch, short):
        assert not any(secret in page.text for secret in ("not-my-password", "new-password-", "admin-password",
                                                            'value="tiny"'))
    assert accounts.check_login("admin", "admin-password", rounds=4)


def test_a_wrong_login_says_so_under_the_password_and_keeps_the_username(hv):
    web = WebSession(hv.url)
    web.get("/admin/login")
    wrong = web.post("/admin/login", {"username": "admin", "password": "guessed-password"})
    _refused_on(wrong, 401, "<h1>Log in</h1>")
    assert _field_error(wrong.text, "password") == "Invalid username and password combination."
    assert 'name="username" value="admin"' in wrong.text and "guessed-password" not in wrong.text
    for _ in range(5):
        locked = web.post("/admin/login", {"username": "admin", "password": "guessed-password"})
    _refused_on(locked, 429, "<h1>Log in</h1>")
    assert _field_error(locked.text, "password").startswith("Too many failed logins; try again in")


def test_two_factor_codes_refused_are_said_on_their_own_page_and_not_echoed(hv):
    from tests.test_totp import SECRET_RE, enrol

    web = _admin(hv)
    secret = SECRET_RE.search(web.get("/admin/account/2fa").text).group(1)
    wrong = web.post("/admin/account/2fa/enable", {"code": "000000"})
    _refused_on(wrong, 422, "<h1>Two-factor authentication</h1>")
    assert _field_error(wrong.text, "code") == \
        "That code is not the one your app shows now; check the phone's clock and try again."
    assert SECRET_RE.search(wrong.text).group(1) == secret and 'value="000000"' not in wrong.text  # the same QR code
    enrol(web)
    off = web.post("/admin/account/2fa/disable", {"code": "000000"})
    _refused_on(off, 422, "<h1>Two-factor authentication</h1>")
    assert _field_error(off.text, "code") == "That two-factor code is wrong or was already used."
    login = WebSession(hv.url)
    login.login()
    code = login.post("/admin/login/code", {"code": "000000"})
    _refused_on(code, 401, "<h1>Two-factor code</h1>")
    assert _field_error(code.text, "code") == "That two-factor code is wrong or was already used."


def test_a_device_login_decided_elsewhere_is_said_next_to_the_code(hv):
    from tests.test_device_login import start

    web = _admin(hv)
    user_code = start(hv).term["user_code"]
    assert web.post("/admin/device", {"user_code": user_code, "decision": "deny"}, allow_redirects=False) \
        .status_code == 302
    again = web.post("/admin/device", {"user_code": user_code, "decision": "approve"})
    _refused_on(again, 404, "<h1>Device login</h1>")
    assert _field_error(again.text, "user_code").startswith("No pending device login has that code.")
    assert f'name="user_code" value="{user_code}"' in again.text
    other = start(hv).term["user_code"]
    made_up = web.post("/admin/device", {"user_code": other, "decision": "maybe"})
    _refused_on(made_up, 422, "<h1>Device login</h1>")
    assert _field_error(made_up.text, "decision") == "The decision must be approve or deny."
    assert 'class="client-name"' in made_up.text  # still pending: the buttons are there again


def test_revoking_a_device_token_that_ended_meanwhile_says_so_under_the_list(hv):
    from appliance.identity import device
    from tests.test_device_login import logged_in

    logged_in(hv)
    grant = device.grants_of(hv.admin)[0]
    device.revoke(grant)  # on another page, say
    web = _admin(hv)
    own = web.post(f"/admin/account/tokens/{grant.id}/revoke")
    _refused_on(own, 404, "<h2>Device tokens</h2>")
    assert _field_error(own.text, "tokens").startswith("That token was already revoked or has expired")
    theirs = web.post(f"/admin/users/admin/tokens/{grant.id}/revoke")
    _refused_on(theirs, 404, "<h1>admin: sessions and tokens</h1>")
    assert _field_error(theirs.text, "tokens").startswith("That token was already revoked or has expired")


@needs_chromium
def test_two_refused_forms_in_chromium_show_the_reason_by_the_field_with_the_input_kept(hv, browser):  # noqa: F811
    """A real browser submits two forms it lets through (no HTML validation stops them) that the
    server refuses; the reason is shown right under what was pressed, and what was chosen stays."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _web, _beta, _user = _org_admin(hv)
    browser.get(hv.url + "/admin/login")
    browser.find_element(By.NAME, "username").send_keys("orgadmin")
    browser.find_element(By.NAME, "password").send_keys("orgadmin-password")
    submit(browser, "form")
    browser.get(hv.url + "/admin/orgs/beta")
    row_form = "form[action$='/members/orgadmin/role']"
    Select(browser.find_element(By.CSS_SELECTOR, f"{row_form} select")).select_by_visible_text("read")
    submit(browser, row_form)
    error = browser.find_element(By.ID, "error-member-orgadmin")
    assert error.is_displayed() and error.text == "You are the last admin of beta: make someone else an admin first."
    select = browser.find_element(By.CSS_SELECTOR, f"{row_form} select")
    assert Select(select).first_selected_option.text == "read"
    _close_below(error, browser.find_element(By.CSS_SELECTOR, "form[action$='/members/orgadmin/remove'] button"))
    browser.save_screenshot(os.path.join(ARTIFACTS, "forms-01-last-admin-demoted.png"))

    browser.get(hv.url + "/admin/orgs/beta/webhooks")
    own = f"{hv.url}/hook"
    browser.find_element(By.NAME, "url").send_keys(own)
    submit(browser, "form[action$='/webhooks']")
    error = browser.find_element(By.ID, "error-url")
    assert error.is_displayed() and error.text.startswith("The URL points at this Hexvault server itself")
    field = browser.find_element(By.NAME, "url")
    assert field.get_attribute("value") == own
    _close_below(error, field)
    browser.save_screenshot(os.path.join(ARTIFACTS, "forms-02-webhook-refused.png"))
    assert orgs.role_of(accounts.get_user("orgadmin"), orgs.get("beta")) == "admin"


def _close_below(error, control):
    """The error starts right under (or beside) the control it is about, not somewhere else on the page."""
    gap = error.location["y"] - (control.location["y"] + control.size["height"])
    assert -control.size["height"] <= gap <= 40, (error.location, control.location, control.size)
