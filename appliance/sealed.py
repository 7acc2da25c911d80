"""Short-lived secrets sealed for a trip through the browser (Fernet under a key derived from the
app secret): a new key's secret waits in the signed session cookie between the POST that made it
and the one GET that shows it, unreadable to anyone who sees the cookie."""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAX_AGE = 600  # seconds: a secret not looked at within this is not shown any more


def _fernet(app_secret):
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"hexvault shown-once secrets").derive(app_secret)
    return Fernet(base64.urlsafe_b64encode(key))


def seal(app_secret, text):
    return _fernet(app_secret).encrypt(text.encode()).decode()


def unseal(app_secret, token):
    """The sealed text, or None when it is not ours, was tampered with or is too old."""
    try:
        return _fernet(app_secret).decrypt(token.encode(), ttl=MAX_AGE).decode()
    except (InvalidToken, AttributeError):
        return None
