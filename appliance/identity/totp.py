"""Two-factor authentication for local accounts: TOTP (RFC 6238, ``pyotp``) plus recovery codes.

Enrolment: ``begin`` stores a new secret (not yet enabled) and gives the ``otpauth://`` URI for
the QR code; ``enable`` turns it on once a code from the app proves the app has it, and returns
ten recovery codes, shown once (only their SHA-256 is kept; each works once). The secret itself
must be readable to check codes, so it is stored Fernet-encrypted under a key derived from the
app secret (as webhook secrets are): a copy of the database alone does not give it away.

A code is accepted within one 30 s step either way (clock drift), and never twice: the step of
the last accepted code is kept, so a code seen over a shoulder is worth nothing once used.
Guessing codes is limited like guessing passwords (the caller uses loginlimit's limits).
Enabling, disabling, an admin's reset and the use of a recovery code are audited.
"""

import base64
import hashlib
import hmac
import re
import secrets
import time

import pyotp
import qrcode
import qrcode.image.svg
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance import audit
from appliance.db import write_tx
from appliance.errors import Invalid
from appliance.models import RecoveryCode, User, utcnow

ISSUER = "Hexvault"
RECOVERY_CODES = 10
_CODE_RE = re.compile(r"\d{6}")


def _fernet(app_secret):
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"hexvault totp secrets").derive(app_secret)
    return Fernet(base64.urlsafe_b64encode(key))


def _secret(app_secret, user):
    return _fernet(app_secret).decrypt(user.totp_secret_encrypted.encode()).decode()


def _hash_recovery(code):
    return hashlib.sha256(_normal_recovery(code).encode()).hexdigest()


def _normal_recovery(code):
    return re.sub(r"[\s-]", "", code or "").lower()


def is_enabled(user):
    return user is not None and user.totp_enabled_at is not None


def begin(app_secret, user):
    """Start (or restart) enrolment: a new secret, not enabled until ``enable``. Returns it."""
    if is_enabled(user):
        raise Invalid("two-factor authentication is already on; turn it off first")
    secret = pyotp.random_base32()
    encrypted = _fernet(app_secret).encrypt(secret.encode()).decode()
    with write_tx():
        User.update(totp_secret_encrypted=encrypted, totp_last_step=None).where(User.id == user.id).execute()
    user.totp_secret_encrypted = encrypted
    return secret


def pending_secret(app_secret, user):
    """The secret being enrolled, or None."""
    if is_enabled(user) or not user.totp_secret_encrypted:
        return None
    return _secret(app_secret, user)


def provisioning_uri(secret, username):
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def qr_svg(uri):
    """The QR code of ``uri`` as an inline SVG element (no script, no external reference)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return image.to_string(encoding="unicode")


def _accepted_step(secret, code, last_step, now):
    """The time step ``code`` belongs to (this one or a neighbour), if newer than ``last_step``."""
    if not _CODE_RE.fullmatch(code or ""):
        return None
    totp = pyotp.TOTP(secret)
    step = int(now // totp.interval)
    for candidate in (step, step - 1, step + 1):
        if (last_step is None or candidate > last_step) and \
                hmac.compare_digest(totp.at(candidate * totp.interval), code):
            return candidate
    return None


def enable(app_secret, user, code, *, actor=audit.CLI, now=None):
    """Turn two-factor on with a code from the app; returns the recovery codes (shown once)."""
    secret = pending_secret(app_secret, user)
    if secret is None:
        raise Invalid("start setting up two-factor authentication first")
    step = _accepted_step(secret, (code or "").strip(), None, time.time() if now is None else now)
    if step is None:
        raise Invalid("that code is not the one your app shows now; check the phone's clock and try again")
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODES)]
    stamp = utcnow()
    with write_tx():
        User.update(totp_enabled_at=stamp, totp_last_step=step).where(User.id == user.id).execute()
        RecoveryCode.delete().where(RecoveryCode.user == user.id).execute()
        RecoveryCode.insert_many([{"user": user.id, "code_hash": _hash_recovery(c)} for c in codes]).execute()
        audit.record(actor, "user.2fa_enable", target=user.username)
    user.totp_enabled_at, user.totp_last_step = stamp, step
    return codes


def verify(app_secret, user, code, *, actor=audit.CLI, now=None):
    """True for a current, unused TOTP code or an unused recovery code of ``user`` (used up by
    this call), else False."""
    if not is_enabled(user):
        return False
    code = (code or "").strip()
    step = _accepted_step(_secret(app_secret, user), code, user.totp_last_step, time.time() if now is None else now)
    if step is not None:
        with write_tx():
            # The step only moves forward: of two logins racing with one code, one wins.
            won = User.update(totp_last_step=step).where(
                (User.id == user.id) & (User.totp_last_step.is_null() | (User.totp_last_step < step))).execute()
        user.totp_last_step = step
        return bool(won)
    if _CODE_RE.fullmatch(code):
        return False
    with write_tx():
        used = (RecoveryCode.update(used_at=utcnow())
                .where((RecoveryCode.user == user.id) & (RecoveryCode.code_hash == _hash_recovery(code))
                       & RecoveryCode.used_at.is_null()).execute())
        if used:
            left = RecoveryCode.select().where((RecoveryCode.user == user.id) & RecoveryCode.used_at.is_null()).count()
            audit.record(actor, "user.2fa_recovery_code", target=user.username, codes_left=left)
    return bool(used)


def recovery_codes_left(user):
    return RecoveryCode.select().where((RecoveryCode.user == user.id) & RecoveryCode.used_at.is_null()).count()


def disable(user, *, actor=audit.CLI, action="user.2fa_disable"):
    """Turn two-factor off (the user, after a code; or an admin's reset: ``user.2fa_reset``)."""
    with write_tx():
        User.update(totp_secret_encrypted=None, totp_enabled_at=None, totp_last_step=None).where(
            User.id == user.id).execute()
        RecoveryCode.delete().where(RecoveryCode.user == user.id).execute()
        audit.record(actor, action, target=user.username)
    user.totp_secret_encrypted = user.totp_enabled_at = user.totp_last_step = None


def reset(user, *, actor=audit.CLI):
    """An admin turns a user's two-factor off (a lost phone and no recovery codes left)."""
    disable(user, actor=actor, action="user.2fa_reset")


def required(config, user):
    """Whether ``user`` must have two-factor on before doing anything (an admin, when the
    ``require_2fa_for_admins`` setting says so; a directory's users answer to the directory)."""
    return bool(config.require_2fa_for_admins and user.is_admin and user.auth_source == "local")
