"""Users: creation, bcrypt passwords, login checks, and the one place an identity from the
company directory (appliance/identity) becomes a user, with the memberships its groups grant."""

import logging
import re
import secrets

import bcrypt
import peewee

from appliance import audit, identity, sessions
from appliance.identity import device
from appliance.db import write_tx
from appliance.errors import Conflict, Invalid, NotFound, Unauthenticated
from appliance.models import AuditLog, Key, Membership, Organization, User, utcnow

log = logging.getLogger(__name__)
DIRECTORY = audit.AuditContext(via="ldap")  # who acts when the directory decides
BAD_LOGIN = "invalid username and password combination"

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


def _other_admins(user):
    return User.active().where(User.is_admin & (User.id != user.id)).count()


def _refuse_last_admin(user, doing):
    if user.is_admin and user.disabled_at is None and not _other_admins(user):
        raise Invalid("Validation error(s)",
                      {"user": f"{user.username} is the last administrator: make someone else an administrator "
                               f"before you {doing}."})


def set_admin(user, is_admin, *, actor=audit.CLI):
    with write_tx():
        if not is_admin:
            _refuse_last_admin(user, "take this away")
        User.update(is_admin=is_admin, updated_at=utcnow()).where(User.id == user.id).execute()
        audit.record(actor, "user.admin" if is_admin else "user.unadmin", target=user.username)
    user.is_admin = is_admin


def set_disabled(user, disabled, *, actor=audit.CLI):
    if disabled and _is_self(actor, user):
        raise Invalid("Validation error(s)", {"user": "You cannot disable your own account."})
    stamp = utcnow() if disabled else None
    with write_tx():
        if disabled:
            _refuse_last_admin(user, "disable this account")
        User.update(disabled_at=stamp, updated_at=utcnow()).where(User.id == user.id).execute()
        if disabled:  # ended for good: enabling the user again must not revive them
            sessions.end_all(user)
            device.end_all(user)
        audit.record(actor, "user.disable" if disabled else "user.enable", target=user.username)
    user.disabled_at = stamp


def _is_self(actor, user):
    return actor.user is not None and actor.user.id == user.id


def delete_user(user, *, actor=audit.CLI):
    """Delete an account for good. Its keys are revoked and deleted with it, and so are its
    sessions and memberships; its audit rows stay, under its name (AuditLog.actor and target are
    text). Refused for one's own account and for the last administrator."""
    if _is_self(actor, user):
        raise Invalid("Validation error(s)", {"user": "You cannot delete your own account."})
    with write_tx():
        _refuse_last_admin(user, "delete this account")
        live = [k.name for k in Key.active().where(Key.user == user.id)]
        User.delete().where(User.id == user.id).execute()  # keys, sessions, memberships cascade
        audit.record(actor, "user.delete", target=user.username, keys_revoked=", ".join(live) or None)


def last_logins():
    """username -> when they last logged in to the web UI (from the audit log)."""
    rows = (AuditLog.select(AuditLog.target, peewee.fn.MAX(AuditLog.created_at).alias("last"))
            .where(AuditLog.action == "user.login").group_by(AuditLog.target))
    return {row.target: row.last for row in rows}


_DUMMY_HASHES = {}  # bcrypt cost -> a hash to check unknown users against


def _dummy_hash(rounds):
    if rounds not in _DUMMY_HASHES:
        _DUMMY_HASHES[rounds] = bcrypt.hashpw(b"timing-equalizer", bcrypt.gensalt(rounds))
    return _DUMMY_HASHES[rounds]


