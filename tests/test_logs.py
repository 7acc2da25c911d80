"""What `hexvault serve` writes, read back as a log shipper would: JSON lines, one access line
per request, every audit event, and never a credential (at DEBUG level too)."""

import base64
import hashlib
import json

import pytest
import requests

from appliance import keys
from appliance.models import Key, User
from tests.driver import Driver, erlang_package
from tests.procserver import ServerProcess
from tests.webclient import WebSession

METRICS_TOKEN = "metrics-token-never-logged-42"


def exercise(hv, url):
    """Requests carrying every kind of credential, good and bad; returns the secrets sent."""
    live = Driver(url, hv.runtime, org=hv.org, admin=hv.admin, repo_key=hv.repo_key, api_key=hv.api_key)
    _key, query_secret = keys.create(hv.runtime.app_secret, "in-query", [["repository", "acme"]], organization=hv.org)
    assert live.publish(erlang_package("logged", "1.0.0")).status_code == 201
    assert live.repo("names").status_code == 200  # the fast path
    assert live.repo("tarballs/logged-1.0.0.tar", key=f"Bearer {hv.repo_key}").status_code == 200
    assert live.api("GET", "users/me").status_code == 200
    # A key in the query string (some scripts do this; the server ignores it, the log must too).
    assert requests.get(f"{url}/repos/acme/names?key={query_secret}&api_key={query_secret}",
                        timeout=10).status_code == 401
    assert requests.get(f"{url}/api/users/me", auth=("admin", "admin-password"), timeout=10).status_code == 200
    assert requests.get(f"{url}/api/users/me", auth=("admin", "Wr0ng-Pa55word"), timeout=10).status_code == 401
    token = live.api("POST", "oauth/token", key=False, body={
        "grant_type": "client_credentials", "client_id": "x", "client_secret": hv.repo_key,
        "scope": "repositories"}).term["access_token"]
    assert live.repo("names", key=f"Bearer {token}").status_code == 200
    assert WebSession(url).login().status_code == 200  # password in a form body
    assert WebSession(url).login(password="F0rm-Wr0ng-Pa55").status_code == 401
    assert requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                        timeout=10).status_code == 200
    basic = base64.b64encode(b"admin:admin-password").decode()
    # Nor what is stored in their place: the password hash and the key digests.
    stored = [User.get(User.username == "admin").password_hash]
    stored += [half for key in Key.select() for half in (key.secret_first, key.secret_second)]
    return [hv.repo_key, hv.api_key, query_secret, token, "admin-password", "Wr0ng-Pa55word", "F0rm-Wr0ng-Pa55",
            basic, METRICS_TOKEN, *stored]


def run_server(hv, tmp_path, log_format):
    output = tmp_path / f"server-{log_format}.log"
    env = {"HEXVAULT_LOG_FORMAT": log_format, "HEXVAULT_ACCESS_LOG": "true", "HEXVAULT_LOG_LEVEL": "DEBUG",
           "HEXVAULT_METRICS_TOKEN_SHA256": hashlib.sha256(METRICS_TOKEN.encode()).hexdigest()}
    server = ServerProcess(hv.runtime.config.data_dir, env=env, output=output).start()
    try:
        secrets = exercise(hv, server.url)
    finally:
        server.stop()
    return output.read_text(), secrets


def test_json_lines_access_and_audit_without_credentials(hv, tmp_path):
    text, secrets = run_server(hv, tmp_path, "json")
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    access = [line for line in lines if line["logger"] == "hexvault.access"]
    names = [a for a in access if a["path"] == "/repos/acme/names"]
    assert len(names) == 3  # key in the header, key in the query string, oauth token
    assert {(a["method"], a["status"]) for a in names} == {("GET", 200), ("GET", 401)}
    assert all(a["remote"] == "127.0.0.1" and isinstance(a["ms"], float) for a in names)
    publish = next(a for a in access if a["method"] == "POST" and a["path"].endswith("/releases"))
    assert publish["status"] == 201 and publish["bytes"] > 0
    audit = [line for line in lines if line["logger"] == "hexvault.audit"]
    logins = [a for a in audit if a["action"].startswith("user.login")]  # audited too (issue 13.3)
    assert logins and all(a["target"] == "admin" for a in logins)
    audit = [a for a in audit if a not in logins]
    assert [(a["action"], a["organization"], a["target"]) for a in audit] == [("release.publish", "acme", "logged 1.0.0")]
    assert audit[0]["actor"] == "admin (key admin-write)" and audit[0]["details"]["via"] == "api"
    assert any("serving on" in line["message"] for line in lines)
    for secret in secrets:
        assert secret not in text, f"a credential reached the log: {secret[:6]}..."


def test_text_lines_never_carry_credentials_either(hv, tmp_path):
    text, secrets = run_server(hv, tmp_path, "text")
    assert " INFO hexvault.access: 127.0.0.1 GET /repos/acme/names 200 " in text
    assert " INFO hexvault.audit: release.publish by admin (key admin-write) logged 1.0.0 in acme" in text
    for secret in secrets:
        assert secret not in text, f"a credential reached the log: {secret[:6]}..."


@pytest.mark.parametrize("value", ["xml", ""])
def test_log_format_is_text_or_json(value):
    from appliance.config import load_config
    from appliance.errors import ConfigError

    with pytest.raises(ConfigError, match="HEXVAULT_LOG_FORMAT"):
        load_config(environ={"HEXVAULT_LOG_FORMAT": value})
