"""permissions.can, the one decision, as a table: every kind of principal x every action on acme.
Real users, organizations and keys in a real database; the routes' own tests cover the wiring."""

import pytest

from appliance import accounts, keys, orgs, permissions
from appliance.errors import Forbidden
from appliance.permissions import ADMIN, API_READ, API_WRITE, READ_DOCS, READ_REPOSITORY, Principal

EVERYTHING = {READ_REPOSITORY, READ_DOCS, API_READ, API_WRITE, ADMIN}
REPO = {READ_REPOSITORY, READ_DOCS}


@pytest.fixture
def acme(runtime):
    return orgs.create("acme")


def _user(name, org=None, role=None, **kw):
    user = accounts.create_user(name, f"{name}-password", rounds=4, **kw)
    if org is not None:
        orgs.add_member(org, user, role)
    return user


def _key(runtime, perms, **owner):
    return keys.create(runtime.app_secret, "k", perms, **owner)[0]


def principals(runtime, acme):
    beta = orgs.create("beta")
    root = _user("root", is_admin=True)
    admin, writer, reader = _user("boss", acme, "admin"), _user("writer", acme, "write"), _user("reader", acme, "read")
    outsider = _user("outsider", beta, "admin")
    gone = _user("gone", acme, "admin")
    accounts.set_disabled(gone, True)
    every = [["api", None], ["repositories", None]]
    yield "appliance admin", Principal(user=root), EVERYTHING
    yield "acme admin", Principal(user=admin), EVERYTHING
    yield "acme write member", Principal(user=writer), EVERYTHING - {ADMIN}
    yield "acme read member", Principal(user=reader), REPO | {API_READ}
    yield "beta admin", Principal(user=outsider), set()
    yield "disabled acme admin", Principal(user=gone), set()
    yield "disabled acme admin's key", Principal(user=gone, key=_key(runtime, every, user=gone)), set()
    yield "acme org key, repository", Principal(key=_key(runtime, [["repository", "acme"]], organization=acme)), REPO
    yield "acme org key, docs", Principal(key=_key(runtime, [["docs", "acme"]], organization=acme)), {READ_DOCS}
    yield "acme org key, api", Principal(key=_key(runtime, every, organization=acme)), EVERYTHING - {ADMIN}
    yield "acme org key, api:read", Principal(key=_key(runtime, [["api", "read"]], organization=acme)), {API_READ}
    yield "beta org key, everything", Principal(key=_key(runtime, every, organization=beta)), set()
    yield "acme admin's api:write key", Principal(user=admin, key=_key(runtime, [["api", "write"]], user=admin)), \
        {API_READ, API_WRITE, ADMIN}
    yield "acme admin's api:read key", Principal(user=admin, key=_key(runtime, [["api", "read"]], user=admin)), \
        {API_READ}
    yield "acme admin's repository:beta key", \
        Principal(user=admin, key=_key(runtime, [["repository", "beta"]], user=admin)), set()
    yield "acme read member's api key", Principal(user=reader, key=_key(runtime, every, user=reader)), \
        REPO | {API_READ}
    yield "beta admin's repositories key", Principal(user=outsider, key=_key(runtime, every, user=outsider)), set()
    token_key = _key(runtime, every, user=admin)
    yield "acme admin's token, scope repositories", \
        Principal(user=admin, key=token_key, scope=(("repositories", None),)), REPO
    yield "acme admin's token, scope api:read", Principal(user=admin, key=token_key, scope=(("api", "read"),)), \
        {API_READ}
    yield "acme admin's token, scope repository:beta", \
        Principal(user=admin, key=token_key, scope=(("repository", "beta"),)), set()


def test_can_answers_the_table(runtime, acme):
    wrong = []
    for label, principal, allowed in principals(runtime, acme):
        got = {action for action in EVERYTHING if permissions.can(principal, action, acme, orgs.role_of)}
        if got != allowed:
            wrong.append(f"{label}: may {sorted(got)}, expected {sorted(allowed)}")
    assert wrong == [], "\n".join(wrong)


def test_grantable_refuses_more_than_the_owner_holds_and_missing_organizations_alike(runtime, acme):
    orgs.create("beta")
    reader = _user("reader", acme, "read")
    principal = Principal(user=reader)
    permissions.grantable(principal, [["repository", "acme"], ["docs", "acme"], ["api", "read"]], orgs.role_of, orgs.get)
    refusals = []
    for perms in ([["repository", "beta"]], [["docs", "beta"]], [["repository", "nosuch"]]):
        with pytest.raises(Forbidden) as refused:
            permissions.grantable(principal, perms, orgs.role_of, orgs.get)
        refusals.append(refused.value.message.replace(perms[0][1], "ORG"))
    reason = "a key never reads more than its owner, and its owner cannot read that"
    assert refusals == [f"you cannot grant {domain}:ORG: {reason}" for domain in ("repository", "docs", "repository")]
