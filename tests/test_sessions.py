"""Admin UI sessions held on the server (appliance/sessions.py), on a real SQLite database; the
web UI's use of them is tested over HTTP in test_webui.py."""

from appliance import accounts, audit, sessions
from appliance.models import UserSession, utcnow


def test_a_session_lives_until_it_is_ended_and_only_its_hash_is_stored(runtime):
    alice = accounts.create_user("alice", "alice-password", rounds=4)
    first, second = sessions.start(alice), sessions.start(alice)
    assert sessions.user_of(first).id == alice.id and sessions.user_of(second).id == alice.id
    assert first not in {row.id_hash for row in UserSession.select()}
    sessions.end(first)
    assert sessions.user_of(first) is None and sessions.user_of(second).id == alice.id
    for forged in (None, "", 42, first + "x"):
        assert sessions.user_of(forged) is None


def test_sessions_expire_on_the_server_too(runtime):
    alice = accounts.create_user("alice", "alice-password", rounds=4)
    old = sessions.start(alice)
    UserSession.update(created_at=utcnow() - sessions.LIFETIME).execute()
    assert sessions.user_of(old) is None
    sessions.start(alice)
    assert UserSession.select().count() == 1  # starting a session drops the expired ones


def test_ending_the_others_keeps_one_and_is_audited(runtime):
    alice = accounts.create_user("alice", "alice-password", rounds=4)
    bob = accounts.create_user("bob", "bob-password", rounds=4)
    here, laptop, bobs = sessions.start(alice), sessions.start(alice), sessions.start(bob)
    assert len(sessions.active(alice)) == 2 and len(sessions.active(bob)) == 1
    sessions.end_others(alice, here)
    assert sessions.user_of(here).id == alice.id and sessions.user_of(laptop) is None
    assert len(sessions.active(alice)) == 1
    assert sessions.user_of(bobs).id == bob.id
    assert [e.target for e in audit.entries(action="user.sessions_end")] == ["alice"]


def test_a_new_password_or_disabling_ends_every_session(runtime):
    alice = accounts.create_user("alice", "alice-password", rounds=4)
    before = sessions.start(alice)
    accounts.set_password(alice, "alice-password-2", rounds=4)
    assert sessions.user_of(before) is None
    during = sessions.start(alice)
    accounts.set_disabled(alice, True)
    assert sessions.user_of(during) is None
    accounts.set_disabled(alice, False)
    assert sessions.user_of(during) is None  # enabling again does not bring it back


def test_a_session_of_a_disabled_user_is_not_honoured(runtime):
    """Disabling ends a user's sessions; one started by a login racing the disable (its password
    check passed just before) must not count either."""
    user = accounts.create_user("carol", "carol-password", rounds=4)
    accounts.set_disabled(user, True)
    late = sessions.start(user)
    assert sessions.user_of(late) is None
