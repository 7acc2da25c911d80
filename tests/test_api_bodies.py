"""Every API route that reads a body, fed fields of every wrong type, in ETF and JSON: a 4xx with
Hex's error shape, never a 5xx, and the server keeps answering."""

import itertools
import json
import re

from appliance.protocol import etf
from tests.driver import erlang_package

FIELDS = ["name", "permissions", "reason", "message", "grant_type", "client_secret", "scope", "domain", "resource",
          "username", "email", "password", "level", "full_name"]
ODD_VALUES = [None, 0, -1, 2 ** 70, 1.5, True, "", "x" * 5000, "\u0000", [], [1, 2], ["api"], [{"domain": 1}],
              [{"domain": "repository", "resource": 7}], [[1, 2, 3]], {}, {"a": {"b": [None]}}, {"domain": "api"}]


def body_routes(app):
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.not_found":
            continue
        for method in sorted(rule.methods & {"POST", "PUT"}):
            values = {"org_name": "acme", "repo": "acme", "name": "hello", "version": "0.1.0", "owner": "admin"}
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: values.get(m.group(1), m.group(0)), rule.rule)
            if "<" not in path and not path.endswith(("/releases", "/publish", "/docs")):
                yield method, path


def test_wrongly_typed_fields_never_cause_a_server_error(hv):
    from appliance import create_app

    assert hv.publish(erlang_package("hello", "0.1.0")).status_code == 201
    app = create_app(hv.runtime.config, hv.runtime)
    cases = sorted(set(body_routes(app)))
    assert len(cases) >= 6, cases
    failures = []
    for (method, path), (field, value) in itertools.product(cases, itertools.product(FIELDS, ODD_VALUES)):
        body = {field: value}
        if field != "grant_type":
            body["grant_type"] = "client_credentials"
        for ctype, data in (("application/vnd.hex+erlang", etf.encode(body)), ("application/json", json.dumps(body))):
            response = hv.http.request(method, hv.url + path, data=data, headers={
                "authorization": hv.api_key, "content-type": ctype, "accept": "application/json"})
            if response.status_code >= 500:
                failures.append(f"{method} {path} {ctype} {body!r:.120} -> {response.status_code}")
            elif response.status_code >= 400:
                assert "message" in response.json() or "error" in response.json(), (path, response.text)
    assert failures == [], "\n".join(failures[:40])
    assert hv.repo("names").status_code == 200


DEPTH = 100_000  # far beyond the ~1,000 levels at which Python's json parser gives up
RAW_BODIES = {
    "json nested list": ("application/json", b"[" * DEPTH + b"]" * DEPTH),
    "json nested map": ("application/json", b'{"a":' * DEPTH + b"1" + b"}" * DEPTH),
    "etf nested list": ("application/vnd.hex+erlang", b"\x83" + b"l\x00\x00\x00\x01" * DEPTH + b"j" * (DEPTH + 1)),
    "json not utf-8": ("application/json", b'{"name": "\xff\xfe"}'),
    "json huge number": ("application/json", b'{"name": ' + b"9" * 100_000 + b"}"),
    "json NaN": ("application/json", b'{"name": NaN, "permissions": [Infinity]}'),
    "json not a map": ("application/json", b'"just a string"'),
    "etf truncated": ("application/vnd.hex+erlang", b"\x83t\x00\x00\x00\x05"),
}


def test_undecodable_bodies_get_a_400_without_credentials_or_with_them(hv):
    from appliance import create_app

    cases = sorted(set(body_routes(create_app(hv.runtime.config, hv.runtime))))
    failures = []
    for (method, path), label, authorization in itertools.product(cases, sorted(RAW_BODIES), (None, hv.api_key)):
        ctype, data = RAW_BODIES[label]
        headers = {"content-type": ctype, "accept": "application/json"}
        if authorization:
            headers["authorization"] = authorization
        response = hv.http.request(method, hv.url + path, data=data, headers=headers)
        if response.status_code >= 500 or not response.headers["content-type"].startswith("application/json"):
            failures.append(f"{method} {path} {label} auth={bool(authorization)} -> {response.status_code}")
    assert failures == [], "\n".join(failures[:40])
    # The unauthenticated token exchange reads its body first: the nesting itself is the 400.
    deep = hv.http.post(hv.url + "/api/oauth/token", data=RAW_BODIES["json nested list"][1],
                        headers={"content-type": "application/json", "accept": "application/json"})
    assert deep.status_code == 400 and deep.json()["message"] == "Bad request: body is nested too deeply"
    assert hv.repo("names").status_code == 200


def test_bodies_over_the_limit_are_refused_unread(hv):
    from appliance.routes.responses import MAX_BODY

    # Valid JSON, so only the size check can refuse it (a read body would fail on the name instead).
    body = json.dumps({"name": "k" * MAX_BODY, "permissions": [{"domain": "api", "resource": "read"}]})
    for path in ("/api/keys", "/api/orgs/acme/keys", "/api/oauth/token"):
        response = hv.http.post(hv.url + path, data=body, headers={
            "authorization": hv.api_key, "content-type": "application/json", "accept": "application/json"})
        assert response.status_code == 422, (path, response.text[:200])
        assert response.json()["errors"] == {"body": "too large"}
