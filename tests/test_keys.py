"""Keys and permissions on a real SQLite database."""

import concurrent.futures
import hashlib
import hmac
import threading

import peewee
import pytest

from appliance import accounts, audit, keys, orgs, permissions
from appliance.db import database
from appliance.errors import Conflict, Forbidden, Invalid, Unauthenticated
from appliance.models import Key
from appliance.permissions import Principal


@pytest.fixture
def world(runtime):
    alice = accounts.create_user("alice", "alice-password", rounds=4)
    bob = accounts.create_user("bob", "bob-password", rounds=4)
    acme, beta = orgs.create("acme"), orgs.create("beta")
    orgs.add_member(acme, alice, "write")
    orgs.add_member(beta, bob, "read")
    return dict(rt=runtime, alice=alice, bob=bob, acme=acme, beta=beta)


def test_secret_is_stored_only_as_hmac(world):
    rt = world["rt"]
    key, secret = keys.create(rt.app_secret, "ci", [["api", "write"]], user=world["alice"])
    assert len(secret) == 32 and int(secret, 16) >= 0
    row = Key.get_by_id(key.id)
    digest = hmac.new(rt.app_secret, secret.encode(), hashlib.sha256).hexdigest()
    assert (row.secret_first, row.secret_second) == (digest[:32], digest[32:])
    assert secret not in repr(row.__data__)
    assert keys.authenticate(rt.app_secret, secret).id == key.id


def test_both_halves_of_the_hmac_must_match(world):
    """The first half only finds the row; a row whose second half differs (as for a secret
    matching on the indexed half alone) does not authenticate."""
    rt = world["rt"]
    key, secret = keys.create(rt.app_secret, "ci", [["api", "write"]], user=world["alice"])
    Key.update(secret_second="0" * 32).where(Key.id == key.id).execute()
    with pytest.raises(Unauthenticated, match="invalid API key"):
        keys.authenticate(rt.app_secret, secret)
    assert keys.find(rt.app_secret, secret) is None


def test_unknown_and_revoked_keys_get_hexpm_messages(world):
    rt = world["rt"]
    key, secret = keys.create(rt.app_secret, "ci", [["api", None]], user=world["alice"])
    with pytest.raises(Unauthenticated, match="invalid API key"):
        keys.authenticate(rt.app_secret, "0" * 32)
    keys.revoke(key)
    with pytest.raises(Unauthenticated, match="API key revoked"):
        keys.authenticate(rt.app_secret, secret)


def test_a_revoked_key_cannot_be_rotated_back_to_life(world):
    rt = world["rt"]
    key, _secret = keys.create(rt.app_secret, "ci", [["api", "write"]], user=world["alice"])
    keys.revoke(key)
    with pytest.raises(Conflict, match="already rotated or revoked"):
        keys.rotate(rt.app_secret, keys.get_by_id(key.id))
    assert keys.list_for(user=world["alice"], include_revoked=False) == []


def test_rotate_replaces_secret_and_kills_old_one_at_once(world):
    rt = world["rt"]
    key, old = keys.create(rt.app_secret, "deploy", [["repository", "acme"]], organization=world["acme"])
    new_key, new = keys.rotate(rt.app_secret, key)
    assert new_key.name == "deploy" and new != old
    assert new_key.permissions == [["repository", "acme"]]
    with pytest.raises(Unauthenticated):
        keys.authenticate(rt.app_secret, old)
    assert keys.authenticate(rt.app_secret, new).id == new_key.id


def test_rotate_with_grace_keeps_old_key_until_expiry(world):
    rt = world["rt"]
    key, old = keys.create(rt.app_secret, "deploy", [["repository", "acme"]], organization=world["acme"])
    keys.rotate(rt.app_secret, key, grace_seconds=3600)
    assert keys.authenticate(rt.app_secret, old).id == key.id
    Key.update(expires_at=Key.created_at).where(Key.id == key.id).execute()
    with pytest.raises(Unauthenticated):
        keys.authenticate(rt.app_secret, old)


def test_revoking_a_rotated_key_ends_the_grace_of_the_secrets_it_replaced(world):
    """Rotate (with the default grace), then revoke because the old secret leaked: none of the
    key's secrets may work afterwards. Other keys, even one named alike, are untouched."""
    rt = world["rt"]
    key, first = keys.create(rt.app_secret, "deploy", [["repository", "acme"]], organization=world["acme"])
    other, other_secret = keys.create(rt.app_secret, "deploy-rotated-x", [["repository", "acme"]],
                                      organization=world["acme"])
    second_key, second = keys.rotate(rt.app_secret, key, grace_seconds=86400)
    third_key, third = keys.rotate(rt.app_secret, second_key, grace_seconds=86400)
    assert keys.authenticate(rt.app_secret, first) and keys.authenticate(rt.app_secret, second)
    keys.revoke(third_key)
    for secret in (first, second, third):
        with pytest.raises(Unauthenticated):
            keys.authenticate(rt.app_secret, secret)
    assert keys.authenticate(rt.app_secret, other_secret).id == other.id
    revoked = {row.target for row in audit.entries(action="key.revoke")}
    assert revoked == {"deploy", f"deploy-rotated-{key.id}", f"deploy-rotated-{second_key.id}"}


def test_duplicate_names_get_suffixes(world):
    rt = world["rt"]
    names = [keys.create(rt.app_secret, "ci", [["api", None]], user=world["alice"])[0].name for _ in range(3)]
    assert names == ["ci", "ci-2", "ci-3"]


