"""Organization webhooks: URLs that receive a signed JSON POST for every event of the organization
(ops/outbox.py lists the event types; ops/delivery.py sends them).

Each hook has a secret, shown once at creation. The server must sign with it, so unlike key
secrets it cannot be stored as a hash: it is stored encrypted with Fernet (AES-128-CBC plus
HMAC-SHA256) under a key derived from the app secret with HKDF, so a copy of the database alone
does not give it away. A receiver checks ``X-Hub-Signature-256: sha256=HEX``, the HMAC-SHA256
of the raw body under the secret, exactly as for GitHub's webhooks.

A hook URL must be http(s), carry no user name or password (it is shown in the admin UI), and not
point at this server itself.
"""

import base64
import hashlib
import hmac
import ipaddress
import secrets
import urllib.parse

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance import audit
from appliance.db import write_tx
from appliance.errors import Conflict, HexvaultError, Invalid, NotFound
from appliance.models import Webhook, WebhookDelivery, WebhookEvent, utcnow

MAX_URL_LENGTH = 2000
MAX_HOOKS_PER_ORGANIZATION = 20
SIGNATURE_HEADER = "X-Hub-Signature-256"


class SecretUnreadable(HexvaultError):
    """A stored hook secret that the app secret cannot decrypt (the app secret was replaced)."""

    status = 500
    message = "the webhook secret cannot be decrypted with this server's app secret; delete and re-create the hook"


def _fernet(app_secret):
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"hexvault webhook secrets").derive(app_secret)
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(app_secret, secret):
    return _fernet(app_secret).encrypt(secret.encode()).decode()


def decrypt_secret(app_secret, token):
    try:
        return _fernet(app_secret).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable() from None


def sign(secret, body):
    """The X-Hub-Signature-256 value of ``body`` (bytes) under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _bad_url(message):
    return Invalid("Validation error(s)", {"url": message})


def _default_port(scheme):
    return 443 if scheme == "https" else 80


def _is_loopback_or_any(host):
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _points_at_server(config, host, port):
    """Whether host:port is this server: its external URL, its listen address, or a loopback or
    wildcard address on its port. (A DNS name of this machine other than base_url's is not
    resolved here: delivery has a timeout either way.)"""
    own = urllib.parse.urlsplit(config.external_url)
    own_host = (own.hostname or "").lower()
    if (host, port) in {(own_host, own.port or _default_port(own.scheme)), (config.host.lower(), config.port)}:
        return True
    return port == config.port and _is_loopback_or_any(host)


def check_url(config, url):
    """The URL, stripped, or Invalid with a sentence saying what is wrong with it."""
    url = (url or "").strip()
    if not url:
        raise _bad_url("can't be blank")
    if len(url) > MAX_URL_LENGTH:
        raise _bad_url(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _bad_url(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad_url("must be an http:// or https:// URL with a host name")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise _bad_url("must not contain spaces or control characters")
    if parts.username is not None or parts.password is not None:
        raise _bad_url("must not contain a user name or password (put a token in the path or rely on the signature)")
    if _points_at_server(config, parts.hostname.lower(), port or _default_port(parts.scheme)):
        raise _bad_url("points at this Hexvault server itself; give the address of the receiving service")
    return url


def create(rt, org, url, *, actor=audit.CLI):
    """Add a hook to ``org``; returns (hook, secret). The secret is shown only this once."""
    url = check_url(rt.config, url)
    secret = secrets.token_hex(32)
    with write_tx():
        if Webhook.select().where(Webhook.organization == org.id).count() >= MAX_HOOKS_PER_ORGANIZATION:
            raise Invalid("Validation error(s)", {"url": f"an organization has at most {MAX_HOOKS_PER_ORGANIZATION} webhooks"})
        if Webhook.select().where((Webhook.organization == org.id) & (Webhook.url == url)).exists():
            # A second hook on one URL would deliver every event twice.
            raise Conflict(f"{url} already receives {org.name}'s events",
                           {"url": "is already a webhook of this organization"})
        hook = Webhook.create(organization=org, url=url, secret_encrypted=encrypt_secret(rt.app_secret, secret))
        audit.record(actor, "webhook.create", organization=org, target=url)
    return hook, secret


def delete(hook, *, actor=audit.CLI):
    """Remove a hook and its deliveries (pending ones are never sent)."""
    with write_tx():
        hook.delete_instance(recursive=True)
        audit.record(actor, "webhook.delete", organization=hook.organization, target=hook.url)


def list_for(org):
    return list(Webhook.select().where(Webhook.organization == org.id).order_by(Webhook.id))


def get(org, hook_id):
    hook = Webhook.get_or_none((Webhook.id == hook_id) & (Webhook.organization == org.id))
    if hook is None:
        raise NotFound("no such webhook")
    return hook


def recent_deliveries(hook, limit=30):
    """The hook's latest deliveries, newest first, each with its event."""
    return list(WebhookDelivery.select(WebhookDelivery, WebhookEvent).join(WebhookEvent)
                .where(WebhookDelivery.webhook == hook.id).order_by(WebhookDelivery.id.desc()).limit(limit))


def redeliver(hook, delivery_id, *, actor=audit.CLI):
    """Send an event to the hook again, as a new delivery with the same event id (receivers
    de-duplicate on it) and a fresh round of retries."""
    original = WebhookDelivery.get_or_none((WebhookDelivery.id == delivery_id) & (WebhookDelivery.webhook == hook.id))
    if original is None:
        raise NotFound("no such delivery")
    with write_tx():
        again = WebhookDelivery.create(webhook=hook, event=original.event_id, redelivery=True, next_attempt_at=utcnow())
        audit.record(actor, "webhook.redeliver", organization=hook.organization, target=hook.url,
                     event=original.event.event_id)
    return again
