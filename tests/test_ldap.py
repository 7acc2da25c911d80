"""Directory logins against Debian's real slapd (tests/slapd.py) over StartTLS with a test CA:
the login form and HTTP Basic, roles from groups at every login, injection, outage, failover,
rate limits, and `hexvault ldap sync`."""

from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from appliance import create_app, keys, orgs
from appliance.cli import main
from appliance.config import load_config
from appliance.identity import ldap as directory_ldap
from appliance.models import AuditLog, Key, LoginFailure, User
from tests.conftest import LiveServer, make_world
from tests.slapd import MISSING, PASSWORDS, SERVICE_PASSWORD, Slapd, group_dn, people_dn
from tests.webclient import WebSession

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def slapd():
    server = Slapd().start()
    yield server
    server.stop()


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "ldap-bind-password"
    path.write_text(SERVICE_PASSWORD + "\n")
    return path


@pytest.fixture
def ldap_config(tmp_path, slapd, password_file):
    return load_config(environ={}, data_dir=str(tmp_path / "data"), bcrypt_rounds=4, port=8000,
                       **slapd.settings(password_file))


@pytest.fixture
def config(ldap_config):  # conftest's runtime and live_server start from this one
    return ldap_config


@pytest.fixture
def world(runtime, live_server):
    made = make_world(runtime)
    orgs.create("tools")
    return made


@pytest.fixture(autouse=True)
def directory_as_loaded(slapd):
    """Each test starts from the LDIF's memberships (some tests change them)."""
    yield
    slapd.set_members("elixir-devs", [people_dn("alice"), people_dn("bob"), people_dn("dave")])
    slapd.set_members("elixir-admins", [people_dn("bob")])


def signed_in(response):
    return response.status_code == 200 and 'action="/admin/logout"' in response.text


def roles(username):
    user = User.get(User.username == username)
    return {m.organization.name: m.role for m in orgs.memberships_of(user)}


def test_a_directory_user_logs_in_on_the_form_and_is_created_with_the_roles_of_their_groups(live_server, world):
    web = WebSession(live_server.url)
    assert signed_in(web.login("alice", PASSWORDS["alice"]))
    assert signed_in(web.get("/admin/account"))
    alice = User.get(User.username == "alice")
    assert (alice.auth_source, alice.email, alice.full_name) == ("ldap", "alice@example.org", "Alice Example")
    assert alice.directory_dn == people_dn("alice") and alice.password_hash is None
    assert roles("alice") == {"acme": "write"}
    # bob is in two mapped groups: the stronger role in acme, and tools from the second.
    assert requests.get(f"{live_server.url}/api/users/me", auth=("bob", PASSWORDS["bob"]), timeout=10).status_code == 200
    assert roles("bob") == {"acme": "admin", "tools": "read"}
    assert AuditLog.get((AuditLog.action == "user.create") & (AuditLog.target == "bob")).details["via"] == "ldap"


def test_memberships_follow_the_directory_at_every_login(live_server, world, slapd):
    url = f"{live_server.url}/api/users/me"
    assert requests.get(url, auth=("bob", PASSWORDS["bob"]), timeout=10).status_code == 200
    slapd.set_members("elixir-admins", [people_dn("alice")])
    assert requests.get(url, auth=("bob", PASSWORDS["bob"]), timeout=10).status_code == 200
    assert roles("bob") == {"acme": "write"}  # out of elixir-admins: tools gone, acme down to write
    assert requests.get(url, auth=("alice", PASSWORDS["alice"]), timeout=10).status_code == 200
    assert roles("alice") == {"acme": "admin", "tools": "read"}


