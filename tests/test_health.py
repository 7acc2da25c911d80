"""/healthz and /readyz against a live server, each readiness check made to fail for real, and
`hexvault health` asking a running server."""

import subprocess

import pytest
import requests
from click.testing import CliRunner

from appliance import create_app, orgs, registry_builder
from appliance.cli import main
from appliance.models import PendingBuild
from appliance.ops.health import PENDING_GRACE, PendingWatch
from appliance.routes.ops import WATCH
from tests.conftest import LiveServer
from tests.driver import erlang_package
from tests.procserver import free_port
from tests.test_unservable import LONG, plant


def ready(url):
    response = requests.get(f"{url}/readyz", timeout=10)
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, response.json()


def statuses(body):
    return {name: check["status"] for name, check in body["checks"].items()}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def watched(hv):
    """A second live server over hv's data, whose pending-build watch runs on a clock the test
    moves: (its URL, the clock)."""
    clock = Clock()
    app = create_app(hv.runtime.config, hv.runtime)
    app.extensions[WATCH] = PendingWatch(clock=clock)
    server = LiveServer().start(app, hv.runtime.config)
    yield server.url, clock
    server.stop()


def test_healthz_and_readyz_answer_anyone_and_name_nothing_private(hv):
    alive = requests.get(f"{hv.url}/healthz", timeout=10)
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    assert hv.publish(erlang_package("hello", "1.0.0")).status_code == 201
    status, body = ready(hv.url)
    assert status == 200 and body["status"] == "ok"
    assert statuses(body) == {"database": "ok", "storage": "ok", "disk": "ok", "registry": "ok"}
    assert requests.head(f"{hv.url}/readyz", timeout=10).status_code == 200


def test_read_only_storage_fails_readiness(hv):
    blobs = str(hv.runtime.config.blob_path)
    mounted = subprocess.run(["mount", "--bind", blobs, blobs], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs root to bind-mount the blob directory read-only")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", blobs], check=True)
        status, body = ready(hv.url)
        assert status == 503 and body["status"] == "fail"
        assert statuses(body) == {"database": "ok", "storage": "fail", "disk": "ok", "registry": "ok"}
        assert "see the server log" in body["checks"]["storage"]["message"]
        assert blobs not in str(body)  # no paths either
        assert hv.repo("names").status_code == 200  # reads go on
    finally:
        subprocess.run(["umount", blobs], check=True)
    assert ready(hv.url)[0] == 200


def test_below_the_disk_reserve_the_node_is_degraded_but_ready(runtime):
    server = LiveServer()
    runtime.config = runtime.config.with_updates(base_url=server.url, min_free_bytes=2 ** 62)
    server.start(create_app(runtime.config, runtime), runtime.config)
    try:
        status, body = ready(server.url)
        assert status == 200 and body["status"] == "degraded"
        assert statuses(body)["disk"] == "degraded" and "writes are refused" in body["checks"]["disk"]["message"]
    finally:
        server.stop()


def test_a_registry_build_left_pending_fails_readiness_until_it_is_written(hv, watched):
    url, clock = watched
    org = orgs.get("acme")
    assert hv.publish(erlang_package("hello", "1.0.0")).status_code == 201
    # What a process that died between its commit and the rebuild leaves behind.
    PendingBuild.create(organization=org, package_name="hello")
    assert ready(url)[0] == 200  # first seen now: a build may be running
    clock.now += PENDING_GRACE - 1
    assert ready(url)[0] == 200
    clock.now += 1
    status, body = ready(url)
    assert status == 503 and statuses(body)["registry"] == "fail"
    assert "hexvault registry rebuild" in body["checks"]["registry"]["message"]
    registry_builder.update(hv.runtime, org)  # what `hexvault registry rebuild` or a restart does
    assert ready(url) == (200, {"status": "ok", "checks": {name: {"status": "ok"} for name in
                                                              ("database", "storage", "disk", "registry")}})


def test_a_package_the_registry_cannot_build_degrades_without_failing(hv, watched):
    url, clock = watched
    assert hv.publish(erlang_package("good", "1.0.0")).status_code == 201
    plant(hv.runtime, orgs.get("acme"), LONG, "1.0.0")
    assert ready(url)[0] == 200
    clock.now += PENDING_GRACE
    status, body = ready(url)
    assert status == 200 and body["status"] == "degraded"
    assert statuses(body)["registry"] == "degraded" and "hexvault check" in body["checks"]["registry"]["message"]
    assert LONG not in str(body) and "acme" not in str(body)
    assert hv.repo("packages/good").status_code == 200


def test_hexvault_health_asks_the_running_server(hv):
    env = {"HEXVAULT_DATA_DIR": hv.runtime.config.data_dir, "HEXVAULT_CONFIG": "",
           "HEXVAULT_PORT": hv.url.rsplit(":", 1)[1]}
    alive = CliRunner().invoke(main, ["health"], env=env)
    assert alive.exit_code == 0 and alive.output.endswith("/healthz: ok\n"), alive.output
    ready_now = CliRunner().invoke(main, ["health", "--ready"], env=env)
    assert ready_now.exit_code == 0 and "  registry: ok" in ready_now.output, ready_now.output
    nobody = CliRunner().invoke(main, ["health", "--wait", "1"], env=dict(env, HEXVAULT_PORT=str(free_port())))
    assert nobody.exit_code == 1 and "Connection refused" in nobody.output
