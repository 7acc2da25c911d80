"""/metrics against a live server: what is counted (fast path included), who may scrape, several
processes sharing one count, and Debian's real Prometheus scraping it."""

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from appliance import create_app, front, keys
from tests.conftest import LiveServer
from tests.driver import erlang_package
from tests.procserver import ServerProcess, free_port
from tests.test_mirror import drop, make_bundle, upstream  # noqa: F401  (upstream is a fixture)
from tests.webclient import WebSession

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TOKEN = "metrics-token-for-tests-0123456789"


def scrape(url, **headers):
    response = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return Samples(response.text)


class Samples:
    def __init__(self, text):
        self.text = text
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def __call__(self, name, **labels):
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def serve(runtime, **changes):
    """Another live server over the same data directory, with changed settings."""
    server = LiveServer()
    runtime.config = runtime.config.with_updates(base_url=server.url, **changes)
    return server.start(create_app(runtime.config, runtime), runtime.config)


def test_requests_are_counted_by_route_family_including_the_fast_path(hv):
    before = scrape(hv.url)
    for _ in range(3):
        assert hv.repo("names").status_code == 200  # answered below Flask (routes/fastpath.py)
    assert hv.repo("tarballs/nothing-1.0.0.tar").status_code == 404
    assert hv.api("GET", "users/me").status_code == 200
    after = scrape(hv.url)

    def grew(name, **labels):
        return after(name, **labels) - before(name, **labels)

    assert grew("hexvault_http_requests_total", family="registry_index", method="GET", status="200") == 3
    assert grew("hexvault_http_requests_total", family="registry_tarball", status="404") == 1
    assert grew("hexvault_http_requests_total", family="api", method="GET", status="200") == 1
    assert grew("hexvault_http_request_duration_seconds_count", family="registry_index") == 3
    assert grew("hexvault_http_request_duration_seconds_bucket", family="registry_index", le="+Inf") == 3
    assert grew("hexvault_key_uses_total", owner="organization", form="key") == 4
    assert grew("hexvault_key_uses_total", owner="user", form="key") == 1


def test_authentication_failures_logins_and_lockouts_are_counted_by_reason(hv):
    before = scrape(hv.url)
    assert hv.repo("names", key="0" * 32).status_code == 401  # fast path
    assert hv.repo("names", key=False).status_code == 401
    assert hv.api("GET", "users/me", key="f" * 32).status_code == 401  # Flask
    revoked, secret = keys.create(hv.runtime.app_secret, "soon-revoked", [["repository", "acme"]], organization=hv.org)
    keys.revoke(revoked)
    assert hv.repo("names", key=secret).status_code == 401
    assert hv.publish(erlang_package("nope", "1.0.0"), key=hv.repo_key).status_code == 403
    assert WebSession(hv.url).login(password="wrong").status_code == 401  # the login form
    refused = wrong = 0
    for attempt in range(50):  # HTTP Basic passwords, until the login limits refuse
        status = requests.get(f"{hv.url}/api/users/me", auth=("admin", f"wrong-{attempt}"), timeout=10).status_code
        if status == 429:
            refused += 1
            break
        assert status == 401
        wrong += 1
    assert refused == 1
    after = scrape(hv.url)

    def grew(name, **labels):
        return after(name, **labels) - before(name, **labels)

    assert grew("hexvault_auth_failures_total", reason="invalid_key") == 2
    assert grew("hexvault_auth_failures_total", reason="missing") == 1
    assert grew("hexvault_auth_failures_total", reason="revoked_key") == 1
    assert grew("hexvault_auth_failures_total", reason="forbidden") == 1
    assert grew("hexvault_auth_failures_total", reason="bad_password") == wrong + 1
    assert grew("hexvault_login_failures_total") == wrong + 1
    assert grew("hexvault_login_lockouts_total") == 1
    assert grew("hexvault_auth_failures_total", reason="other") == 0


def test_publishes_reverts_retirements_and_registry_builds_are_counted(hv):
    before = scrape(hv.url)
    assert hv.publish(erlang_package("counted", "1.0.0")).status_code == 201
    assert hv.publish(erlang_package("counted", "1.1.0")).status_code == 201
    assert hv.api("POST", "repos/acme/packages/counted/releases/1.0.0/retire", body={"reason": "other"}).status_code == 204
    assert hv.api("DELETE", "repos/acme/packages/counted/releases/1.1.0").status_code == 204
    assert hv.publish(erlang_package("counted", "1.0.0"), replace=True).status_code == 200
    after = scrape(hv.url)

    def grew(name, **labels):
        return after(name, **labels) - before(name, **labels)

    assert grew("hexvault_audit_events_total", action="release.publish") == 2
    assert grew("hexvault_audit_events_total", action="release.retire") == 1
    assert grew("hexvault_audit_events_total", action="release.revert") == 1
    assert grew("hexvault_audit_events_total", action="release.replace") == 1
    assert grew("hexvault_registry_build_seconds_count", kind="update") == 5
    assert after("hexvault_registry_build_seconds_sum", kind="update") > before("hexvault_registry_build_seconds_sum",
                                                                               kind="update")