def test_wrong_passwords_injections_and_empty_passwords_get_nobody_in(live_server, world):
    url = f"{live_server.url}/api/users/me"
    for username, password in [("alice", "wrong-password"), ("alice", ""), ("*)(uid=*", PASSWORDS["alice"]),
                               ("*", PASSWORDS["alice"]), ("alice)(|(uid=*", PASSWORDS["alice"]),
                               ("nobody-here", "whatever-pass")]:
        assert requests.get(url, auth=(username, password), timeout=10).status_code == 401, (username, password)
    web = WebSession(live_server.url, address="127.0.0.2")
    response = web.login("*)(uid=*", PASSWORDS["alice"])
    assert response.status_code == 401 and "invalid username and password combination" in response.text.lower()
    assert not User.select().where(User.auth_source == "ldap").exists()


def test_someone_in_no_mapped_group_is_told_so_and_not_created(live_server, world):
    web = WebSession(live_server.url)
    response = web.login("carol", PASSWORDS["carol"])
    assert response.status_code == 401
    assert "none of the groups" in response.text
    assert not User.select().where(User.username == "carol").exists()


def test_a_local_account_is_not_taken_over_by_the_directory_name(live_server, world):
    from appliance import accounts

    accounts.create_user("dave", "local-dave-password", rounds=4)
    url = f"{live_server.url}/api/users/me"
    assert requests.get(url, auth=("dave", PASSWORDS["dave"]), timeout=10).status_code == 401
    assert requests.get(url, auth=("dave", "local-dave-password"), timeout=10).status_code == 200
    assert User.get(User.username == "dave").auth_source == "local"


def test_directory_logins_are_rate_limited_like_local_ones(live_server, world):
    url = f"{live_server.url}/api/users/me"
    for attempt in range(5):
        assert requests.get(url, auth=("alice", f"wrong-{attempt}"), timeout=10).status_code == 401
    assert requests.get(url, auth=("alice", PASSWORDS["alice"]), timeout=10).status_code == 429


def serve(runtime, config):
    runtime.config = config
    runtime.directory = directory_ldap.from_config(config)
    server = LiveServer()
    return server.start(create_app(config, runtime), config)


def test_an_outage_refuses_directory_logins_clearly_and_never_locks_out_a_local_admin(runtime, ldap_config,
                                                                                     tmp_path):
    from tests.nginxfront import free_port

    make_world(runtime)
    down = ldap_config.with_updates(ldap_urls=(f"ldap://127.0.0.1:{free_port()}",), ldap_timeout=2.0)
    server = serve(runtime, down)
    try:
        url = f"{server.url}/api/users/me"
        refused = requests.get(url, auth=("alice", PASSWORDS["alice"]), timeout=30)
        assert refused.status_code == 503
        assert "company directory cannot be reached" in refused.json()["message"]
        web = WebSession(server.url)
        page = web.login("alice", PASSWORDS["alice"])
        assert page.status_code == 503 and "company directory cannot be reached" in page.text
        assert not signed_in(web.get("/admin/account"))
        # The break-glass admin is local: the directory is never asked.
        assert requests.get(url, auth=("admin", "admin-password"), timeout=10).status_code == 200
        assert signed_in(WebSession(server.url, address="127.0.0.3").login())
        assert not LoginFailure.select().exists()  # an outage is nobody's wrong guess
    finally:
        server.stop()


def test_a_server_that_fails_tls_verification_is_an_outage_and_the_next_url_is_tried(runtime, ldap_config, slapd,
                                                                                    tmp_path):
    from tests.nginxfront import free_port

    make_world(runtime)
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    untrusted = ldap_config.with_updates(ldap_ca_file=str(other_ca), ldap_timeout=2.0)
    server = serve(runtime, untrusted)
    try:
        assert requests.get(f"{server.url}/api/users/me", auth=("alice", PASSWORDS["alice"]),
                            timeout=30).status_code == 503
    finally:
        server.stop()
    failover = ldap_config.with_updates(ldap_urls=(f"ldap://127.0.0.1:{free_port()}", slapd.url), ldap_timeout=2.0)
    server = serve(runtime, failover)
    try:
        assert requests.get(f"{server.url}/api/users/me", auth=("alice", PASSWORDS["alice"]),
                            timeout=30).status_code == 200
    finally:
        server.stop()


