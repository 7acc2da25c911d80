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


def test_behind_a_trusted_proxy_the_limit_is_per_forwarded_address(runtime, config):
    from appliance import create_app
    from tests.conftest import LiveServer, make_world

    make_world(runtime)
    server = LiveServer()
    runtime.config = config.with_updates(base_url=server.url, trusted_proxy=True)
    server.start(create_app(runtime.config, runtime), runtime.config)
    try:
        url = f"{server.url}/api/users/me"

        def me(user, password, forwarded):
            return requests.get(url, auth=(user, password), headers={"X-Forwarded-For": forwarded}, timeout=10)

        for attempt in range(MAX_FAILURES):  # five different accounts, one address
            assert me(f"ghost{attempt}", "nope", "10.9.9.9").status_code == 401
        assert me("admin", "admin-password", "10.9.9.9").status_code == 429
        # The proxy appends the real peer last; a client cannot hide behind a forged first hop.
        assert me("admin", "admin-password", "10.1.1.1, 10.9.9.9").status_code == 429
        assert me("admin", "admin-password", "10.1.1.1").status_code == 200
    finally:
        server.stop()


def test_without_a_trusted_proxy_forwarded_addresses_are_ignored(hv):
    url = f"{hv.url}/api/users/me"
    for attempt in range(MAX_FAILURES):
        response = requests.get(url, auth=(f"ghost{attempt}", "nope"), timeout=10,
                                headers={"X-Forwarded-For": f"10.0.0.{attempt}"})
        assert response.status_code == 401
    # All five came from 127.0.0.1 whatever the header said, so that address is blocked.
    assert requests.get(url, auth=("admin", "admin-password"), timeout=10,
                        headers={"X-Forwarded-For": "10.7.7.7"}).status_code == 429
