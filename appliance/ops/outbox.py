"""The webhook outbox: events written in the same transaction as the change they describe.

``audit.record`` calls ``enqueue`` with the audit row it just wrote, inside the caller's
``write_tx()``; so a change, its audit row and its webhook event commit together or not at all,
and no domain module knows about webhooks. For an organization with hooks, ``enqueue`` stores the
event's JSON body once (the exact bytes that will be signed and sent) and one pending
``WebhookDelivery`` per hook; ops/delivery.py sends them later. Organizations without hooks cost
one indexed query per audited change and store nothing.
"""

import json
import uuid

from appliance.models import Organization, Webhook, WebhookDelivery, WebhookEvent

# Audit actions that become webhook events, under the same names.
EVENT_TYPES = (
    "release.publish", "release.replace", "release.revert", "release.retire", "release.unretire",
    "docs.publish", "docs.revert",
    "key.generate", "key.revoke", "key.rotate",
    "membership.add", "membership.role", "membership.remove",
)
_EVENT_TYPES = frozenset(EVENT_TYPES)
# Audit targets of these actions are "PACKAGE VERSION"; the payload also gives them apart.
_RELEASE_TARGETS = ("release.", "docs.")


def payload(event_id, entry):
    """The JSON body of the event for an audit row. IP address and user agent stay in the audit
    log: receivers are other systems, not auditors."""
    body = {
        "id": event_id,
        "type": entry.action,
        "created_at": entry.created_at.isoformat(timespec="seconds") + "Z",
        "organization": entry.organization,
        "actor": entry.actor,
        "target": entry.target,
        "details": entry.details,
    }
    if entry.action.startswith(_RELEASE_TARGETS) and entry.target and " " in entry.target:
        body["package"], body["version"] = entry.target.split(" ", 1)
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def enqueue(entry):
    """Queue the event of audit row ``entry`` for every hook of its organization; call it inside
    the transaction that wrote the row (audit.record does). Returns the event or None."""
    if entry.action not in _EVENT_TYPES or not entry.organization:
        return None
    hooks = list(Webhook.select(Webhook.id, Webhook.organization).join(Organization)
                 .where(Organization.name == entry.organization).tuples())
    if not hooks:
        return None
    event_id = uuid.uuid4().hex
    event = WebhookEvent.create(event_id=event_id, organization=hooks[0][1], type=entry.action,
                                body=payload(event_id, entry), created_at=entry.created_at)
    WebhookDelivery.insert_many([dict(webhook=hook_id, event=event.id, next_attempt_at=entry.created_at)
                                 for hook_id, _org_id in hooks]).execute()
    return event
