"""Every repository and API route x every kind of bad credential: 401/403/404, never private bytes.

Routes are enumerated from the app's URL map, so a new route is covered without editing this file.
"""

import re

import pytest

from appliance import accounts, keys, orgs, registry_builder
from tests.driver import erlang_package

SAMPLE = {"org_name": "acme", "repo": "acme", "name": "secretpkg", "version": "1.0.0", "owner": "admin",
          "filename": "secretpkg-1.0.0.tar", "_rest": "nothing"}
REPOSITORY_PATHS = ["names", "versions", "packages/secretpkg", "tarballs/secretpkg-1.0.0.tar",
                    "docs/secretpkg-1.0.0.tar.gz"]
# Reachable without a key by design: the public key, and the OAuth exchange (it takes the key in its body).
PUBLIC = {"repository.public_key", "api.oauth_token", "api.not_found"}
WRITE_METHODS = {"POST", "PUT", "DELETE"}
# Not scoped to one organization: a valid key of another organization may use them (its own
# identity, a search over what it may see, a key check), but must still see nothing of acme.
UNSCOPED = {"api.users_me", "api.packages_index", "api.auth_check"}


def routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in ("api", "repository") or rule.endpoint in PUBLIC:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for sample_path in REPOSITORY_PATHS if "<path:path>" in rule.rule else [None]:
                values = dict(SAMPLE, path=sample_path)
                yield rule.endpoint, method, re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: values[m.group(1)], rule.rule)


@pytest.fixture
def world(hv):
    data = erlang_package("secretpkg", "1.0.0")
    assert hv.publish(data).status_code == 201
    beta = orgs.create("beta")
    registry_builder.ensure_index(hv.runtime, beta)
    _k, other_org = keys.create(hv.runtime.app_secret, "beta-all", [["repository", "beta"], ["api", "write"]],
                                organization=beta)
    reader = accounts.create_user("reader", "reader-password", rounds=4)
    orgs.add_member(hv.org, reader, "read")
    _k, read_key = keys.create(hv.runtime.app_secret, "ro", [["api", "read"]], user=reader)
    revoked_row, revoked = keys.create(hv.runtime.app_secret, "gone", [["repository", "acme"], ["api", "write"]],
                                       user=hv.admin)
    revoked_token = keys.issue_token(hv.runtime.app_secret, revoked_row)  # issued before the revocation
    keys.revoke(revoked_row)
    beta_key = keys.get("beta-all", organization=beta)
    return dict(data=data, other_org=other_org, read_key=read_key, revoked=revoked,
                revoked_token="Bearer " + revoked_token,
                expired_token="Bearer " + keys.issue_token(hv.runtime.app_secret, beta_key, ttl=-1),
                other_org_token="Bearer " + keys.issue_token(hv.runtime.app_secret, beta_key))


def call(hv, method, path, key):
    headers = {"accept": "application/vnd.hex+erlang", "user-agent": "matrix"}
    if key is not None:
        headers["authorization"] = key
    return hv.http.request(method, hv.url + path, headers=headers, data=b"")


def test_every_route_refuses_bad_credentials(hv, world):
    from appliance import create_app

    app = create_app(hv.runtime.config, hv.runtime)
    cases = list(routes(app))
    assert len(cases) > 30  # both prefixes of every API route, and the repository
    assert any(path.startswith("/mirror/hexpm/repos/acme/") for _e, _m, path in cases)
    failures = []
    for endpoint, method, path in cases:
        other_org = {200, 422} if endpoint in UNSCOPED else {403, 404}
        matrix = {"none": (None, {401}), "wrong": ("0" * 32, {401}), "revoked": (world["revoked"], {401}),
                  "revoked_token": (world["revoked_token"], {401}), "expired_token": (world["expired_token"], {401}),
                  "other_org": (world["other_org"], other_org), "other_org_token": (world["other_org_token"], other_org)}
        if method in WRITE_METHODS:
            matrix["read_key_on_write"] = (world["read_key"], {403, 404})
        for label, (key, allowed) in matrix.items():
            response = call(hv, method, path, key)
            private = world["data"] in response.content or b"secretpkg" in response.content
            if response.status_code not in allowed or private:
                failures.append(f"{method} {path} [{label}] -> {response.status_code}{' LEAK' if private else ''}")
    assert failures == [], "\n".join(failures)
