"""Issue 13: an administrator's daily work over real HTTP and the real CLI: offboarding (disable,
delete a user or an organization, never locking oneself out), the users page, login auditing."""

import re

from appliance import accounts, audit, keys, loginlimit, orgs
from appliance.errors import Invalid, NotFound
from tests.driver import erlang_package
from tests.test_cli import run
from tests.webclient import WebSession


def _admin(hv):
    session = WebSession(hv.url)
    assert session.login().status_code == 200
    return session


def _leaver(hv):
    user = accounts.create_user("leaver", "leaver-password", rounds=4)
    orgs.add_member(hv.org, user, "write")
    _k, secret = keys.create(hv.runtime.app_secret, "leaver-key", [["api", "write"], ["repository", "acme"]], user=user)
    token = keys.issue_token(hv.runtime.app_secret, keys.get("leaver-key", user=user), "repository:acme")
    assert hv.api("GET", "users/me", key=secret).status_code == 200
    assert hv.repo("names", key=f"Bearer {token}").status_code == 200
    return user, secret, token


def test_disabling_keeps_memberships_and_enabling_restores_keys_and_tokens(hv):
    user, secret, token = _leaver(hv)
    admin = _admin(hv)
    assert admin.post("/admin/users/leaver/disabled", {"disabled": "1"}).status_code == 200
    assert hv.api("GET", "users/me", key=secret).status_code == 401
    assert hv.repo("names", key=f"Bearer {token}").status_code == 401
    assert orgs.role_of(user, hv.org) == "write"  # kept for when they come back
    page = admin.get("/admin/users").text
    assert re.search(r"leaver</a>.*?disabled", page, re.S)
    assert admin.post("/admin/users/leaver/disabled", {"disabled": "0"}).status_code == 200
    assert hv.api("GET", "users/me", key=secret).status_code == 200
    assert hv.repo("names", key=f"Bearer {token}").status_code == 200


def test_deleting_a_user_revokes_their_keys_and_keeps_their_audit_rows(hv):
    user, secret, token = _leaver(hv)
    leaver = WebSession(hv.url)
    assert leaver.login("leaver", "leaver-password").status_code == 200
    assert leaver.post("/admin/keys", {"name": "from-web", "api": "read"}).status_code in (200, 201)
    admin = _admin(hv)
    unconfirmed = admin.post("/admin/users/leaver/delete", {"confirm": "someone"})
    assert unconfirmed.status_code == 422 and "Type leaver to confirm" in unconfirmed.text
    assert accounts.get_user("leaver")
    assert admin.post("/admin/users/leaver/delete", {"confirm": "leaver"}).status_code == 200
    try:
        accounts.get_user("leaver")
        raise AssertionError("leaver still exists")
    except NotFound:
        pass
    assert hv.api("GET", "users/me", key=secret).status_code == 401
    assert hv.repo("names", key=f"Bearer {token}").status_code == 401
    assert leaver.get("/admin/keys", allow_redirects=False).status_code == 302
    assert [m.user.username for m in orgs.members(hv.org)] == ["admin"]
    # What they did, and their deletion, are still there to read.
    rows = admin.get("/admin/audit?user=leaver").text
    assert "key.generate" in rows and "from-web" in rows and "user.login" in rows
    deleted = admin.get("/admin/audit?action=user.delete").text
    assert "leaver" in deleted and "leaver-key" in deleted


def test_an_administrator_cannot_delete_or_disable_themselves_nor_the_last_administrator(hv):
    admin = _admin(hv)
    own = admin.post("/admin/users/admin/delete", {"confirm": "admin"})
    assert own.status_code == 422 and "You cannot delete your own account." in own.text
    assert admin.post("/admin/users/admin/disabled", {"disabled": "1"}).status_code == 422
    assert accounts.get_user("admin").disabled_at is None
    # From the CLI (no acting user) the last administrator is still kept.
    try:
        accounts.delete_user(accounts.get_user("admin"))
        raise AssertionError("the last administrator was deleted")
    except Invalid as exc:
        assert "last administrator" in exc.errors["user"]
    assert accounts.get_user("admin")


