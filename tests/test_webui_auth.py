"""Who may do what in the admin UI, over real HTTP: every POST action x every kind of caller
who may not do it, asserting the refusal and, through the domain services, that nothing changed.

Actions are enumerated from the app's URL map, so a new admin action fails the matrix until it
is classified below.
"""

import re

import pyotp
import pytest

from appliance import accounts, audit, create_app, keys, orgs, packages, registry_builder
from appliance import sessions as appliance_sessions
from appliance.identity import device, totp
from appliance.sessions import active as active_sessions
from appliance.models import DeviceAuthorization, OAuthGrant, SigningKey
from appliance.ops import webhooks
from tests.driver import erlang_package
from tests.webclient import WebSession

# Who may do each action: "appliance admin", "org admin" (of acme), "org write", "owner" (of the
# key), "signed in" (anyone logged in: their own account, keys, session) or "anyone".
NEEDS = {
    "webui.org_create": "appliance admin",
    "webui.users": "appliance admin",
    "webui.user_reset_password": "appliance admin",
    "webui.user_set_disabled": "appliance admin",
    "webui.user_reset_two_factor": "appliance admin",
    "webui.user_delete": "appliance admin",
    "webui.org_delete": "appliance admin",
    "webui.user_session_end": "appliance admin",
    "webui.user_token_revoke": "appliance admin",
    "webui.signing_key": "appliance admin",
    "webui.member_add": "org admin",
    "webui.member_role": "org admin",
    "webui.member_remove": "org admin",
    "webui.org_key_create": "org admin",
    "webui.webhook_create": "org admin",
    "webui.webhook_delete": "org admin",
    "webui.webhook_redeliver": "org admin",
    "webui.package_retire": "org write",
    "webui.package_unretire": "org write",
    "webui.key_revoke": "owner",
    "webui.key_rotate": "owner",
    "webui.user_key_create": "signed in",
    "webui.account": "signed in",
    "webui.end_other_sessions": "signed in",
    "webui.two_factor_restart": "signed in",
    "webui.two_factor_enable": "signed in",
    "webui.two_factor_disable": "signed in",
    "webui.session_end": "signed in",
    "webui.token_revoke": "signed in",
    "webui.device_verify": "signed in",
    "webui.logout": "signed in",
    "webui.login": "anyone",
    "webui.login_code": "anyone",
}
# The callers of the matrix and what each of them holds.
CALLERS = {
    "anonymous": set(),
    "read member": {"signed in"},
    "write member": {"signed in", "org write"},
    "other organization's admin": {"signed in"},
    "disabled org admin": set(),  # logged in as an acme admin, then disabled
}