def check_login(username, password, rounds=12, directory=None):
    """The user for a correct username and password, else Unauthenticated (same message either
    way). ``rounds`` is the configured bcrypt cost: an unknown user costs the same check.

    A local account is checked here and only here, so a directory outage never locks out a local
    (break-glass) admin. Any other name goes to ``directory`` (an identity provider) when there is
    one: DirectoryUnavailable passes through, and no login is accepted without its answer."""
    user = User.get_or_none(User.username == canonical_username(username))
    if directory is not None and (user is None or user.auth_source != identity.LOCAL):
        return _check_directory_login(directory, username, password)
    candidate = (password or "").encode()[:MAX_PASSWORD_BYTES]
    if user is None or not user.password_hash or user.disabled_at is not None:
        bcrypt.checkpw(candidate, _dummy_hash(rounds))  # keep timing similar for unknown users
        raise Unauthenticated(BAD_LOGIN)
    if not bcrypt.checkpw(candidate, user.password_hash.encode()):
        raise Unauthenticated(BAD_LOGIN)
    return user


def _check_directory_login(directory, username, password):
    found = directory.authenticate(username, password)
    if found is None:
        raise Unauthenticated(BAD_LOGIN)
    return user_for_identity(found, directory.groups(found), directory.group_roles)


def user_for_identity(person, group_dns, group_roles, *, actor=DIRECTORY):
    """The user ``person`` (an identity.Identity) is, created on their first login; their email,
    name and memberships of the organizations ``group_roles`` maps to follow the directory
    (memberships in other organizations are left to the admins). Unauthenticated when the name
    belongs to a local account (the directory cannot take it over), the user is disabled, or
    ``group_roles`` maps groups and none of them is the person's."""
    roles = identity.roles_for_groups(group_roles, group_dns)
    if group_roles and not roles:
        raise Unauthenticated("your directory account is in none of the groups that may use this registry")
    with write_tx():
        user = User.get_or_none(User.username == person.username)
        if user is None:
            user = User.create(username=person.username, email=person.email, full_name=person.full_name,
                               auth_source=person.source, directory_dn=person.subject)
            audit.record(actor, "user.create", target=user.username, source=person.source)
        elif user.auth_source != person.source or user.disabled_at is not None:
            if user.auth_source != person.source:
                log.warning("directory login as %s refused: that name is a %s account", user.username,
                            user.auth_source)
            raise Unauthenticated(BAD_LOGIN)
        elif (user.email, user.full_name, user.directory_dn) != (person.email, person.full_name, person.subject):
            User.update(email=person.email, full_name=person.full_name, directory_dn=person.subject,
                        updated_at=utcnow()).where(User.id == user.id).execute()
        _follow_directory(user, roles, identity.mapped_organizations(group_roles), actor)
    return User.get_by_id(user.id)


def _follow_directory(user, roles, mapped, actor):
    """Make ``user``'s roles in the ``mapped`` organizations be ``roles``; inside write_tx."""
    for org_name in sorted(mapped):
        org = Organization.get_or_none(Organization.name == org_name)
        if org is None:
            log.warning("ldap_group_roles names organization %s, which does not exist", org_name)
            continue
        member = Membership.get_or_none((Membership.user == user.id) & (Membership.organization == org.id))
        wanted = roles.get(org_name)
        if member is None and wanted:
            Membership.create(user=user.id, organization=org.id, role=wanted)
            audit.record(actor, "membership.add", organization=org, target=user.username, role=wanted)
        elif member is not None and not wanted:
            member.delete_instance()
            audit.record(actor, "membership.remove", organization=org, target=user.username)
        elif member is not None and member.role != wanted:
            Membership.update(role=wanted).where(Membership.id == member.id).execute()
            audit.record(actor, "membership.role", organization=org, target=user.username, role=wanted)


def disable_departed(user, reason, *, actor=DIRECTORY):
    """Disable a directory user who left the directory (or every mapped group): their sessions
    end, their device logins and keys (and the tokens made from them) are revoked, audited with ``reason``."""
    now = utcnow()
    with write_tx():
        User.update(disabled_at=now, updated_at=now).where(User.id == user.id).execute()
        sessions.end_all(user)
        device.end_all(user)  # their `mix hex.user auth` logins too
        revoked = Key.update(revoked_at=now).where((Key.user == user.id) & Key.revoked_at.is_null()).execute()
        audit.record(actor, "user.disable", target=user.username, reason=reason, keys_revoked=revoked)
    user.disabled_at = now
    return revoked
