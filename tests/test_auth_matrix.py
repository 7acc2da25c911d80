"""Every repository and API route x every kind of bad credential: 401/403/404, never private bytes.

Routes are enumerated from the app's URL map, so a new route is covered without editing this file.
"""

import base64
import itertools
import json
import re

import pytest
import requests

from appliance import accounts, keys, orgs, registry_builder
from tests.driver import erlang_package
from tests.webclient import WebSession

SAMPLE = {"org_name": "acme", "repo": "acme", "name": "secretpkg", "version": "1.0.0", "owner": "admin",
          "filename": "secretpkg-1.0.0.tar", "_rest": "nothing"}
REPOSITORY_PATHS = ["names", "versions", "packages/secretpkg", "tarballs/secretpkg-1.0.0.tar",
                    "docs/secretpkg-1.0.0.tar.gz"]
# Reachable without a key by design: the public key and the TLS front's CA. The OAuth routes
# (blueprint oauth, not listed here) take their credential in the body.
PUBLIC = {"repository.public_key", "repository.company_ca", "api.not_found"}
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


# -- organization names must not be discoverable ------------------------------------------------

GHOST = "ghst"  # no such organization; as long as "acme", so ETF length prefixes match too
ORG_PARAMS = ("org_name", "repo")


def org_routes(app):
    """(method, path template with {org}, body) for every route that names an organization,
    plus those taking one in the query or body."""
    values = dict(SAMPLE, key_id="1", username="admin", path="x.html", _rest="nothing", hook_id="1", delivery_id="1")
    for rule in app.url_map.iter_rules():
        if not any(f"<{p}>" in rule.rule for p in ORG_PARAMS):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for sample_path in REPOSITORY_PATHS + ["public_key"] if "<path:path>" in rule.rule else [None]:
                path = re.sub(r"<(?:[^:>]+:)?([^>]+)>",
                              lambda m: "{org}" if m.group(1) in ORG_PARAMS else (sample_path or values[m.group(1)]),
                              rule.rule)
                yield method, path, None
    yield "GET", "/api/auth?domain=repository&resource={org}", None
    yield "POST", "/api/keys", {"name": "probe", "permissions": [{"domain": "repository", "resource": "{org}"}]}
    yield "POST", "/api/keys", {"name": "probe", "permissions": [{"domain": "docs", "resource": "{org}"}]}


def answer(hv, session, method, path, body, authorization, org):
    """What a caller can observe, with the organization name masked."""
    headers = {"accept": "application/vnd.hex+erlang", "user-agent": "probe"}
    if authorization:
        headers["authorization"] = authorization
    data = b""
    if body is not None:
        headers["content-type"] = "application/json"
        data = json.dumps(body).replace("{org}", org).encode()
    elif path.endswith(("/releases", "/publish")):
        data = erlang_package("probe", "1.0.0")
        headers["content-type"] = "application/octet-stream"
    if session is not None and method == "POST":
        data = {"csrf_token": session.token}
        headers.pop("content-type", None)
    # API clients keep no cookies: a fresh connection each time, so no flashed message carries over.
    response = (session.http if session else requests).request(
        method, hv.url + path.replace("{org}", org), data=data, headers=headers, allow_redirects=False)
    shown = {h: response.headers.get(h, "").replace(org, "ORG")
             for h in ("content-type", "www-authenticate", "cache-control", "location", "etag")}
    return response.status_code, shown, response.content.replace(org.encode(), b"ORG!")


def test_answers_are_the_same_for_an_organization_that_exists_and_one_that_does_not(hv, world):
    from appliance import create_app

    outsider = accounts.create_user("outsider", "outsider-password", rounds=4)
    beta = orgs.get("beta")
    orgs.add_member(beta, outsider, "admin")
    _k, outsider_key = keys.create(hv.runtime.app_secret, "mine", [["api", "write"], ["repository", "beta"]],
                                   user=outsider)
    outsider_web = WebSession(hv.url)
    assert outsider_web.login("outsider", "outsider-password").status_code == 200
    anonymous_web = WebSession(hv.url)
    anonymous_web.get("/admin/login")  # a CSRF token, so POSTs get as far as they can
    basic = "Basic " + base64.b64encode(b"outsider:outsider-password").decode()
    callers = {"no credentials": (None, None), "unknown key": (None, "0" * 32),
               "other organization's key": (None, world["other_org"]),
               "other organization's token": (None, world["other_org_token"]),
               "non-member's key": (None, outsider_key), "non-member's password": (None, basic),
               "anonymous browser": (anonymous_web, None), "non-member's browser": (outsider_web, None)}
    cases = list(org_routes(create_app(hv.runtime.config, hv.runtime)))
    assert len(cases) > 40 and any(p.startswith("/admin/") for _m, p, _b in cases)
    assert any(p.startswith("/docs/") for _m, p, _b in cases)
    differences, statuses = [], set()
    for (method, path, body), (label, (session, authorization)) in itertools.product(cases, callers.items()):
        if session is not None and not path.startswith(("/admin/", "/docs/")):
            continue
        existing = answer(hv, session, method, path, body, authorization, "acme")
        missing = answer(hv, session, method, path, body, authorization, GHOST)
        statuses.add(existing[0])
        if existing != missing:
            differences.append(f"{method} {path} [{label}]: acme {existing[0]} {existing[2][:80]!r} "
                               f"vs {GHOST} {missing[0]} {missing[2][:80]!r}")
    assert differences == [], "\n".join(differences)
    assert {401, 403, 404, 302} <= statuses
    # The token exchange, asked for a scope naming an organization, answers alike too.
    for org in ("acme", GHOST):
        exchanged = hv.http.post(hv.url + "/api/oauth/token", headers={"accept": "application/json"}, json={
            "grant_type": "client_credentials", "client_secret": world["other_org"], "scope": f"repository:{org}"})
        assert exchanged.status_code == 200 and exchanged.json()["scope"] == f"repository:{org}"
        token = "Bearer " + exchanged.json()["access_token"]
        assert hv.repo("names", key=token).status_code == 403  # the scope grants nothing the key lacks
