"""The audit log: who did what, written inside the same transaction as the change itself.

Each row is also offered to the webhook outbox (ops/outbox.py), in the same transaction, so an
organization's hooks hear of exactly the changes that committed; and it is an ``audit`` event
(events.py), emitted once the transaction commits, which the server logs and counts in /metrics.
"""

import csv
import dataclasses
import datetime
import io
import json

from appliance import events
from appliance.db import write_tx
from appliance.errors import Invalid
from appliance.models import AuditLog
from appliance.ops import outbox


@dataclasses.dataclass(frozen=True)
class AuditContext:
    """Who is acting and from where; built by the web layer or the CLI and passed in as data."""

    user: object = None  # models.User or None
    key_name: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    via: str = "api"  # api, web, cli, import

    @property
    def actor(self):
        if self.user is not None:
            name = self.user.username
            return f"{name} (key {self.key_name})" if self.key_name else name
        if self.key_name:
            return f"key {self.key_name}"
        return self.via


CLI = AuditContext(via="cli")
SYSTEM = AuditContext(via="system")


def record(ctx, action, organization=None, target=None, **details):
    """Write one audit row; call it inside the caller's write_tx()."""
    org_name = getattr(organization, "name", organization)
    details = {k: v for k, v in details.items() if v is not None}
    details.setdefault("via", ctx.via)
    entry = AuditLog.create(
        user=ctx.user, actor=ctx.actor, action=action, organization=org_name, target=target,
        details=details, ip=ctx.ip, user_agent=(ctx.user_agent or "")[:300] or None)
    outbox.enqueue(entry)
    events.emit_after_commit("audit", action=action, actor=entry.actor, organization=org_name, target=target,
                             details=details, ip=ctx.ip)
    return entry


LOGIN_ACTIONS = ("user.login", "user.login_failed", "user.login_locked")


def record_login(ctx, action, username):
    """A web login, failed login or refusal while locked out, in its own transaction: who was
    tried (``username``) and from where (``ctx.ip``), never the password."""
    assert action in LOGIN_ACTIONS
    with write_tx():
        record(ctx, action, target=(username or "")[:100])


def _filtered(organization=None, username=None, action=None, since=None, until=None):
    """Rows matching every filter given: ``username`` exactly (what they did, with a password or
    one of their keys, and what was done to their account), ``action`` exactly or, ending in a
    dot, a family ("key."), ``since``/``until`` datetimes (until exclusive)."""
    query = AuditLog.select()
    if organization:
        query = query.where(AuditLog.organization == organization)
    if username:
        query = query.where((AuditLog.actor == username) | AuditLog.actor.startswith(f"{username} (key ")
                            | ((AuditLog.target == username) & AuditLog.action.startswith("user.")))
    if action:
        query = query.where(AuditLog.action.startswith(action) if action.endswith(".") else AuditLog.action == action)
    if since:
        query = query.where(AuditLog.created_at >= since)
    if until:
        query = query.where(AuditLog.created_at < until)
    return query


def entries(organization=None, username=None, action=None, limit=200, before_id=None, since=None, until=None):
    """The newest ``limit`` matching rows older than row ``before_id`` (paging backwards)."""
    query = _filtered(organization, username, action, since, until).order_by(AuditLog.id.desc())
    if before_id:
        query = query.where(AuditLog.id < before_id)
    return list(query.limit(limit))


def iter_entries(organization=None, username=None, action=None, since=None, until=None):
    """Every matching row, oldest first, fetched in pages (for exports of any size)."""
    query = _filtered(organization, username, action, since, until).order_by(AuditLog.id)
    last = 0
    while True:
        page = list(query.where(AuditLog.id > last).limit(1000))
        yield from page
        if len(page) < 1000:
            return
        last = page[-1].id


@dataclasses.dataclass(frozen=True)
class Filters:
    """What the audit page, its exports and ``hexvault audit`` select by; empty means any."""

    organization: str | None = None
    username: str | None = None
    action: str | None = None
    since: datetime.datetime | None = None  # from the start of this day (UTC)
    until: datetime.datetime | None = None  # up to the end of the day given (UTC)

    @classmethod
    def parse(cls, organization=None, username=None, action=None, since=None, until=None):
        """From typed text; dates are YYYY-MM-DD (UTC days, both ends included)."""
        def day(field, text):
            try:
                return datetime.datetime.strptime(text.strip(), "%Y-%m-%d")
            except ValueError:
                raise Invalid("Validation error(s)", {field: "Write the date as YYYY-MM-DD, e.g. 2026-12-03."}) from None

        clean = {k: (v or "").strip() or None for k, v in
                 dict(organization=organization, username=username, action=action).items()}
        start = day("since", since) if (since or "").strip() else None
        end = day("until", until) + datetime.timedelta(days=1) if (until or "").strip() else None
        return cls(since=start, until=end, **clean)

    def query(self):
        return dict(organization=self.organization, username=self.username, action=self.action,
                    since=self.since, until=self.until)


EXPORT_FIELDS = ("id", "created_at", "actor", "action", "organization", "target", "details", "ip", "user_agent")


def as_dict(entry):
    return {"id": entry.id, "created_at": entry.created_at.isoformat(timespec="seconds") + "Z", "actor": entry.actor,
            "action": entry.action, "organization": entry.organization, "target": entry.target,
            "details": entry.details, "ip": entry.ip, "user_agent": entry.user_agent}


def export_jsonl(rows):
    """One JSON object per line, per row."""
    for entry in rows:
        yield json.dumps(as_dict(entry), sort_keys=True) + "\n"


def _cell(value):
    # A spreadsheet would run a cell starting like a formula (a key named "=HYPERLINK(...)"):
    # a leading apostrophe keeps it text.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(rows):
    """A header line, then one CSV line per row (details as JSON)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush():
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(EXPORT_FIELDS)
    yield flush()
    for entry in rows:
        row = as_dict(entry)
        row["details"] = json.dumps(row["details"], sort_keys=True)
        writer.writerow([_cell(row[f]) for f in EXPORT_FIELDS])
        yield flush()
