"""Admin UI sessions, held on the server.

Logging in starts a session: a random id that the web UI keeps in the browser's signed cookie,
and a ``UserSession`` row holding only the id's SHA-256. A request is signed in only while its
row exists, so logging out, "sign out other sessions", a new password and disabling the user
end sessions for good: a copy of the cookie taken before is worth nothing, in every process.
"""

import datetime
import hashlib
import secrets

from appliance import audit
from appliance.db import write_tx
from appliance.models import User, UserSession, utcnow

# Also the signed cookie's maximum age (create_app), so both ends expire a session together.
LIFETIME = datetime.timedelta(hours=12)


def _hash(session_id):
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(user):
    """A new session of ``user``; returns its id (for the cookie, never stored)."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with write_tx():
        # Expired rows are worth nothing; starting a session is a rare enough moment to drop them.
        UserSession.delete().where(UserSession.created_at <= now - LIFETIME).execute()
        UserSession.create(id_hash=_hash(session_id), user=user.id, created_at=now)
    return session_id


def user_of(session_id):
    """The enabled user whose live session ``session_id`` is, else None."""
    if not isinstance(session_id, str) or not session_id:
        return None
    row = (UserSession.select(UserSession, User).join(User)
           .where((UserSession.id_hash == _hash(session_id)) & (UserSession.created_at > utcnow() - LIFETIME))
           .first())
    if row is None or row.user.disabled_at is not None:
        return None
    return row.user


def active(user):
    """The user's live sessions, oldest first (ids are not recoverable from them)."""
    return list(UserSession.select()
                .where((UserSession.user == user.id) & (UserSession.created_at > utcnow() - LIFETIME))
                .order_by(UserSession.id))


def end(session_id):
    """End one session (logging out); nothing happens for an unknown or ended one."""
    if isinstance(session_id, str) and session_id:
        with write_tx():
            UserSession.delete().where(UserSession.id_hash == _hash(session_id)).execute()


def end_all(user):
    """End every session of ``user``. Call it inside the caller's write_tx, beside the change
    that requires it (a new password, a disabled account)."""
    UserSession.delete().where(UserSession.user == user.id).execute()


def end_others(user, keep, *, actor=audit.CLI):
    """End every session of ``user`` except ``keep`` (the browser asking), audited."""
    with write_tx():
        (UserSession.delete()
         .where((UserSession.user == user.id) & (UserSession.id_hash != _hash(keep or ""))).execute())
        audit.record(actor, "user.sessions_end", target=user.username)


def end_one(user, row_id, *, actor=audit.CLI):
    """End one listed session of ``user`` (its row id, as the account page shows it), audited."""
    with write_tx():
        if UserSession.delete().where((UserSession.user == user.id) & (UserSession.id == row_id)).execute():
            audit.record(actor, "user.session_end", target=user.username)


def current_row(session_id):
    """The row of a live session id (to mark "this browser" in a list), else None."""
    if not isinstance(session_id, str) or not session_id:
        return None
    return UserSession.get_or_none(UserSession.id_hash == _hash(session_id))
