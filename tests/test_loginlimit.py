"""Password guessing is limited the same way through the login form and through HTTP Basic, per
account and address, in the database (appliance/loginlimit.py), so nobody locks anyone else out."""

import requests

from appliance import accounts, audit, loginlimit
from appliance.loginlimit import (ACCOUNT_BACKOFF_AFTER, ADDRESS_MAX_FAILURES, BACKOFF_BASE, PAIR_MAX_FAILURES,
                                  WINDOW, LoginLimits)
from appliance.models import LoginFailure
from tests.procserver import ServerProcess
from tests.test_cli import run
from tests.webclient import WebSession, http_from


def test_basic_auth_passwords_are_rate_limited_like_the_login_form(hv):
    url = f"{hv.url}/api/users/me"
    for attempt in range(PAIR_MAX_FAILURES):
        assert requests.get(url, auth=("admin", f"wrong-{attempt}"), timeout=10).status_code == 401
    blocked = requests.get(url, auth=("admin", "admin-password"), timeout=10)
    assert blocked.status_code == 429 and "too many failed logins" in blocked.text.lower()
    # That account from that address, on the repository fast path and in the admin UI too.
    assert requests.get(f"{hv.url}/repos/acme/names", auth=("admin", "admin-password"), timeout=10).status_code == 429
    assert WebSession(hv.url).login().status_code == 429
    # Another account behind the same address (an office's NAT) goes on working.
    accounts.create_user("bob", "bob-password-1", rounds=4)
    assert requests.get(url, auth=("bob", "bob-password-1"), timeout=10).status_code == 200
    # Keys are not passwords: a repository key still works from that address.
    assert hv.repo("names").status_code == 200


def test_one_address_guessing_over_many_accounts_is_blocked(hv):
    url = f"{hv.url}/api/users/me"
    sprayer = http_from("127.0.0.5")
    for attempt in range(ADDRESS_MAX_FAILURES):  # below the limit of every single account
        assert sprayer.get(url, auth=(f"ghost{attempt % 5}", "Summer2026!"), timeout=10).status_code == 401
    assert sprayer.get(url, auth=("admin", "admin-password"), timeout=10).status_code == 429
    assert http_from("127.0.0.6").get(url, auth=("admin", "admin-password"), timeout=10).status_code == 200


def test_failures_age_out_and_a_success_clears_only_its_own_address(runtime):
    now = [1_000_000.0]
    limits = LoginLimits(clock=lambda: now[0])
    for _ in range(PAIR_MAX_FAILURES - 1):
        limits.record_failure("Admin ", "10.0.0.1")  # usernames are compared as the login form does
        limits.record_failure("admin", "10.0.0.2")
    assert limits.blocked_for("admin", "10.0.0.1") == 0
    limits.record_success("admin", "10.0.0.2")
    limits.record_failure("admin", "10.0.0.1")
    assert limits.blocked_for("ADMIN", "10.0.0.1") == WINDOW
    assert limits.blocked_for("admin", "10.0.0.2") == 0  # its success cleared it, and only it
    assert limits.blocked_for("admin", "10.0.0.3") == 0
    now[0] += WINDOW
    assert limits.blocked_for("admin", "10.0.0.1") == 0
    limits.record_failure("carol", "10.0.0.9")
    assert [f.account for f in LoginFailure.select()] == ["carol"]  # rows past the window are dropped


def test_the_account_backoff_doubles_and_spares_clean_addresses(runtime):
    now = [1_000_000.0]
    limits = LoginLimits(clock=lambda: now[0])
    for n in range(ACCOUNT_BACKOFF_AFTER - 1):
        limits.record_failure("admin", f"10.1.0.{n}")
    assert limits.blocked_for("admin", "10.1.0.0") == 0
    limits.record_failure("admin", "10.1.0.99")
    assert limits.blocked_for("admin", "10.1.0.0") == BACKOFF_BASE
    assert limits.blocked_for("admin", "10.2.0.1") == 0  # never failed for admin: not held back
    now[0] += BACKOFF_BASE
    assert limits.blocked_for("admin", "10.1.0.0") == 0
    limits.record_failure("admin", "10.1.0.0")
    assert limits.blocked_for("admin", "10.1.0.5") == 2 * BACKOFF_BASE
    assert loginlimit.backoff(ACCOUNT_BACKOFF_AFTER + 50) == WINDOW