def test_stored_bytes_free_bytes_and_mirror_packages(hv, upstream, tmp_path):  # noqa: F811
    tarball = erlang_package("zanzibar", "1.0.0")
    assert hv.publish(tarball).status_code == 201
    assert [r[1] for r in drop(hv, make_bundle(upstream, tmp_path, tmp_path / "b.tar", "upa"))] == ["done"]
    state = scrape(hv.url)
    assert state("hexvault_stored_bytes", area="tarballs") == len(tarball)
    assert state("hexvault_stored_bytes", area="registry") > 0
    assert state("hexvault_stored_bytes", area="mirror") >= len(upstream.file("packages/upa")) + \
        len(upstream.file("tarballs/upa-1.0.0.tar"))
    assert state("hexvault_stored_bytes", area="database") == os.path.getsize(hv.runtime.config.database_path) + \
        os.path.getsize(str(hv.runtime.config.database_path) + "-wal")
    assert state("hexvault_mirror_packages") == 2  # upa and the upb it needs
    assert state("hexvault_packages") == 1 and state("hexvault_releases") == 1
    disk = os.statvfs(hv.runtime.config.data_dir)
    assert 0 < state("hexvault_disk_free_bytes") <= state("hexvault_disk_size_bytes") == disk.f_blocks * disk.f_frsize
    assert state("hexvault_disk_reserve_bytes") >= 1024 ** 3  # "auto": at least 1 GiB
    assert state("hexvault_registry_pending_builds") == 0
    # Nothing private: no organization or package name appears anywhere on the page.
    for name in ("acme", "zanzibar", "upa", "upb"):
        assert name not in state.text


def test_only_allowed_networks_or_the_token_may_scrape(runtime):
    token_hash = hashlib.sha256(TOKEN.encode()).hexdigest()
    server = serve(runtime, metrics_allow=("10.0.0.0/8",), metrics_token_sha256=token_hash)
    try:
        refused = requests.get(f"{server.url}/metrics", timeout=10)
        assert refused.status_code == 403 and "metrics_allow" in refused.json()["message"]
        wrong = requests.get(f"{server.url}/metrics", headers={"Authorization": "Bearer not-the-token"}, timeout=10)
        assert wrong.status_code == 401 and "hexvault_" not in wrong.text
        samples = scrape(server.url, Authorization=f"Bearer {TOKEN}")
        assert samples("hexvault_disk_free_bytes") > 0
        assert samples("hexvault_auth_failures_total", reason="bad_metrics_token") >= 1
        # The address is the client's: a forged X-Forwarded-For from an untrusted peer opens nothing.
        assert requests.get(f"{server.url}/metrics", headers={"X-Forwarded-For": "10.1.2.3"},
                            timeout=10).status_code == 403
    finally:
        server.stop()
    server = serve(runtime, metrics_allow=("127.0.0.1/32",), trusted_proxy=False)
    try:
        assert scrape(server.url)("hexvault_disk_free_bytes") > 0
        # Through the TLS front (nginx on this machine) every client looks local: without
        # trusted_proxy the address proves nothing, so only the token opens the page.
        via_front = {front.ACCEL_REQUEST_HEADER: front.ACCEL_REQUEST_VALUE}
        assert requests.get(f"{server.url}/metrics", headers=via_front, timeout=10).status_code == 403
    finally:
        server.stop()
    server = serve(runtime, metrics_allow=("10.0.0.0/8",), trusted_proxy=True)
    try:  # behind a trusted proxy, the forwarded client address is what metrics_allow sees
        assert requests.get(f"{server.url}/metrics", headers={"X-Forwarded-For": "10.1.2.3"},
                            timeout=10).status_code == 200
        assert requests.get(f"{server.url}/metrics", headers={"X-Forwarded-For": "192.0.2.1"},
                            timeout=10).status_code == 403
    finally:
        server.stop()