@pytest.mark.parametrize("perms, field", [
    ([], "permissions"), ([{"domain": "root"}], "permissions"), ([{"domain": "api", "resource": "all"}], "permissions"),
    ([{"domain": "repository", "resource": "nope"}], "permissions"),
])
def test_bad_permissions_are_refused(world, perms, field):
    with pytest.raises(Invalid) as info:
        keys.create(world["rt"].app_secret, "x", perms, user=world["alice"])
    assert field in info.value.errors


def test_mix_and_rebar3_spellings_of_nil_resource(world):
    assert keys.normalize_permissions([{"domain": "api", "resource": ""}, {"domain": "repositories"}]) == \
        [["api", None], ["repositories", None]]


def test_permission_matrix(world):
    rt, alice, bob, acme, beta = (world[k] for k in ("rt", "alice", "bob", "acme", "beta"))
    role_of = orgs.role_of

    def principal(owner, perms):
        key, _ = keys.create(rt.app_secret, "k", perms, **owner)
        return Principal(user=owner.get("user"), key=key)

    repo_acme = principal({"organization": acme}, [["repository", "acme"]])
    assert permissions.can(repo_acme, permissions.READ_REPOSITORY, acme, role_of)
    assert not permissions.can(repo_acme, permissions.READ_REPOSITORY, beta, role_of)
    assert not permissions.can(repo_acme, permissions.API_WRITE, acme, role_of)

    alice_all = principal({"user": alice}, [["repositories", None]])
    assert permissions.can(alice_all, permissions.READ_REPOSITORY, acme, role_of)
    assert not permissions.can(alice_all, permissions.READ_REPOSITORY, beta, role_of)  # not a member

    alice_write = principal({"user": alice}, [["api", "write"]])
    assert permissions.can(alice_write, permissions.API_WRITE, acme, role_of)
    assert not permissions.can(alice_write, permissions.ADMIN, acme, role_of)  # write role, not admin
    assert not permissions.can(alice_write, permissions.READ_REPOSITORY, acme, role_of)  # api does not open repos

    alice_read = principal({"user": alice}, [["api", "read"]])
    assert permissions.can(alice_read, permissions.API_READ, acme, role_of)
    assert not permissions.can(alice_read, permissions.API_WRITE, acme, role_of)

    bob_write = principal({"user": bob}, [["api", "write"]])
    assert not permissions.can(bob_write, permissions.API_WRITE, beta, role_of)  # read role
    with pytest.raises(Forbidden):
        permissions.require(bob_write, permissions.API_WRITE, beta, role_of)


def test_a_key_cannot_grant_more_than_its_creator_holds(world):
    alice_session = Principal(user=world["alice"])
    permissions.grantable(alice_session, [["repository", "acme"]], orgs.role_of, orgs.get)
    with pytest.raises(Forbidden):
        permissions.grantable(alice_session, [["repository", "beta"]], orgs.role_of, orgs.get)


def _live_named(name, organization):
    return [k for k in Key.active().where((Key.organization == organization.id) & (Key.name == name))]


def test_concurrent_rotations_of_one_key_let_exactly_one_win(world):
    rt = world["rt"]
    key, _ = keys.create(rt.app_secret, "deploy", [["repository", "acme"]], organization=world["acme"])
    start = threading.Barrier(4)

    def rotate(_n):
        database.connect(reuse_if_open=True)  # one SQLite connection per thread, as waitress has
        try:
            stale = Key.get_by_id(key.id)  # every thread saw the key live before any rotation committed
            start.wait()
            try:
                return keys.rotate(rt.app_secret, stale)[0]
            except Conflict as exc:
                return exc
        finally:
            database.close()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(rotate, range(4)))
    winners = [o for o in outcomes if isinstance(o, Key)]
    assert len(winners) == 1 and [type(o) for o in outcomes].count(Conflict) == 3
    assert [k.id for k in _live_named("deploy", world["acme"])] == [winners[0].id]


def test_rotating_a_stale_copy_of_a_key_is_a_conflict(world):
    rt = world["rt"]
    key, _ = keys.create(rt.app_secret, "deploy", [["repository", "acme"]], organization=world["acme"])
    keys.rotate(rt.app_secret, key, grace_seconds=3600)
    with pytest.raises(Conflict, match="already rotated or revoked") as raised:
        keys.rotate(rt.app_secret, key)  # this copy still says "active, named deploy"
    assert raised.value.status == 409
    assert len(_live_named("deploy", world["acme"])) == 1


def test_the_database_refuses_two_live_keys_with_one_name(world):
    rt = world["rt"]
    key, _ = keys.create(rt.app_secret, "deploy", [["api", None]], user=world["alice"])
    duplicate = dict(name="deploy", user=world["alice"], secret_first="f" * 32, secret_second="0" * 32)
    with pytest.raises(peewee.IntegrityError):
        Key.create(**duplicate)
    keys.revoke(key)
    assert Key.create(**duplicate).name == "deploy"  # a revoked key frees its name
    org_key, _ = keys.create(rt.app_secret, "deploy", [["repository", "acme"]], organization=world["acme"])
    assert org_key.name == "deploy"  # another owner's key may share it


def test_revoking_twice_changes_and_audits_once(world):
    rt = world["rt"]
    key, _ = keys.create(rt.app_secret, "ci", [["api", None]], user=world["alice"])
    stale = Key.get_by_id(key.id)
    first = keys.revoke(key)
    second = keys.revoke(stale)  # a second admin's page still showed it live
    assert first.revoked_at is not None and second.revoked_at == first.revoked_at
    assert [e.action for e in audit.entries(action="key.revoke")] == ["key.revoke"]
