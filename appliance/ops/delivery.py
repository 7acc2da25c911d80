"""Sending the webhook outbox: at-least-once, with retries, across restarts and kill -9.

A ``WebhookDelivery`` row is one event for one hook. Workers *claim* a due row by leasing it
(``lease_owner``, ``lease_expires_at``) in an IMMEDIATE transaction, so two threads or two
processes never send the same attempt at once; they POST outside any transaction, then record
the outcome only if they still hold the lease. A 2xx answer marks it delivered. Anything else
(another status, a refused connection, a timeout after ``webhook_timeout`` seconds) schedules a
retry after ``webhook_retry_seconds`` doubling per attempt up to ``webhook_retry_max_seconds``,
and after ``webhook_max_attempts`` attempts the delivery is marked failed (the admin UI can
redeliver it). A process killed mid-POST leaves a lease that expires, after which the attempt is
made again: a receiver may see an event twice and de-duplicates on ``X-Hexvault-Event-Id``.

Headers of every POST: ``Content-Type: application/json``, ``X-Hexvault-Event`` (the type),
``X-Hexvault-Event-Id`` (the same on retries and redeliveries), ``X-Hexvault-Delivery`` (one per
delivery row), and ``X-Hub-Signature-256``. Redirects are not followed.

Only ``hexvault serve`` starts a ``DeliveryWorker`` (serving.start); tests start their own.
"""

import datetime
import logging
import os
import threading
import uuid

import requests
from peewee import fn

from appliance.version import __version__
from appliance.db import database, write_lock_tx
from appliance.models import Webhook, WebhookDelivery, WebhookEvent, utcnow
from appliance.ops import webhooks

log = logging.getLogger("hexvault.webhooks")

POLL_SECONDS = 1.0  # longest wait between looks for due deliveries (other processes add rows too)
RETENTION = datetime.timedelta(days=30)  # finished deliveries, and events left without any, go then
PRUNE_EVERY = datetime.timedelta(hours=1)
MAX_ERROR = 300


def lease_seconds(config):
    # Connect plus read timeout, and room to record the outcome: a live attempt never loses its lease.
    return 2 * config.webhook_timeout + 10


def backoff_seconds(config, attempts):
    """Delay before the next attempt after ``attempts`` failed ones."""
    # The exponent is capped so a large webhook_max_attempts cannot overflow the float.
    return min(config.webhook_retry_seconds * 2 ** min(attempts - 1, 40), config.webhook_retry_max_seconds)


def claim(config, owner, now=None):
    """Lease the oldest due delivery to ``owner``; returns it (with hook and event) or None."""
    now = now or utcnow()
    due = ((WebhookDelivery.state == "pending") & (WebhookDelivery.next_attempt_at <= now)
           & (WebhookDelivery.lease_expires_at.is_null() | (WebhookDelivery.lease_expires_at < now)))
    # Look without the write lock first: most polls find nothing.
    if not WebhookDelivery.select().where(due).exists():
        return None
    with write_lock_tx():
        row = WebhookDelivery.select().where(due).order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).first()
        if row is None:
            return None
        expires = now + datetime.timedelta(seconds=lease_seconds(config))
        WebhookDelivery.update(lease_owner=owner, lease_expires_at=expires).where(WebhookDelivery.id == row.id).execute()
    return (WebhookDelivery.select(WebhookDelivery, Webhook, WebhookEvent).join(Webhook)
            .switch(WebhookDelivery).join(WebhookEvent).where(WebhookDelivery.id == row.id).get())


def post(config, url, headers, body):
    """POST once; returns (HTTP status or None, error text or None)."""
    try:
        with requests.post(url, data=body, headers=headers, allow_redirects=False, stream=True,
                           timeout=(config.webhook_timeout, config.webhook_timeout)) as response:
            status = response.status_code
    except requests.Timeout:
        return None, f"timed out after {config.webhook_timeout:g} s"
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")


def attempt(rt, delivery):
    """Sign and POST a claimed delivery; returns (status, error)."""
    try:
        secret = webhooks.decrypt_secret(rt.app_secret, delivery.webhook.secret_encrypted)
    except webhooks.SecretUnreadable as exc:
        return None, exc.message
    body = delivery.event.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Hexvault-Hookshot/{__version__}",
        "X-Hexvault-Event": delivery.event.type,
        "X-Hexvault-Event-Id": delivery.event.event_id,
        "X-Hexvault-Delivery": str(delivery.id),
        webhooks.SIGNATURE_HEADER: webhooks.sign(secret, body),
    }
    return post(rt.config, delivery.webhook.url, headers, body)