def test_unlock_forgets_the_account_everywhere_and_is_audited(runtime):
    limits = LoginLimits()
    for n in range(PAIR_MAX_FAILURES):
        limits.record_failure("admin", "10.0.0.1")
        limits.record_failure("admin", f"10.0.1.{n}")
    limits.record_failure("carol", "10.0.0.1")
    assert limits.blocked_for("admin", "10.0.0.1") > 0
    assert loginlimit.unlock("Admin") == 2 * PAIR_MAX_FAILURES
    assert limits.blocked_for("admin", "10.0.0.1") == 0
    assert [f.account for f in LoginFailure.select()] == ["carol"]
    [entry] = audit.entries(action="user.unlock")
    assert entry.target == "admin" and entry.details["failures"] == 2 * PAIR_MAX_FAILURES


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

        for attempt in range(ADDRESS_MAX_FAILURES):  # many accounts, one address
            assert me(f"ghost{attempt}", "nope", "10.9.9.9").status_code == 401
        assert me("admin", "admin-password", "10.9.9.9").status_code == 429
        # The proxy appends the real peer last; a client cannot hide behind a forged first hop.
        assert me("admin", "admin-password", "10.1.1.1, 10.9.9.9").status_code == 429
        assert me("admin", "admin-password", "10.1.1.1").status_code == 200
    finally:
        server.stop()