@pytest.fixture
def web_world(hv):
    """acme with a member of each role, a retired and an unretired release, organization and
    user keys to revoke and rotate; beta with its own admin."""
    rt, secret = hv.runtime, hv.runtime.app_secret
    hook, _hook_secret = webhooks.create(rt, hv.org, "http://127.0.0.1:9/hook")  # every change below is an event
    assert hv.publish(erlang_package("current", "1.0.0")).status_code == 201
    assert hv.publish(erlang_package("old", "1.0.0")).status_code == 201
    packages.retire(rt, hv.org, "old", "1.0.0", "deprecated", "use current")
    beta = orgs.create("beta")
    registry_builder.ensure_index(rt, beta)
    people = {}
    for username, org, role in (("reader", hv.org, "read"), ("writer", hv.org, "write"),
                                ("betaadmin", beta, "admin"), ("gone", hv.org, "admin"), ("orgadmin", hv.org, "admin")):
        people[username] = accounts.create_user(username, f"{username}-password", rounds=4)
        orgs.add_member(org, people[username], role)
    org_keys = {name: keys.create(secret, name, [["repository", "acme"]], organization=hv.org)[0]
                for name in ("deploy-revoke", "deploy-rotate")}
    user_keys = {name: keys.create(secret, name, [["api", "write"]], user=hv.admin)[0]
                 for name in ("admin-revoke", "admin-rotate")}
    # traveller is signed in elsewhere and logged in a device with `mix hex.user auth`; a device
    # login waits for approval.
    people["traveller"] = accounts.create_user("traveller", "traveller-password", rounds=4)
    traveller_session = appliance_sessions.start(people["traveller"])
    started = device.start(device.HEX_CLIENT_ID, "api", "traveller-laptop", "127.0.0.9", hv.url + "/admin/device")
    device.decide(started["user_code"], people["traveller"], True)
    device.poll(secret, device.HEX_CLIENT_ID, started["device_code"])
    pending = device.start(device.HEX_CLIENT_ID, "api", "someone", "127.0.0.9", hv.url + "/admin/device")
    sessions = {"anonymous": WebSession(hv.url)}
    sessions["anonymous"].get("/admin/login")  # holds a CSRF token, so its POSTs reach the views
    for caller, username in (("read member", "reader"), ("write member", "writer"),
                             ("other organization's admin", "betaadmin"), ("disabled org admin", "gone")):
        sessions[caller] = WebSession(hv.url)
        assert sessions[caller].login(username, f"{username}-password").status_code == 200
    accounts.set_disabled(people["gone"], True)
    people["twofactor"] = accounts.create_user("twofactor", "twofactor-password", rounds=4)
    totp_secret = totp.begin(secret, people["twofactor"])  # for the admin's two-factor reset
    totp.enable(secret, people["twofactor"], pyotp.TOTP(totp_secret).now())
    return dict(people=people, org_keys=org_keys, user_keys=user_keys, sessions=sessions, hook=hook,
                traveller_session=appliance_sessions.current_row(traveller_session),
                traveller_grant=device.grants_of(people["traveller"])[0], pending_code=pending["user_code"],
                delivery=webhooks.recent_deliveries(hook)[-1])


def action_requests(world):
    """(endpoint, path, form) for every admin POST, each with valid input, so that only a
    permission check stands between the caller and a change."""
    org_key, user_key, hook = world["org_keys"], world["user_keys"], world["hook"]
    return [
        ("webui.org_create", "/admin/orgs", {"name": "sneaky"}),
        ("webui.users", "/admin/users", {"username": "sneaky", "password": "sneaky-password", "is_admin": "1"}),
        ("webui.user_reset_password", "/admin/users/orgadmin/password", {"password": "hijacked-password"}),
        ("webui.user_set_disabled", "/admin/users/orgadmin/disabled", {"disabled": "1"}),
        ("webui.user_reset_two_factor", "/admin/users/twofactor/2fa/reset", {}),
        ("webui.user_session_end", f"/admin/users/traveller/sessions/{world['traveller_session'].id}/end", {}),
        ("webui.user_token_revoke", f"/admin/users/traveller/tokens/{world['traveller_grant'].id}/revoke", {}),
        ("webui.signing_key", "/admin/signing-key", {"confirm": "rotate"}),
        ("webui.member_add", "/admin/orgs/acme/members", {"username": "betaadmin", "role": "admin"}),
        ("webui.member_role", "/admin/orgs/acme/members/reader/role", {"role": "admin"}),
        ("webui.member_remove", "/admin/orgs/acme/members/orgadmin/remove", {}),
        ("webui.org_key_create", "/admin/orgs/acme/keys", {"name": "sneaky", "repository": "1"}),
        ("webui.webhook_create", "/admin/orgs/acme/webhooks", {"url": "http://127.0.0.1:9/sneaky"}),
        ("webui.webhook_redeliver", f"/admin/orgs/acme/webhooks/{hook.id}/deliveries/{world['delivery'].id}/redeliver", {}),
        ("webui.webhook_delete", f"/admin/orgs/acme/webhooks/{hook.id}/delete", {}),
        ("webui.package_retire", "/admin/orgs/acme/packages/current/1.0.0/retire", {"reason": "security"}),
        ("webui.package_unretire", "/admin/orgs/acme/packages/old/1.0.0/unretire", {}),
        ("webui.key_revoke", f"/admin/keys/{org_key['deploy-revoke'].id}/revoke", {"confirm": "yes"}),
        ("webui.key_rotate", f"/admin/keys/{org_key['deploy-rotate'].id}/rotate", {"grace_seconds": "0"}),
        ("webui.key_revoke", f"/admin/keys/{user_key['admin-revoke'].id}/revoke", {"confirm": "yes"}),
        ("webui.key_rotate", f"/admin/keys/{user_key['admin-rotate'].id}/rotate", {"grace_seconds": "0"}),
        ("webui.user_key_create", "/admin/keys", {"name": "mine", "api": "write"}),
        ("webui.account", "/admin/account", {"current_password": "gone-password", "new_password": "changed-password",
                                             "confirm_password": "changed-password"}),
        ("webui.end_other_sessions", "/admin/account/sessions", {}),
        ("webui.two_factor_restart", "/admin/account/2fa/restart", {}),
        ("webui.two_factor_enable", "/admin/account/2fa/enable", {"code": "123456"}),
        ("webui.two_factor_disable", "/admin/account/2fa/disable", {"code": "123456"}),
        ("webui.session_end", f"/admin/account/sessions/{world['traveller_session'].id}/end", {}),
        ("webui.token_revoke", f"/admin/account/tokens/{world['traveller_grant'].id}/revoke", {}),
        ("webui.device_verify", "/admin/device", {"user_code": world["pending_code"], "decision": "approve"}),
        ("webui.logout", "/admin/logout", {}),
        # Last: they take away what the actions above act on.
        ("webui.org_delete", "/admin/orgs/beta/delete", {}),
        ("webui.user_delete", "/admin/users/reader/delete", {"confirm": "reader"}),
    ]