def cli(config, *args):
    env = {"HEXVAULT_CONFIG": "", "HEXVAULT_DATA_DIR": config.data_dir, "HEXVAULT_BCRYPT_ROUNDS": "4",
           "HEXVAULT_LDAP_URLS": ",".join(config.ldap_urls), "HEXVAULT_LDAP_CA_FILE": config.ldap_ca_file,
           "HEXVAULT_LDAP_BIND_DN": config.ldap_bind_dn,
           "HEXVAULT_LDAP_BIND_PASSWORD_FILE": config.ldap_bind_password_file,
           "HEXVAULT_LDAP_BASE_DN": config.ldap_base_dn, "HEXVAULT_LDAP_GROUP_BASE_DN": config.ldap_group_base_dn,
           "HEXVAULT_LDAP_GROUP_ROLES": '{"%s": "acme:write", "%s": ["acme:admin", "tools:read"]}'
                                        % (group_dn("elixir-devs"), group_dn("elixir-admins"))}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_ldap_sync_disables_who_left_revokes_their_keys_and_sessions_and_audits_it(runtime, live_server, world,
                                                                                  slapd, ldap_config):
    url = f"{live_server.url}/api/users/me"
    sessions = {}
    for name in ("alice", "bob", "dave"):
        sessions[name] = WebSession(live_server.url)
        assert signed_in(sessions[name].login(name, PASSWORDS[name]))
    alice_key = keys.create(runtime.app_secret, "laptop", [["api", "write"]], user=User.get(User.username == "alice"))[1]
    assert requests.get(url, headers={"authorization": alice_key}, timeout=10).status_code == 200

    # alice leaves every mapped group; dave leaves the directory; bob stays.
    slapd.set_members("elixir-devs", [people_dn("bob")])
    slapd.delete(people_dn("dave"))
    try:
        result = cli(ldap_config, "ldap", "sync")
        assert result.exit_code == 0, result.output
        assert "disabled alice: in none of the mapped groups" in result.output
        assert "disabled dave: no longer in the directory" in result.output
        assert "checked 3 directory users, disabled 2, revoked 1 keys" in result.output
    finally:
        _restore_dave(slapd)

    assert requests.get(url, headers={"authorization": alice_key}, timeout=10).status_code == 401
    assert not Key.get(Key.name == "laptop").is_active()
    assert not signed_in(sessions["alice"].get("/admin/account"))
    assert not signed_in(sessions["dave"].get("/admin/account"))
    assert signed_in(sessions["bob"].get("/admin/account"))
    assert User.get(User.username == "bob").disabled_at is None
    audits = {(a.target, a.details.get("reason")) for a in AuditLog.select().where(AuditLog.action == "user.disable")}
    assert audits == {("alice", "in none of the mapped groups"), ("dave", "no longer in the directory")}
    # Disabled stays disabled at the next login, even back in the directory.
    assert requests.get(url, auth=("dave", PASSWORDS["dave"]), timeout=10).status_code == 401


def test_ldap_sync_changes_nothing_when_the_directory_is_down(live_server, world, ldap_config):
    from tests.nginxfront import free_port

    assert signed_in(WebSession(live_server.url).login("alice", PASSWORDS["alice"]))
    result = cli(ldap_config.with_updates(ldap_urls=(f"ldap://127.0.0.1:{free_port()}",)), "ldap", "sync")
    assert result.exit_code == 1 and "company directory cannot be reached" in result.output
    assert User.get(User.username == "alice").disabled_at is None


def _restore_dave(slapd):
    from tests.slapd import _person

    conn = slapd.admin()
    entry = _person("dave", "Dave Example", "dave@example.org", slapd._hash(PASSWORDS["dave"]))
    attributes = {}
    for line in entry.splitlines()[1:]:
        name, _, value = line.partition(": ")
        attributes.setdefault(name, []).append(value)
    assert conn.add(people_dn("dave"), attributes=attributes), conn.result
    conn.unbind()