def test_a_trusted_proxy_given_by_address_is_believed_and_nobody_else(runtime, config):
    """Nodes the front reaches over a network: only the front's address may forward addresses;
    a client connecting to the node directly cannot pose as somebody else."""
    from appliance import create_app
    from tests.conftest import LiveServer, make_world

    make_world(runtime)
    server = LiveServer()
    runtime.config = config.with_updates(base_url=server.url, trusted_proxy="127.0.0.2")
    server.start(create_app(runtime.config, runtime), runtime.config)
    try:
        url = f"{server.url}/api/users/me"
        proxy, direct = http_from("127.0.0.2"), http_from("127.0.0.3")
        for attempt in range(ADDRESS_MAX_FAILURES):  # forged hops: all counted on 127.0.0.3 itself
            response = direct.get(url, auth=(f"ghost{attempt}", "nope"), timeout=10,
                                  headers={"X-Forwarded-For": f"10.0.0.{attempt}"})
            assert response.status_code == 401
        assert direct.get(url, auth=("admin", "admin-password"), timeout=10).status_code == 429
        # Through the proxy, the forwarded address counts: 10.0.0.1 is not blocked, 127.0.0.3 is.
        assert proxy.get(url, auth=("admin", "admin-password"), timeout=10,
                         headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 200
        assert proxy.get(url, auth=("admin", "admin-password"), timeout=10,
                         headers={"X-Forwarded-For": "127.0.0.3"}).status_code == 429
    finally:
        server.stop()


def test_without_a_trusted_proxy_forwarded_addresses_are_ignored(hv):
    url = f"{hv.url}/api/users/me"
    for attempt in range(ADDRESS_MAX_FAILURES):
        response = requests.get(url, auth=(f"ghost{attempt}", "nope"), timeout=10,
                                headers={"X-Forwarded-For": f"10.0.0.{attempt}"})
        assert response.status_code == 401
    # All of them came from 127.0.0.1 whatever the header said, so that address is blocked.
    assert requests.get(url, auth=("admin", "admin-password"), timeout=10,
                        headers={"X-Forwarded-For": "10.7.7.7"}).status_code == 429


# -- issue 14 item 4: nobody can lock an account out from somewhere else --------------------------

def test_wrong_passwords_from_one_address_do_not_lock_the_account_out_elsewhere(hv):
    url = f"{hv.url}/api/users/me"
    attacker, owner = http_from("127.0.0.2"), http_from("127.0.0.3")
    for attempt in range(PAIR_MAX_FAILURES):
        assert attacker.get(url, auth=("admin", f"wrong-{attempt}"), timeout=10).status_code == 401
    blocked = attacker.get(url, auth=("admin", "admin-password"), timeout=10)
    assert blocked.status_code == 429 and "too many failed logins" in blocked.text.lower()
    # The owner, from their own address, is not affected: Basic auth, the repository, the login form.
    assert owner.get(url, auth=("admin", "admin-password"), timeout=10).status_code == 200
    assert owner.get(f"{hv.url}/repos/acme/names", auth=("admin", "admin-password"), timeout=10).status_code == 200
    assert WebSession(hv.url, address="127.0.0.3").login().status_code == 200
    # Unlike the attacker's form login, which stays blocked.
    assert WebSession(hv.url, address="127.0.0.2").login().status_code == 429


def test_guesses_from_many_addresses_back_the_account_off_but_never_a_clean_address(hv):
    url = f"{hv.url}/api/users/me"
    guessers = [http_from(f"127.0.1.{n}") for n in range(1, ACCOUNT_BACKOFF_AFTER + 1)]
    for guesser in guessers:  # one guess each: no address reaches its own limit
        assert guesser.get(url, auth=("admin", "wrong-password"), timeout=10).status_code == 401
    # Every address that has guessed wrong now waits, whatever it sends...
    backed_off = guessers[0].get(url, auth=("admin", "admin-password"), timeout=10)
    assert backed_off.status_code == 429 and "too many failed logins" in backed_off.text.lower()
    # ...while a correct password from an address that never failed still gets in.
    assert http_from("127.0.2.1").get(url, auth=("admin", "admin-password"), timeout=10).status_code == 200
    assert WebSession(hv.url, address="127.0.2.2").login().status_code == 200


def test_the_account_page_current_password_check_is_limited_too(hv):
    web = WebSession(hv.url)
    assert web.login().status_code == 200
    for attempt in range(PAIR_MAX_FAILURES):
        wrong = web.post("/admin/account", {"current_password": f"wrong-{attempt}", "new_password": "new-password-1",
                                            "confirm_password": "new-password-1"})
        assert wrong.status_code == 422
    right = web.post("/admin/account", {"current_password": "admin-password", "new_password": "new-password-1",
                                        "confirm_password": "new-password-1"})
    assert right.status_code == 429
    assert accounts.check_login("admin", "admin-password", rounds=4).username == "admin"  # unchanged


def test_limits_hold_across_processes_and_the_cli_unlocks(tmp_path):
    password = "root-password"
    init = run(tmp_path, "init", "--admin", "root", "--admin-password", password, "--org", "acme")
    assert init.exit_code == 0, init.output
    first, second = ServerProcess(tmp_path / "data").start(), ServerProcess(tmp_path / "data").start()
    try:
        for attempt in range(PAIR_MAX_FAILURES):
            wrong = requests.get(f"{first.url}/api/users/me", auth=("root", f"wrong-{attempt}"), timeout=10)
            assert wrong.status_code == 401
        # The other worker process knows, and so would this one after a restart.
        assert requests.get(f"{second.url}/api/users/me", auth=("root", password), timeout=10).status_code == 429
        unlocked = run(tmp_path, "user", "unlock", "root")
        assert unlocked.exit_code == 0 and "unlocked root" in unlocked.output
        for server in (first, second):
            assert requests.get(f"{server.url}/api/users/me", auth=("root", password), timeout=10).status_code == 200
        assert run(tmp_path, "user", "unlock", "nobody").exit_code == 1
    finally:
        first.stop()
        second.stop()