def state():
    """Everything an admin action can change, read through the domain services."""
    every_org = orgs.list_all()
    users = accounts.list_users()
    return dict(
        orgs=[o.name for o in every_org],
        members={o.name: [(m.user.username, m.role) for m in orgs.members(o)] for o in every_org},
        users=[(u.username, u.email, u.is_admin, u.disabled_at, u.password_hash, u.totp_secret_encrypted,
                u.totp_enabled_at) for u in users],
        keys=[(k.id, k.name, k.revoked_at, k.expires_at, k.secret_first)
              for owner in [dict(user=u) for u in users] + [dict(organization=o) for o in every_org]
              for k in keys.list_for(**owner)],
        releases=[(p.name, r.version, r.retirement_reason) for p in packages.search(every_org)
                  for r in packages.releases_of(p)],
        signing_key=SigningKey.current().fingerprint,
        sessions=[[s.id for s in active_sessions(u)] for u in users],
        device_logins=[(g.id, g.revoked_at) for u in users for g in OAuthGrant.select().where(OAuthGrant.user == u.id)]
        + [(d.id, d.decision) for d in DeviceAuthorization.select()],
        audit=[e.id for e in audit.entries()],
        webhooks=[(h.id, h.url, [d.id for d in webhooks.recent_deliveries(h)])
                  for o in every_org for h in webhooks.list_for(o)],
    )


def refused(caller, response):
    if caller in ("anonymous", "disabled org admin"):  # to the login form, never into the view
        return response.status_code == 302 and "/admin/login" in response.headers["Location"]
    return response.status_code in (403, 404)


def test_every_admin_action_is_classified(hv):
    app = create_app(hv.runtime.config, hv.runtime)
    posts = {rule.endpoint for rule in app.url_map.iter_rules()
             if rule.endpoint.startswith("webui.") and "POST" in rule.methods}
    assert posts == set(NEEDS), "classify new admin actions in NEEDS (and add them to action_requests)"


def test_every_admin_action_refuses_callers_without_the_right_and_changes_nothing(hv, web_world):
    requests_ = action_requests(web_world)
    assert {e for e, _p, _f in requests_} == set(NEEDS) - {"webui.login", "webui.login_code"}
    failures = []
    for caller, holds in CALLERS.items():
        session = web_world["sessions"][caller]
        for endpoint, path, form in requests_:
            if NEEDS[endpoint] in holds:
                continue
            before = state()
            response = session.post(path, form, allow_redirects=False)
            if not refused(caller, response):
                failures.append(f"{caller}: POST {path} -> {response.status_code}")
            if state() != before:
                failures.append(f"{caller}: POST {path} changed something")
    assert failures == [], "\n".join(failures)
    # Sessions of signed-in callers are still good: the refusals were about rights, not a lost session.
    assert web_world["sessions"]["read member"].get("/admin/keys", allow_redirects=False).status_code == 200