def finish(config, delivery, owner, status, error, now=None):
    """Record an attempt's outcome, if ``owner`` still holds the lease (else the row was claimed
    again after the lease ran out, and that claim decides)."""
    now = now or utcnow()
    with write_lock_tx():
        attempts = delivery.attempts + 1
        fields = dict(attempts=attempts, last_status=status, last_error=error, last_attempt_at=now,
                      lease_owner=None, lease_expires_at=None)
        if error is None:
            fields.update(state="delivered", delivered_at=now)
        elif attempts >= config.webhook_max_attempts:
            fields.update(state="failed")
        else:
            fields.update(next_attempt_at=now + datetime.timedelta(seconds=backoff_seconds(config, attempts)))
        return WebhookDelivery.update(**fields).where(
            (WebhookDelivery.id == delivery.id) & (WebhookDelivery.lease_owner == owner)).execute() == 1


def deliver_next(rt, owner):
    """Claim, send and record one due delivery; False when none was due."""
    delivery = claim(rt.config, owner)
    if delivery is None:
        return False
    status, error = attempt(rt, delivery)
    if error:
        log.warning("webhook %d (%s): event %s attempt %d failed: %s", delivery.webhook.id,
                    delivery.webhook.organization.name, delivery.event.event_id, delivery.attempts + 1, error)
    finish(rt.config, delivery, owner, status, error)
    return True


def seconds_until_due(now=None):
    """Seconds until a pending delivery can next be claimed (None if there is none): the earliest
    due time of unleased rows, or the earliest end of a lease another worker holds."""
    now = now or utcnow()
    pending = WebhookDelivery.state == "pending"
    unleased = WebhookDelivery.lease_expires_at.is_null() | (WebhookDelivery.lease_expires_at < now)
    times = [
        WebhookDelivery.select(fn.MIN(WebhookDelivery.next_attempt_at)).where(pending & unleased).scalar(),
        WebhookDelivery.select(fn.MIN(WebhookDelivery.lease_expires_at)).where(pending & ~unleased).scalar(),
    ]
    times = [t if isinstance(t, datetime.datetime) else datetime.datetime.fromisoformat(t) for t in times if t]
    return max(0.0, (min(times) - now).total_seconds()) if times else None


def prune(now=None):
    """Forget finished deliveries older than RETENTION and events that no delivery needs."""
    cutoff = (now or utcnow()) - RETENTION
    with write_lock_tx():
        WebhookDelivery.delete().where((WebhookDelivery.state != "pending") & (WebhookDelivery.created_at < cutoff)).execute()
        needed = WebhookDelivery.select(WebhookDelivery.event)
        WebhookEvent.delete().where((WebhookEvent.created_at < cutoff) & WebhookEvent.id.not_in(needed)).execute()


class DeliveryWorker:
    """``webhook_workers`` threads sending due deliveries until ``stop``. A hook that hangs holds
    one thread for at most the timeout; the others go on."""

    def __init__(self, rt, threads=None):
        self.rt = rt
        self.count = rt.config.webhook_workers if threads is None else threads
        self._stop = threading.Event()
        self._threads = []
        self._process = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def start(self):
        for number in range(self.count):
            thread = threading.Thread(target=self._run, args=(f"{self._process}:{number}",),
                                      name=f"hexvault-webhooks-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout=None):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=lease_seconds(self.rt.config) if timeout is None else timeout)

    def _run(self, owner):
        next_prune = utcnow()
        database.connect(reuse_if_open=True)
        try:
            while not self._stop.is_set():
                try:
                    if utcnow() >= next_prune and owner.endswith(":0"):
                        prune()
                        next_prune = utcnow() + PRUNE_EVERY
                    if deliver_next(self.rt, owner):
                        continue
                    wait = seconds_until_due()
                except Exception:  # a database hiccup must not end delivery for good
                    log.exception("webhook delivery loop")
                    wait = None
                self._stop.wait(POLL_SECONDS if wait is None else min(wait, POLL_SECONDS))
        finally:
            database.close()
