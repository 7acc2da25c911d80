"""Issue 13.4: a refused form comes back on its own page with what was typed and a plain
sentence next to the field, never a bare error page."""

import re

from appliance import accounts, keys, orgs
from tests.webclient import WebSession


def _admin(hv):
    session = WebSession(hv.url)
    assert session.login().status_code == 200
    return session


def _field_error(page, field):
    match = re.search(rf'<p class="field-error" id="error-{field}">([^<]*)</p>', page)
    return match.group(1) if match else None


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