def test_removing_or_demoting_yourself_as_the_last_organization_admin_is_refused(hv):
    orgadmin = accounts.create_user("orgadmin", "orgadmin-password", rounds=4)
    beta = orgs.create("beta")
    orgs.add_member(beta, orgadmin, "admin")
    session = WebSession(hv.url)
    assert session.login("orgadmin", "orgadmin-password").status_code == 200
    removed = session.post("/admin/orgs/beta/members/orgadmin/remove")
    assert removed.status_code == 422 and "You are the last admin of beta" in removed.text
    demoted = session.post("/admin/orgs/beta/members/orgadmin/role", {"role": "read"})
    assert demoted.status_code == 422
    assert orgs.role_of(orgadmin, beta) == "admin"
    # With a second admin, leaving is fine.
    orgs.add_member(beta, accounts.create_user("second", "second-password", rounds=4), "admin")
    assert session.post("/admin/orgs/beta/members/orgadmin/remove", allow_redirects=False).status_code == 302
    assert orgs.role_of(orgadmin, beta) is None


def test_deleting_an_organization_needs_its_name_typed_when_it_holds_packages(hv):
    admin = _admin(hv)
    empty = orgs.create("empty")
    assert "org-delete" in admin.get("/admin/orgs/empty").text
    assert admin.post("/admin/orgs/empty/delete").status_code == 200
    assert "empty" not in [o.name for o in orgs.list_all()]
    assert hv.publish(erlang_package("thing", "1.0.0")).status_code == 201
    refused = admin.post("/admin/orgs/acme/delete", {"confirm": "acm"})
    assert refused.status_code == 422 and "type its name" in refused.text
    assert hv.repo("packages/thing").status_code == 200
    assert admin.post("/admin/orgs/acme/delete", {"confirm": "acme"}).status_code == 200
    assert [o.name for o in orgs.list_all()] == []
    assert hv.repo("names").status_code in (401, 404)
    deleted = [e for e in audit.entries(action="organization.delete")]
    assert [(e.target, e.actor, e.details.get("packages")) for e in deleted] == [("acme", "admin", 1), ("empty", "admin", None)]
    del empty


def test_users_page_shows_status_last_login_memberships_and_resets_passwords_behind_a_confirmation(hv):
    _leaver(hv)
    assert WebSession(hv.url).login("leaver", "leaver-password").status_code == 200
    admin = _admin(hv)
    page = admin.get("/admin/users").text
    assert 'type="password" placeholder="new password"' not in page  # no password box per row
    row = re.search(r"<tr><td><a href=\"/admin/users/leaver\">.*?</tr>", page, re.S).group(0)
    assert "active" in row and "acme (write)" in row and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", row)
    assert "never" not in row
    confirm = admin.get("/admin/users/leaver/password")
    assert confirm.status_code == 200 and "Reset the password of leaver?" in confirm.text
    assert admin.post("/admin/users/leaver/password", {"password": "brand-new-password"}).status_code == 200
    assert WebSession(hv.url).login("leaver", "brand-new-password").status_code == 200


def test_logins_failed_logins_and_lockouts_are_audited_with_the_address_never_the_password(hv):
    session = WebSession(hv.url)
    for _ in range(6):
        session.login(password="secret-guess-123")
    assert session.login().status_code == 429
    rows = audit.entries(username="admin")
    actions = [e.action for e in rows]
    assert actions.count("user.login_failed") == 5 and actions.count("user.login_locked") >= 2
    assert {e.ip for e in rows if e.action.startswith("user.login")} == {"127.0.0.1"}
    assert not any("secret-guess-123" in repr((e.details, e.target, e.actor)) for e in audit.entries(limit=1000))
    accounts_login = WebSession(hv.url)
    loginlimit.unlock("admin")
    assert accounts_login.login().status_code == 200
    assert audit.entries(action="user.login")[0].target == "admin"


def test_cli_deletes_users_and_organizations(tmp_path):
    assert run(tmp_path, "init", "--admin-password", "first-password", "--org", "acme").exit_code == 0
    assert run(tmp_path, "user", "create", "alice", "--password", "alice-password").exit_code == 0
    assert run(tmp_path, "key", "create", "ci", "--user", "alice", "-p", "api:read").exit_code == 0
    asked = run(tmp_path, "user", "delete", "alice", input="n\n")
    assert asked.exit_code == 1 and "alice" in run(tmp_path, "user", "list").output
    deleted = run(tmp_path, "user", "delete", "alice", "--yes")
    assert deleted.exit_code == 0 and "alice" not in run(tmp_path, "user", "list").output
    assert run(tmp_path, "org", "delete", "acme").exit_code == 0
    assert "acme" not in run(tmp_path, "org", "list").output