def test_several_processes_report_one_sum_through_a_shared_directory(hv, tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    servers = [ServerProcess(hv.runtime.config.data_dir, env=env).start() for _ in range(2)]
    try:
        for count, server in zip((2, 3), servers):
            for _ in range(count):
                assert requests.get(f"{server.url}/repos/acme/names", headers={"authorization": hv.repo_key},
                                    timeout=10).status_code == 200
        for server in servers:  # either process reports both
            samples = scrape(server.url)
            assert samples("hexvault_http_requests_total", family="registry_index", status="200") == 5
            assert samples("hexvault_key_uses_total", owner="organization") == 5
            assert samples("hexvault_disk_free_bytes") > 0
    finally:
        for server in servers:
            server.stop()


def test_with_several_workers_the_metrics_directory_is_private_to_this_machine_and_run(config, tmp_path):
    """serving.prepare_metrics, as `hexvault serve` calls it before it starts workers: run in a
    fresh interpreter, because prometheus_client picks its mode when first imported. Nodes may
    share the data directory, so the workers' files go to a new directory of this machine's own
    (systemd's RuntimeDirectory when given), never under the data directory."""
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir()
    program = textwrap.dedent(f"""
        import json, os
        from appliance import serving
        from appliance.config import load_config
        config = load_config(environ={{}}, data_dir={config.data_dir!r})
        first = serving.prepare_metrics(config, workers=2)
        from appliance.ops import metrics
        metrics.observe_request("api", "GET", "/api/x", 200, 0.01)
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        second = serving.prepare_metrics(config, workers=2)
        print(json.dumps([first, sorted(os.listdir(first)), oct(os.stat(first).st_mode & 0o777), second]))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["RUNTIME_DIRECTORY"] = str(runtime_dir)
    result = subprocess.run([sys.executable, "-c", program], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    first, files, mode, second = json.loads(result.stdout)
    assert os.path.dirname(first) == str(runtime_dir) and mode == "0o700"
    assert any(f.startswith("counter_") for f in files)
    assert second != first  # each start of serve gets its own
    assert not (config.data_path / "metrics").exists()


def dashboard_queries():
    with open(os.path.join(REPO, "scripts", "grafana-dashboard.json")) as fh:
        dashboard = json.load(fh)
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_sample_dashboard_asks_only_for_metrics_that_exist(hv):
    assert hv.publish(erlang_package("dash", "1.0.0")).status_code == 201  # a registry build, an audit event
    assert hv.repo("names", key="0" * 32).status_code == 401
    assert requests.get(f"{hv.url}/api/users/me", auth=("admin", "wrong"), timeout=10).status_code == 401
    exported = {s.name for s in scrape(hv.url).samples}
    queries = dashboard_queries()
    assert len(queries) >= 12
    for expr in queries:
        for name in re.findall(r"hexvault_[a-z_]+", expr):
            assert name in exported, f"{name} (in {expr}) is not exported"


def prometheus_binary():
    return shutil.which("prometheus") or next(
        (p for p in [os.path.join(REPO, ".cache", "prometheus", "usr", "bin", "prometheus")] if os.access(p, os.X_OK)),
        None)


def test_debians_prometheus_scrapes_a_live_hexvault_with_the_token(runtime):
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/test.sh extracts it into .cache/prometheus)")
    token_hash = hashlib.sha256(TOKEN.encode()).hexdigest()
    server = serve(runtime, metrics_allow=(), metrics_token_sha256=token_hash)
    # Prometheus runs unprivileged, as its package runs it; pytest's tmp_path is root's alone.
    work = pathlib.Path(tempfile.mkdtemp(prefix="hexvault-prometheus-"))
    (work / "data").mkdir()
    (work / "token").write_text(TOKEN + "\n")
    host_port = server.url.removeprefix("http://")
    (work / "prometheus.yml").write_text(textwrap.dedent(f"""
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        scrape_configs:
          - job_name: hexvault
            authorization: {{type: Bearer, credentials_file: {work / 'token'}}}
            static_configs: [{{targets: ['{host_port}']}}]
    """))
    api = f"http://127.0.0.1:{free_port()}"
    command = [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
               f"--web.listen-address={api.removeprefix('http://')}"]
    if os.geteuid() == 0:  # as the packaged service runs it: unprivileged
        shutil.chown(work, "nobody", "nogroup")
        for path in work.rglob("*"):
            shutil.chown(path, "nobody", "nogroup")
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    for _ in range(3):
        assert requests.get(f"{server.url}/repos/acme/names", timeout=10).status_code == 401
    # Counters live as long as the process, and other tests ran in this one: read the total.
    expected = scrape(server.url, Authorization=f"Bearer {TOKEN}")("hexvault_auth_failures_total", reason="missing")
    assert expected >= 3
    prometheus = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def query(expr):
            answer = requests.get(f"{api}/api/v1/query", params={"query": expr}, timeout=5).json()
            return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in answer["data"]["result"]}

        deadline = time.monotonic() + 60  # the first scrape lands about 5 s after start
        found = {}
        while time.monotonic() < deadline and prometheus.poll() is None:
            try:
                found = query('hexvault_auth_failures_total{reason="missing"}')
            except requests.ConnectionError:
                found = {}
            if found:
                break
            time.sleep(0.5)
        assert prometheus.poll() is None, prometheus.stderr.read().decode()[-2000:]
        assert list(found.values()) == [expected], found
        assert list(query('up{job="hexvault"}').values()) == [1.0]
        assert list(query("hexvault_disk_free_bytes").values())[0] > 0
        # Every query of the sample Grafana dashboard is PromQL this Prometheus accepts.
        for expr in dashboard_queries():
            expr = expr.replace("$job", "hexvault").replace("$__rate_interval", "1m")
            answer = requests.get(f"{api}/api/v1/query", params={"query": expr}, timeout=5).json()
            assert answer["status"] == "success", (expr, answer)
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        prometheus.stderr.close()
        server.stop()
        shutil.rmtree(work)
