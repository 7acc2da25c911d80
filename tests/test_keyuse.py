"""A held database write lock (a backup tool, a long CLI change, another process) must never stall
reads, and writes that cannot get it in time answer 503 with Retry-After and a message clients
print. Key last-use times are written off the request path (appliance/keyuse.py)."""

import re
import sqlite3
import threading

import pytest
import requests
from click.testing import CliRunner

from appliance import db, keys
from appliance.cli import main
from appliance.config import load_config
from appliance.db import database
from appliance.models import Key
from tests.driver import erlang_package
from tests.procserver import ServerProcess
from tests.test_cli import run
from tests.webclient import WebSession

SHORT_BUSY_MS = 200


@pytest.fixture
def config(tmp_path, request):
    busy = getattr(request, "param", SHORT_BUSY_MS)
    return load_config(environ={}, data_dir=str(tmp_path / "data"), bcrypt_rounds=4, port=8000, busy_timeout=busy)


class WriteLock:
    """Another connection holding SQLite's write lock, as `BEGIN IMMEDIATE` takes it."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc):
        self.conn.execute("ROLLBACK")
        self.conn.close()


@pytest.mark.parametrize("config", [600_000], indirect=True)
def test_a_keyed_get_does_not_wait_for_a_held_write_lock(hv):
    """busy_timeout is ten minutes here: a GET that waited for the lock would hit the client's
    timeout long before it; one that never waits answers at once."""
    _key, fresh = keys.create(hv.runtime.app_secret, "never-used", [["repository", "acme"]], organization=hv.org)
    with WriteLock(hv.runtime.config.database_path):
        for secret in (fresh, hv.repo_key):
            response = requests.get(f"{hv.url}/repos/acme/names", headers={"authorization": secret}, timeout=60)
            assert response.status_code == 200
        assert hv.api("GET", "repos/acme/packages").status_code == 200  # through Flask, api key
    assert Key.get(Key.name == "never-used").last_used_at is None  # noted, not written yet
    assert hv.runtime.key_uses.flush() >= 2
    used = Key.get(Key.name == "never-used")
    assert used.last_used_at is not None and used.last_used_ip == "127.0.0.1"


def test_writes_behind_a_held_lock_answer_503_with_retry_after_then_succeed(hv, tmp_path):
    data = erlang_package("locked", "1.0.0")
    web = WebSession(hv.url)
    assert web.login().status_code == 200
    with WriteLock(hv.runtime.config.database_path):
        published = hv.publish(data)
        assert published.status_code == 503, published.content
        assert published.headers["Retry-After"] == "5"
        assert "try again" in published.term["message"]  # what mix and rebar3 print
        as_json = hv.api("POST", "repos/acme/packages/locked/releases", data=data, accept="application/json")
        assert as_json.status_code == 503 and "try again" in as_json.json()["message"]

        page = web.post("/admin/orgs", {"name": "beta"})
        assert page.status_code == 503 and page.headers["Retry-After"] == "5"
        assert "try again in a few seconds" in page.text

        cli = CliRunner().invoke(main, ["org", "create", "gamma"], catch_exceptions=False,
                                 env={"HEXVAULT_DATA_DIR": hv.runtime.config.data_dir, "HEXVAULT_CONFIG": "",
                                      "HEXVAULT_BUSY_TIMEOUT": str(SHORT_BUSY_MS)})
        assert cli.exit_code == 1 and "error: the server is busy" in cli.output

        assert hv.repo("names").status_code == 200  # reads go on meanwhile
        assert hv.runtime.key_uses.flush() == 0  # kept for later, not lost
    database.connect(reuse_if_open=True)
    assert hv.publish(data).status_code == 201
    assert hv.registry_package("locked")["releases"][0]["version"] == "1.0.0"
    assert hv.runtime.key_uses.flush() >= 1
    assert Key.get(Key.name == "acme-read").last_used_at is not None


def test_uses_noted_during_a_failed_flush_are_not_lost(hv):
    key = Key.get(Key.name == "acme-read")
    hv.runtime.key_uses.note(key, "10.0.0.1", "first")
    with WriteLock(hv.runtime.config.database_path):
        flushing = threading.Thread(target=hv.runtime.key_uses.flush)
        flushing.start()
        hv.runtime.key_uses.note(key, "10.0.0.2", "second")  # newer than what the flush holds
        flushing.join()
    database.connect(reuse_if_open=True)
    assert hv.runtime.key_uses.flush() == 1
    assert Key.get_by_id(key.id).last_used_ip == "10.0.0.2"


def test_writing_last_uses_keeps_every_process_cache_warm(hv):
    """The flush runs every few seconds in every worker of every node; were it to move the
    generation, each would drop every cached key lookup that often."""
    key = Key.get(Key.name == "acme-read")
    before = db.generation()
    hv.runtime.key_uses.note(key, "10.0.0.9", "ci")
    assert hv.runtime.key_uses.flush() == 1
    assert Key.get_by_id(key.id).last_used_ip == "10.0.0.9"
    assert db.generation() == before
    keys.revoke(keys.find(hv.runtime.app_secret, hv.repo_key))  # a real change still moves it
    assert db.generation() != before


def test_the_admin_ui_shows_uses_not_yet_written(hv):
    assert hv.repo("names").status_code == 200
    web = WebSession(hv.url)
    web.login()
    page = web.get("/admin/orgs/acme")
    assert re.search(r"acme-read.*?from 127\.0\.0\.1", page.text, re.S), page.text


def test_serve_writes_last_use_when_stopped_with_sigterm(tmp_path):
    init = run(tmp_path, "init", "--admin", "root", "--org", "acme")
    repo_key = re.search(r"Repository key:\s+([0-9a-f]{32})", init.output).group(1)
    server = ServerProcess(tmp_path / "data").start()
    try:
        assert requests.get(f"{server.url}/repos/acme/names", headers={"authorization": repo_key},
                            timeout=10).status_code == 200
    finally:
        server.stop()  # SIGTERM, as systemd stops it
    assert server.proc.returncode == 0
    listed = run(tmp_path, "key", "list", "--org", "acme")
    assert "last used never" not in listed.output and "last used 20" in listed.output, listed.output
