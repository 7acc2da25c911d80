"""Password guessing is limited the same way through the login form and through HTTP Basic."""

import requests

from appliance import accounts
from appliance.loginlimit import MAX_FAILURES, WINDOW, FailedLogins, keys_for
from tests.webclient import WebSession


def test_basic_auth_passwords_are_rate_limited_like_the_login_form(hv):
    url = f"{hv.url}/api/users/me"
    for attempt in range(MAX_FAILURES):
        assert requests.get(url, auth=("admin", f"wrong-{attempt}"), timeout=10).status_code == 401
    blocked = requests.get(url, auth=("admin", "admin-password"), timeout=10)
    assert blocked.status_code == 429 and "too many failed logins" in blocked.text.lower()
    # The same address is blocked for other accounts too, and on the repository fast path.
    accounts.create_user("bob", "bob-password-1", rounds=4)
    assert requests.get(url, auth=("bob", "bob-password-1"), timeout=10).status_code == 429
    assert requests.get(f"{hv.url}/repos/acme/names", auth=("bob", "bob-password-1"), timeout=10).status_code == 429
    # ...and in the admin UI, which shares the tracker.
    assert WebSession(hv.url).login().status_code == 429
    # Keys are not passwords: a repository key still works from that address.
    assert hv.repo("names").status_code == 200


def test_a_correct_password_clears_the_account_and_trackers_forget():
    now = [1000.0]
    limits = FailedLogins(clock=lambda: now[0])
    keys = keys_for("Admin ", "10.0.0.1")
    assert keys == ("user:admin", "ip:10.0.0.1")
    for _ in range(MAX_FAILURES - 1):
        limits.fail(*keys)
    assert limits.blocked_for(*keys) == 0
    limits.fail(*keys)
    assert 0 < limits.blocked_for(*keys) <= WINDOW
    assert limits.blocked_for(*keys_for("nobody", "10.0.0.9")) == 0 and limits.tracked() == 2  # asking adds nothing
    now[0] += WINDOW + 1
    assert limits.blocked_for(*keys) == 0 and limits.tracked() == 0  # aged-out entries are dropped


def test_unknown_users_cost_the_configured_bcrypt_rounds():
    assert accounts._dummy_hash(5).startswith(b"$2b$05$")  # noqa: SLF001 - the cost is the point
