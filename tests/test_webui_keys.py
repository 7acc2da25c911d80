"""Issue 13.2: key rotation that does not break CI, over real HTTP and the real CLI: a day of
grace unless chosen, the page after a rotation, post/redirect/get for every new secret, revoke
behind a confirmation, and keys refused at creation for what their owner cannot read."""

import re

from appliance import accounts, keys, orgs
from tests.test_cli import run
from tests.webclient import WebSession

SECRET_RE = re.compile(r'<pre id="secret" class="secret">([0-9a-f]{32})</pre>')


def _admin(hv):
    session = WebSession(hv.url)
    assert session.login().status_code == 200
    return session


def _org_key(web, name="deploy"):
    created = web.post("/admin/orgs/acme/keys", {"name": name, "repository": "1"})
    return created, SECRET_RE.search(created.text).group(1), keys.get(name, organization=orgs.get("acme"))


def test_a_new_key_is_shown_once_after_a_redirect_and_a_reload_makes_no_second_key(hv):
    web = _admin(hv)
    created, secret, key = _org_key(web)
    assert created.history[0].status_code == 303 and created.url.endswith(f"/admin/keys/{key.id}/created")
    assert created.headers["Cache-Control"] == "no-store"
    assert hv.repo("names", key=secret).status_code == 200
    reloaded = web.get(f"/admin/keys/{key.id}/created")
    assert reloaded.status_code == 200 and "secret-gone" in reloaded.text and secret not in reloaded.text
    assert [k.name for k in keys.list_for(organization=hv.org)].count("deploy") == 1
    assert secret not in str(web.http.cookies.get_dict())  # the secret never sat readable in the cookie
    mine = web.post("/admin/keys", {"name": "laptop", "api": "read"})
    assert mine.history[0].status_code == 303 and SECRET_RE.search(mine.text)
    # Another user cannot open the page of someone else's key.
    other = accounts.create_user("other", "other-password", rounds=4)
    orgs.add_member(hv.org, other, "read")
    snoop = WebSession(hv.url)
    snoop.login("other", "other-password")
    assert snoop.get(f"/admin/keys/{key.id}/created").status_code == 403


def test_rotation_keeps_the_old_secret_for_a_day_unless_chosen_and_says_until_when(hv):
    web = _admin(hv)
    _created, old, key = _org_key(web)
    page = web.get("/admin/orgs/acme").text
    assert re.search(r'<select name="grace_seconds"><option value="86400">in 24 hours</option>', page)
    rotated = web.post(f"/admin/keys/{key.id}/rotate", {})  # no choice sent: the default
    assert rotated.history[0].status_code == 303
    new = SECRET_RE.search(rotated.text).group(1)
    text = re.sub(r"<[^>]+>", "", rotated.text)
    assert "Key deploy rotated" in text and "The new key is named deploy." in text
    retired = keys.find_by_id(key.id)
    assert f"keeps working until\n    {retired.expires_at.strftime('%Y-%m-%d %H:%M')} UTC" in text
    assert 23.9 * 3600 < (retired.expires_at - retired.created_at).total_seconds() < 24.1 * 3600
    assert hv.repo("names", key=old).status_code == 200 and hv.repo("names", key=new).status_code == 200
    # Immediately, when chosen.
    new_key = keys.get("deploy", organization=hv.org)
    now = web.post(f"/admin/keys/{new_key.id}/rotate", {"grace_seconds": "0"})
    assert "The old secret has stopped working." in now.text
    assert hv.repo("names", key=new).status_code == 401


def test_revoke_asks_first_and_an_already_revoked_key_says_so(hv):
    web = _admin(hv)
    _created, secret, key = _org_key(web)
    asked = web.post(f"/admin/keys/{key.id}/revoke")
    assert asked.status_code == 200 and "Revoke key deploy?" in asked.text
    assert hv.repo("names", key=secret).status_code == 200  # asking changed nothing
    done = web.post(f"/admin/keys/{key.id}/revoke", {"confirm": "yes"})
    assert "Key deploy revoked" in done.text
    assert hv.repo("names", key=secret).status_code == 401
    again = web.post(f"/admin/keys/{key.id}/revoke", {"confirm": "yes"})
    assert "Key deploy was already revoked." in again.text


def test_a_key_for_a_repository_its_owner_cannot_read_is_refused_with_the_reason(hv, tmp_path):
    beta = orgs.create("beta")
    user = accounts.create_user("carol", "carol-password", rounds=4)
    orgs.add_member(beta, user, "read")
    carol = WebSession(hv.url)
    carol.login("carol", "carol-password")
    refused = carol.post("/admin/keys", {"name": "ci", "repository": "acme"})
    assert refused.status_code == 403
    assert "You cannot grant repository:acme: a key never reads more than its owner" in refused.text
    assert keys.list_for(user=user) == []


def test_cli_rotates_with_a_grace_period_and_refuses_what_the_owner_cannot_read(tmp_path):
    assert run(tmp_path, "init", "--admin-password", "first-password", "--org", "acme").exit_code == 0
    assert run(tmp_path, "org", "create", "beta").exit_code == 0
    assert run(tmp_path, "user", "create", "alice", "--password", "alice-password").exit_code == 0
    assert run(tmp_path, "org", "add-member", "acme", "alice", "--role", "read").exit_code == 0
    refused = run(tmp_path, "key", "create", "ci", "--user", "alice", "-p", "repository:beta")
    assert refused.exit_code == 1 and "you cannot grant repository:beta" in refused.output
    assert run(tmp_path, "key", "create", "ci", "--user", "alice", "-p", "repository:acme").exit_code == 0
    rotated = run(tmp_path, "key", "rotate", "ci", "--user", "alice")
    assert rotated.exit_code == 0 and re.search(r"key ci rotated: [0-9a-f]{32}", rotated.output)
    assert "The old secret works until" in rotated.output and "(listed as ci-rotated-" in rotated.output
    listed = run(tmp_path, "key", "list", "--user", "alice").output
    assert re.search(r"ci-rotated-\d+\trepository:acme\tactive", listed)
    now = run(tmp_path, "key", "rotate", "ci", "--user", "alice", "--grace", "0")
    assert now.exit_code == 0 and "The old secret has stopped working." in now.output
    bad = run(tmp_path, "key", "rotate", "ci", "--user", "alice", "--grace", "soon")
    assert bad.exit_code == 2 and "24h" in bad.output
    assert run(tmp_path, "key", "revoke", "ci", "--user", "alice").exit_code == 0
    again = run(tmp_path, "key", "revoke", "ci", "--user", "alice")
    assert again.exit_code == 1 and "key ci is already revoked" in again.output
