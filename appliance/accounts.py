"""Users: creation, bcrypt passwords, login checks."""

import re
import secrets

import bcrypt
import peewee

from appliance import audit, sessions
from appliance.db import write_tx
from appliance.errors import Conflict, Invalid, NotFound, Unauthenticated
from appliance.models import User, utcnow

USERNAME_RE = re.compile(r"[a-z0-9_\-.]{3,40}")  # fullmatch
MIN_PASSWORD = 8
# bcrypt only looks at the first 72 bytes; refuse longer rather than silently truncate.
MAX_PASSWORD_BYTES = 72


def generate_password():
    return secrets.token_urlsafe(15)


def hash_password(password, rounds=12):
    _check_password(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def _check_password(password):
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise Invalid("Validation error(s)", {"password": f"must be at least {MIN_PASSWORD} characters"})
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise Invalid("Validation error(s)", {"password": f"must be at most {MAX_PASSWORD_BYTES} bytes"})


# Loose on purpose, like hexpm's: one @, something on each side, no spaces. Owners are listed by
# e-mail (`mix hex.owner list`), so a typo shows there; nothing is ever mailed.
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")  # fullmatch
MAX_PROFILE_FIELD = 160
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _profile(email, full_name):
    """Cleaned (email, full_name); blank means none. Clients print both in tables and the audit
    log shows them, so control characters are refused."""
    email = (email or "").strip(" ") or None
    full_name = " ".join(part for part in (full_name or "").split(" ") if part) or None
    errors = {}
    if email is not None and (not EMAIL_RE.fullmatch(email) or _CONTROL.search(email)
                              or len(email) > MAX_PROFILE_FIELD):
        errors["email"] = "must look like name@host"
    if full_name is not None and (_CONTROL.search(full_name) or len(full_name) > MAX_PROFILE_FIELD):
        errors["full_name"] = f"use at most {MAX_PROFILE_FIELD} characters, no control characters"
    if errors:
        raise Invalid("Validation error(s)", errors)
    return email, full_name


def canonical_username(text):
    """How a typed username is looked up: spaces trimmed (never newlines or NULs: those make it
    invalid), lower-cased only when ASCII. Lower-casing other text could turn a look-alike into a
    real name (the Kelvin sign lowers to "k")."""
    text = (text or "").strip(" ") if isinstance(text, str) else ""
    return text.lower() if text.isascii() else text


def create_user(username, password, *, email=None, full_name=None, is_admin=False, rounds=12, actor=audit.CLI):
    username = canonical_username(username)
    if not USERNAME_RE.fullmatch(username):
        raise Invalid("Validation error(s)",
                      {"username": "use 3-40 characters: lowercase letters, digits, _ - ."})
    email, full_name = _profile(email, full_name)
    password_hash = hash_password(password, rounds)
    try:
        with write_tx():
            user = User.create(username=username, email=email, full_name=full_name, password_hash=password_hash,
                               is_admin=is_admin)
            audit.record(actor, "user.create", target=username, admin=is_admin or None)
    except peewee.IntegrityError:
        raise Conflict(f"user {username} already exists", {"username": "has already been taken"}) from None
    return user


def get_user(username):
    user = User.get_or_none(User.username == canonical_username(username))
    if user is None:
        raise NotFound(f"no user named {username}")
    return user


def list_users():
    return list(User.select().order_by(User.username))


_UNCHANGED = object()


def update_profile(user, *, email=_UNCHANGED, full_name=_UNCHANGED, actor=audit.CLI):
    """Set the e-mail and/or full name the Hex API shows (blank clears one; a left-out one stays)."""
    new_email, new_name = _profile(user.email if email is _UNCHANGED else email,
                                   user.full_name if full_name is _UNCHANGED else full_name)
    with write_tx():
        User.update(email=new_email, full_name=new_name, updated_at=utcnow()).where(User.id == user.id).execute()
        audit.record(actor, "user.update", target=user.username,
                     fields=",".join(f for f, v in (("email", email), ("full_name", full_name)) if v is not _UNCHANGED))
    user.email, user.full_name = new_email, new_name
    return user


def set_password(user, password, *, rounds=12, actor=audit.CLI):
    """Set a new password and end every web session of the user: whoever knew the old one may
    hold one (a user changing their own password is given a new session by the web UI)."""
    password_hash = hash_password(password, rounds)
    with write_tx():
        User.update(password_hash=password_hash, updated_at=utcnow()).where(User.id == user.id).execute()
        sessions.end_all(user)
        audit.record(actor, "user.password", target=user.username)
    user.password_hash = password_hash


def set_admin(user, is_admin, *, actor=audit.CLI):
    with write_tx():
        User.update(is_admin=is_admin, updated_at=utcnow()).where(User.id == user.id).execute()
        audit.record(actor, "user.admin" if is_admin else "user.unadmin", target=user.username)
    user.is_admin = is_admin


def set_disabled(user, disabled, *, actor=audit.CLI):
    stamp = utcnow() if disabled else None
    with write_tx():
        User.update(disabled_at=stamp, updated_at=utcnow()).where(User.id == user.id).execute()
        if disabled:  # ended for good: enabling the user again must not revive them
            sessions.end_all(user)
        audit.record(actor, "user.disable" if disabled else "user.enable", target=user.username)
    user.disabled_at = stamp


_DUMMY_HASHES = {}  # bcrypt cost -> a hash to check unknown users against


def _dummy_hash(rounds):
    if rounds not in _DUMMY_HASHES:
        _DUMMY_HASHES[rounds] = bcrypt.hashpw(b"timing-equalizer", bcrypt.gensalt(rounds))
    return _DUMMY_HASHES[rounds]


def check_login(username, password, rounds=12):
    """The user for a correct username and password, else Unauthenticated (same message either
    way). ``rounds`` is the configured bcrypt cost: an unknown user costs the same check."""
    user = User.get_or_none(User.username == canonical_username(username))
    candidate = (password or "").encode()[:MAX_PASSWORD_BYTES]
    if user is None or not user.password_hash or user.disabled_at is not None:
        bcrypt.checkpw(candidate, _dummy_hash(rounds))  # keep timing similar for unknown users
        raise Unauthenticated("invalid username and password combination")
    if not bcrypt.checkpw(candidate, user.password_hash.encode()):
        raise Unauthenticated("invalid username and password combination")
    return user