def test_the_matrix_input_is_valid_an_administrator_changes_something_with_each(hv, web_world):
    """Each refused request above would have changed something: without this, a view failing
    on bad input would look like a refusal."""
    admin = WebSession(hv.url)
    assert admin.login().status_code == 200
    for endpoint, path, form in action_requests(web_world):
        if endpoint in ("webui.account", "webui.end_other_sessions", "webui.logout", "webui.two_factor_restart",
                        "webui.two_factor_enable", "webui.two_factor_disable", "webui.session_end",
                        "webui.token_revoke", "webui.device_verify"):
            continue  # self-service, checked with the admin's own account elsewhere
        before = state()
        response = admin.post(path, form, allow_redirects=False)
        assert response.status_code in (200, 201, 302, 303), (path, response.status_code, response.text[:300])
        assert state() != before, path


def test_a_user_cannot_revoke_or_rotate_another_users_key_by_id(hv, web_world):
    victim = web_world["user_keys"]["admin-revoke"]
    writer = web_world["sessions"]["write member"]
    orgadmin = WebSession(hv.url)
    assert orgadmin.login("orgadmin", "orgadmin-password").status_code == 200
    for session in (writer, orgadmin):  # an organization admin is no owner of its members' keys
        assert session.post(f"/admin/keys/{victim.id}/revoke").status_code == 404
        assert session.post(f"/admin/keys/{victim.id}/rotate", {"grace_seconds": "0"}).status_code == 404
    assert keys.get("admin-revoke", user=hv.admin).is_active()
    assert writer.post("/admin/keys/99999999999999999999999/revoke").status_code == 404  # not a 500
    # The owner can.
    _k, mine = keys.create(hv.runtime.app_secret, "writer-own", [["api", "read"]], user=web_world["people"]["writer"])
    own_id = keys.get("writer-own", user=web_world["people"]["writer"]).id
    assert writer.post(f"/admin/keys/{own_id}/revoke", {"confirm": "yes"}).status_code == 200
    assert hv.api("GET", "users/me", key=mine).status_code == 401


def test_only_appliance_administrators_reset_passwords(hv, web_world):
    orgadmin = WebSession(hv.url)
    assert orgadmin.login("orgadmin", "orgadmin-password").status_code == 200
    for username in ("writer", "admin", "orgadmin"):
        response = orgadmin.post(f"/admin/users/{username}/password", {"password": "hijacked-password"})
        assert response.status_code == 403 and "Only appliance administrators" in response.text
    accounts.check_login("writer", "writer-password", rounds=4)  # unchanged
    accounts.check_login("admin", "admin-password", rounds=4)
    assert WebSession(hv.url).login("writer", "hijacked-password").status_code == 401


@pytest.mark.parametrize("role", ["read", "write"])
def test_only_organization_admins_revoke_or_rotate_organization_keys(hv, web_world, role):
    member = web_world["sessions"][f"{role} member"]
    target = web_world["org_keys"]["deploy-revoke"]
    response = member.post(f"/admin/keys/{target.id}/revoke")
    assert response.status_code == 403 and "Only administrators of this organization" in response.text
    assert member.post(f"/admin/keys/{target.id}/rotate", {"grace_seconds": "0"}).status_code == 403
    assert member.post("/admin/orgs/acme/keys", {"name": "mine", "repository": "1"}).status_code == 403
    # The same through the API, with the member's own api:write key.
    user = web_world["people"]["reader" if role == "read" else "writer"]
    _k, api_key = keys.create(hv.runtime.app_secret, "member-write", [["api", "write"]], user=user)
    assert hv.api("DELETE", "orgs/acme/keys/deploy-revoke", key=api_key).status_code == 403
    assert hv.api("DELETE", "orgs/acme/keys", key=api_key).status_code == 403
    assert hv.api("POST", "orgs/acme/keys", key=api_key,
                  body={"name": "x", "permissions": [{"domain": "repository", "resource": "acme"}]}).status_code == 403
    assert [k.name for k in keys.list_for(organization=hv.org, include_revoked=False)] == \
        ["deploy-rotate", "deploy-revoke", "acme-read"]
    # An organization admin who is no appliance admin may.
    orgadmin = WebSession(hv.url)
    assert orgadmin.login("orgadmin", "orgadmin-password").status_code == 200
    assert orgadmin.post(f"/admin/keys/{target.id}/revoke", {"confirm": "yes"}).status_code == 200
    assert not keys.get_by_id(target.id).is_active()


