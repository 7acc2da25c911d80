"""Issue 13.3: an audit log an auditor can use, over real HTTP and the real CLI: every page of it,
filters by organization, exact user, action and dates, CSV and JSON-lines exports of exactly
what the filter shows, and the UI's words for actions."""

import csv
import datetime
import io
import json
import re

from appliance import accounts, audit, keys, orgs
from appliance.db import write_tx
from appliance.models import AuditLog
from tests.test_cli import run
from tests.webclient import WebSession


def _admin(hv):
    session = WebSession(hv.url)
    assert session.login().status_code == 200
    return session


def _record_many(count, **where):
    ctx = audit.AuditContext(user=accounts.get_user("admin"), via="web", ip="10.0.0.9")
    with write_tx():
        for n in range(count):
            audit.record(ctx, "release.publish", target=f"pkg{n} 1.0.0", **where)


def test_paging_reaches_every_row_and_exports_hold_every_filtered_row(hv):
    _record_many(230, organization="acme")
    web = _admin(hv)
    every = [e.id for e in AuditLog.select().order_by(AuditLog.id.desc())]
    seen, path = [], "/admin/audit"
    while path:
        page = web.get(path.replace("&amp;", "&")).text
        seen += [int(n) for n in re.findall(r'data-id="(\d+)"', page)]
        older = re.search(r'id="older" href="([^"]+)"', page)
        path = older.group(1) if older else None
    assert seen == every and len(seen) > 230

    csv_export = web.get("/admin/audit/export.csv?org=acme&action=release.publish")
    assert csv_export.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_export.text)))
    assert len(rows) == 230 and {r["action"] for r in rows} == {"release.publish"}
    assert rows[0]["target"] == "pkg0 1.0.0" and rows[0]["ip"] == "10.0.0.9" and rows[0]["actor"] == "admin"
    lines = web.get("/admin/audit/export.jsonl?org=acme&action=release.publish").text.splitlines()
    assert [json.loads(line)["target"] for line in lines] == [f"pkg{n} 1.0.0" for n in range(230)]


def test_filters_user_exactly_action_organization_and_date_range(hv):
    web = _admin(hv)
    ann = accounts.create_user("ann", "ann-password", rounds=4)
    annie = accounts.create_user("annie", "annie-password", rounds=4)
    for user in (ann, annie):
        keys.create(hv.runtime.app_secret, f"{user.username}-key", [["api", "read"]], user=user,
                    actor=audit.AuditContext(user=user, via="web"))
    page = web.get("/admin/audit?user=ann&action=key.generate").text
    assert "ann-key" in page and "annie-key" not in page
    assert "annie-key" in web.get("/admin/audit?user=annie&action=key.").text
    # Dates: a row moved to last year is found by its day and not by today's.
    old = audit.entries(action="key.generate", username="annie")[0]
    AuditLog.update(created_at=datetime.datetime(2025, 6, 1, 23, 59)).where(AuditLog.id == old.id).execute()
    june = web.get("/admin/audit?since=2025-06-01&until=2025-06-01").text
    assert "annie-key" in june and "ann-key" not in june
    today = datetime.date.today().isoformat()
    assert "annie-key" not in web.get(f"/admin/audit?since={today}").text
    bad = web.get("/admin/audit?since=yesterday")
    assert bad.status_code == 422 and "Write the date as YYYY-MM-DD" in bad.text
    # Organization, and the words of the UI: Revoke is key.revoke.
    beta = orgs.create("beta")
    key, _secret = keys.create(hv.runtime.app_secret, "beta-ci", [["repository", "beta"]], organization=beta)
    assert web.post(f"/admin/keys/{key.id}/revoke", {"confirm": "yes"}).status_code == 200
    beta_rows = web.get("/admin/audit?org=beta").text
    assert "key.revoke" in beta_rows and "beta-ci" in beta_rows and "acme-read" not in beta_rows


def test_organization_admins_read_and_export_only_their_organizations(hv):
    beta = orgs.create("beta")
    _record_many(3, organization="beta")
    boss = accounts.create_user("boss", "boss-password", rounds=4)
    orgs.add_member(hv.org, boss, "admin")
    session = WebSession(hv.url)
    assert session.login("boss", "boss-password").status_code == 200
    for path in ("/admin/audit?org=beta", "/admin/audit/export.jsonl?org=beta"):
        text = session.get(path).text
        assert "pkg0 1.0.0" not in text and "acme" in text
    del beta


def test_cli_reads_and_exports_with_the_same_filters(tmp_path):
    assert run(tmp_path, "init", "--admin-password", "first-password", "--org", "acme").exit_code == 0
    assert run(tmp_path, "user", "create", "ann", "--password", "ann-password").exit_code == 0
    assert run(tmp_path, "user", "create", "annie", "--password", "annie-password").exit_code == 0
    assert run(tmp_path, "key", "create", "ci", "--org", "acme", "-p", "repository:acme").exit_code == 0
    assert run(tmp_path, "key", "revoke", "ci", "--org", "acme").exit_code == 0
    text = run(tmp_path, "audit", "--user", "ann")
    assert text.exit_code == 0 and "user.create\t-\tann\t" in text.output and "annie" not in text.output
    revoked = run(tmp_path, "audit", "--org", "acme", "--action", "key.revoke", "--format", "jsonl")
    [row] = [json.loads(line) for line in revoked.output.splitlines()]
    assert (row["action"], row["target"], row["organization"]) == ("key.revoke", "ci", "acme")
    exported = run(tmp_path, "audit", "--action", "key.", "--format", "csv")
    actions = [r["action"] for r in csv.DictReader(io.StringIO(exported.output))]
    assert actions[-1] == "key.revoke" and set(actions) == {"key.generate", "key.revoke"}  # oldest first
    bad = run(tmp_path, "audit", "--since", "last week")
    assert bad.exit_code == 1 and "YYYY-MM-DD" in bad.output
    assert "--since YYYY-MM-DD" in run(tmp_path, "audit", "--help").output
