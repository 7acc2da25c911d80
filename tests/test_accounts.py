"""Accounts: the password and username rules on every path that sets them (the service, the
admin's users page, one's own account page), and disabled users' logins."""

import pytest

from appliance import accounts
from appliance.errors import Invalid, Unauthenticated
from tests.webclient import WebSession

TOO_SHORT = "seven77"  # MIN_PASSWORD - 1 characters
TOO_LONG = "\u00e9" * 37  # 74 bytes in UTF-8: bcrypt would silently ignore the last ones


@pytest.mark.parametrize("password,field_message", [
    (TOO_SHORT, "must be at least 8 characters"), (TOO_LONG, "must be at most 72 bytes"), (None, "must be at least 8")])
def test_passwords_outside_the_limits_are_refused_everywhere(runtime, password, field_message):
    with pytest.raises(Invalid) as refused:
        accounts.create_user("carol", password, rounds=4)
    assert field_message in refused.value.errors["password"]
    user = accounts.create_user("carol", "carol-password", rounds=4)
    with pytest.raises(Invalid):
        accounts.set_password(user, password, rounds=4)
    assert accounts.check_login("carol", "carol-password", rounds=4).id == user.id


@pytest.mark.parametrize("username", ["ab", "a" * 41, "Carol Smith", "carol/../x", "carol\n", "", None])
def test_usernames_outside_the_rules_are_refused(runtime, username):
    with pytest.raises(Invalid) as refused:
        accounts.create_user(username, "carol-password", rounds=4)
    assert "username" in refused.value.errors
    assert accounts.list_users() == []


def test_the_forms_apply_the_same_rules(hv):
    admin = WebSession(hv.url)
    assert admin.login().status_code == 200
    assert admin.post("/admin/users", {"username": "carol", "password": TOO_SHORT}).status_code == 422
    assert admin.post("/admin/users", {"username": "carol", "password": TOO_LONG}).status_code == 422
    assert [u.username for u in accounts.list_users()] == ["admin"]
    assert admin.post("/admin/users/admin/password", {"password": TOO_SHORT}).status_code == 422
    changed = admin.post("/admin/account", {"current_password": "admin-password", "new_password": TOO_SHORT,
                                            "confirm_password": TOO_SHORT})
    assert changed.status_code == 422
    assert accounts.check_login("admin", "admin-password", rounds=4)


def test_a_disabled_user_cannot_log_in_with_the_right_password(runtime):
    user = accounts.create_user("carol", "carol-password", rounds=4)
    accounts.set_disabled(user, True)
    with pytest.raises(Unauthenticated, match="invalid username and password combination"):
        accounts.check_login("carol", "carol-password", rounds=4)
    accounts.set_disabled(user, False)
    assert accounts.check_login("carol", "carol-password", rounds=4).id == user.id