def test_a_disabled_user_is_refused_everywhere_until_enabled(hv, web_world):
    user = accounts.create_user("leaver", "leaver-password", rounds=4)
    orgs.add_member(hv.org, user, "admin")
    _k, api_key = keys.create(hv.runtime.app_secret, "leaver-key", [["api", "write"], ["repository", "acme"]], user=user)
    session = WebSession(hv.url)
    assert session.login("leaver", "leaver-password").status_code == 200
    assert hv.api("GET", "users/me", key=api_key).status_code == 200
    admin = WebSession(hv.url)
    admin.login()
    assert admin.post("/admin/users/leaver/disabled", {"disabled": "1"}).status_code == 200
    assert accounts.get_user("leaver").disabled_at is not None
    # The open session, a new login (with the same answer as a wrong password), Basic auth, keys.
    assert session.get("/admin/keys", allow_redirects=False).status_code == 302
    again = WebSession(hv.url).login("leaver", "leaver-password")
    assert again.status_code == 401 and "Invalid username and password combination" in again.text
    basic = ("leaver", "leaver-password")
    assert hv.http.get(f"{hv.url}/api/users/me", auth=basic).status_code == 401
    assert hv.http.get(f"{hv.url}/repos/acme/names", auth=basic).status_code == 401
    assert hv.api("GET", "users/me", key=api_key).status_code == 401
    assert hv.repo("names", key=api_key).status_code == 401
    assert "user.disable" in admin.get("/admin/audit?action=user.disable").text
    # An administrator cannot lock themselves out this way.
    own = admin.post("/admin/users/admin/disabled", {"disabled": "1"})
    assert own.status_code == 422 and accounts.get_user("admin").disabled_at is None
    # Enabled again, everything works again, except the sessions disabling ended.
    assert admin.post("/admin/users/leaver/disabled", {"disabled": "0"}).status_code == 200
    assert session.get("/admin/keys", allow_redirects=False).status_code == 302
    assert WebSession(hv.url).login("leaver", "leaver-password").status_code == 200
    assert hv.api("GET", "users/me", key=api_key).status_code == 200


def test_key_pages_name_only_the_callers_keys(hv, web_world):
    page = web_world["sessions"]["write member"].get("/admin/keys").text
    assert "admin-revoke" not in page and "deploy-revoke" not in page
    assert re.search(r"/admin/keys/\d+/revoke", page) is None  # the writer has no keys yet


def test_a_user_key_never_carries_more_than_its_user_holds(hv, web_world):
    reader = web_world["sessions"]["read member"]
    for form in ({"name": "wide", "repository": "beta"}, {"name": "wide", "repository": "nosuch"}):
        response = reader.post("/admin/keys", form)
        assert response.status_code == 403 and "ou cannot grant repository:" in response.text
    assert keys.list_for(user=web_world["people"]["reader"]) == []
    assert reader.post("/admin/keys", {"name": "own", "repository": "acme"}, allow_redirects=False).status_code == 303


def test_the_audit_log_shows_organization_admins_only_their_organizations(hv, web_world):
    for caller in ("read member", "write member"):
        refused_page = web_world["sessions"][caller].get("/admin/audit?org=acme")
        assert refused_page.status_code == 403 and "Only organization administrators" in refused_page.text
    orgadmin = WebSession(hv.url)
    assert orgadmin.login("orgadmin", "orgadmin-password").status_code == 200
    page = orgadmin.get("/admin/audit?org=beta")  # asks for another organization: gets its own
    assert page.status_code == 200 and '<input name="org" value="acme">' in page.text
    assert "<td>acme</td>" in page.text and "<td>beta</td>" not in page.text
    admin = WebSession(hv.url)
    admin.login()
    assert "<td>beta</td>" in admin.get("/admin/audit?org=beta").text  # the rows exist
