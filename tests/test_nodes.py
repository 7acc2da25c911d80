"""Several nodes: two `hexvault serve` processes with one PostgreSQL database, one data directory
and one app secret, as two machines behind a load balancer would run them (issue 9.4).

On one test machine the two nodes could also talk through local files (the SQLite-mode
generation counter is a memory-mapped file); on PostgreSQL nothing a node's correctness depends
on goes through a local file, so what passes here passes across machines. Each test is one
node's change and the other node's very next request.
"""

import os
import signal
import subprocess
import sys
import threading

import psycopg
import pytest
import requests

from appliance import check, db
from appliance.config import load_config
from appliance.db import database
from appliance.dbbackends import lock_id
from appliance.runtime import initialize, open_runtime
from tests.conftest import make_world
from tests.driver import Driver, erlang_package
from tests.nginxfront import NGINX, NginxFront, free_port, make_tls, share_blobs_with_service, world_dir
from tests.pgcluster import PostgresCluster
from tests.procserver import ServerProcess
from tests.test_workers import statuses_per_worker, wait_for, watcher_holders
from tests.webclient import WebSession


@pytest.fixture
def database_url(postgres, monkeypatch):
    """Always PostgreSQL: several nodes need a database every node reaches."""
    url = postgres.create_database()
    monkeypatch.setenv("HEXVAULT_DATABASE_URL", url)
    return url


class Cluster:
    def __init__(self, config, runtime, world, nodes):
        self.config = config
        self.runtime = runtime
        self.world = world
        self.nodes = nodes

    def driver(self, node):
        return Driver(node.url, self.runtime, **self.world)


@pytest.fixture
def cluster(runtime, config, tmp_path):
    world = make_world(runtime)
    database.close()
    env = {"HEXVAULT_PENDING_BUILD_SWEEP": "0.3", "HEXVAULT_LOG_LEVEL": "INFO"}
    nodes = [ServerProcess(config.data_dir, env=env, output=tmp_path / f"node-{name}.log") for name in "ab"]
    for node in nodes:
        node.start()
    yield Cluster(config, runtime, world, nodes)
    for node in nodes:
        node.stop()
    database.connect(reuse_if_open=True)


def versions_on(driver, name):
    return [r["version"] for r in driver.registry_package(name)["releases"]]


def test_a_release_published_on_one_node_is_served_by_the_other_on_the_next_request(cluster):
    a, b = (cluster.driver(node) for node in cluster.nodes)
    assert a.publish(erlang_package("shared", "1.0.0")).status_code == 201
    # b has the package and the index in its caches now
    assert versions_on(b, "shared") == ["1.0.0"] and "shared" in [p["name"] for p in b.registry_names()["packages"]]
    for n in range(2, 12):
        data = erlang_package("shared", f"1.0.{n}")
        publisher, reader = (a, b) if n % 2 else (b, a)
        assert publisher.publish(data).status_code == 201
        assert versions_on(reader, "shared")[-1] == f"1.0.{n}"
        assert reader.repo(f"tarballs/shared-1.0.{n}.tar").content == data
        listed = {p["name"]: p["versions"] for p in reader.registry_versions()["packages"]}
        assert listed["shared"][-1] == f"1.0.{n}"


def test_a_key_revoked_on_one_node_is_refused_by_the_other_on_the_next_request(cluster):
    a, b = (cluster.driver(node) for node in cluster.nodes)
    for n in range(10):
        created = a.api("POST", "keys", body={"name": f"ci-{n}", "permissions": [{"domain": "repositories"}]})
        assert created.status_code == 201, created.text
        secret = created.term["secret"]
        # Both nodes authenticate it, and hold it in their in-memory lookup caches.
        assert a.repo("names", key=secret).status_code == 200
        assert b.repo("names", key=secret).status_code == 200
        revoker, other = (b, a) if n % 2 == 0 else (a, b)
        assert revoker.api("DELETE", f"keys/ci-{n}").status_code == 200
        assert other.repo("names", key=secret).status_code == 401
        assert revoker.repo("names", key=secret).status_code == 401


def test_a_browser_session_and_login_limits_hold_whichever_node_a_request_reaches(cluster):
    a_url, b_url = (node.url for node in cluster.nodes)
    browser = WebSession(a_url)
    assert browser.login().status_code == 200
    browser.url = b_url  # the load balancer sends the next request elsewhere
    assert browser.get("/admin/orgs/acme", allow_redirects=False).status_code == 200
    browser.post("/admin/logout")
    browser.url = a_url
    assert browser.get("/admin/orgs/acme", allow_redirects=False).status_code == 302  # dead on both

    # Failures are counted in the database: five spread over both nodes lock the account for
    # this address on both, even for the right password.
    for n in range(5):
        assert WebSession((a_url, b_url)[n % 2]).login(password=f"wrong-{n}").status_code == 401
    for url in (a_url, b_url):
        assert WebSession(url).login().status_code == 429


def test_the_same_release_published_on_both_nodes_at_once_has_exactly_one_winner(cluster):
    a, b = (cluster.driver(node) for node in cluster.nodes)
    for n in range(8):
        tarballs = [erlang_package("contested", f"2.0.{n}", module_body=f"greet() -> {n * 2 + i}.\n") for i in (0, 1)]
        barrier = threading.Barrier(2)
        results = [None, None]

        def publish(i, driver):
            barrier.wait()
            results[i] = driver.publish(tarballs[i]).status_code

        threads = [threading.Thread(target=publish, args=(i, d)) for i, d in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(results) == [201, 422], results
        winner = tarballs[results.index(201)]
        assert a.repo(f"tarballs/contested-2.0.{n}.tar").content == winner
        assert b.repo(f"tarballs/contested-2.0.{n}.tar").content == winner
    assert versions_on(a, "contested") == versions_on(b, "contested") == [f"2.0.{n}" for n in range(8)]


def test_kill_9_of_a_node_during_a_publish_stream_loses_nothing_acknowledged(cluster):
    a, b = (cluster.driver(node) for node in cluster.nodes)
    acknowledged, lock = [], threading.Lock()
    stop = threading.Event()

    def publisher(driver, prefix):
        n = 0
        while not stop.is_set():
            n += 1
            data = erlang_package(f"{prefix}{n:04d}", "1.0.0")
            try:
                response = driver.publish(data)
            except requests.RequestException:
                return  # this node is gone
            assert response.status_code < 500, response.text
            if response.status_code == 201:
                with lock:
                    acknowledged.append((f"{prefix}{n:04d}", data))

    threads = [threading.Thread(target=publisher, args=(driver, prefix)) for driver, prefix in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(acknowledged) >= 10, seconds=120)
    cluster.nodes[0].kill()
    threads[0].join(timeout=30)
    count = len(acknowledged)
    assert wait_for(lambda: len(acknowledged) >= count + 5, seconds=120)  # b goes on publishing
    stop.set()
    threads[1].join(timeout=60)

    names = {p["name"] for p in b.registry_names()["packages"]}
    for name, data in acknowledged:
        assert name in names
        assert versions_on(b, name) == ["1.0.0"]
        assert b.repo(f"tarballs/{name}-1.0.0.tar").content == data
    database.connect(reuse_if_open=True)
    # A build the dead node left between its commit and its files is finished by the other node.
    assert wait_for(lambda: check.run(cluster.runtime) == [], seconds=60)


def test_a_build_a_dead_node_left_pending_is_finished_by_the_other_without_a_restart(cluster):
    a, b = (cluster.driver(node) for node in cluster.nodes)
    assert a.publish(erlang_package("stuck", "1.0.0")).status_code == 201
    # Hold acme's registry lock, as a long build elsewhere would: node a commits the next
    # release and its pending row, then waits for the lock; it dies there.
    with psycopg.connect(cluster.config.database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_id("registry-acme"),))
        published = threading.Thread(target=_ignore_errors, args=(a.publish, erlang_package("stuck", "1.1.0")))
        published.start()
        assert wait_for(lambda: holder.execute("SELECT count(*) FROM pending_build").fetchone()[0] == 1)
        cluster.nodes[0].kill()
        published.join(timeout=30)
    # Nobody restarts node a; node b's sweep (0.3 s here) finds the row twice and builds it.
    assert wait_for(lambda: versions_on(b, "stuck") == ["1.0.0", "1.1.0"], seconds=60)
    database.connect(reuse_if_open=True)
    assert check.run(cluster.runtime) == []


def _ignore_errors(call, *args):
    try:
        call(*args)
    except requests.RequestException:
        pass


def test_registry_rebuilds_wait_for_one_running_on_another_node(cluster):
    """`hexvault registry rebuild` on any machine takes the organization's registry lock in the
    database, so it never runs beside another node's build."""
    holder = psycopg.connect(cluster.config.database_url, autocommit=True)
    key = lock_id("registry-acme")
    holder.execute("SELECT pg_advisory_lock(%s)", (key,))
    rebuild = subprocess.Popen([sys.executable, "-m", "appliance", "registry", "rebuild", "acme"],
                               env=_cli_env(cluster.config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with rebuild, holder:
        waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                   "AND ((classid::bigint << 32) | objid::bigint) = %s")
        assert wait_for(lambda: holder.execute(waiting, (key,)).fetchone()[0] == 1)
        assert rebuild.poll() is None
        holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
        assert rebuild.wait(timeout=60) == 0, rebuild.stdout.read()


def _cli_env(config):
    return dict(os.environ, HEXVAULT_DATA_DIR=config.data_dir, HEXVAULT_CONFIG="",
                HEXVAULT_DATABASE_URL=config.database_url)


def test_one_node_watches_the_drop_folder_and_another_takes_over_when_it_dies_or_loses_the_database(cluster):
    data = cluster.config.data_path
    url = cluster.config.database_url
    pids = {node.proc.pid: node for node in cluster.nodes}
    holders = wait_for(lambda: watcher_holders(data, url))
    assert len(holders) == 1 and holders[0] in pids
    drop = data / "import" / "acme"
    drop.mkdir(parents=True, exist_ok=True)

    # The holder's database session ends (a network cut, a PostgreSQL restart): it stops
    # watching; whichever node takes the lock next watches.
    first = holders[0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                     (f"hexvault drop-folder pid {first}",))
    assert wait_for(lambda: "lost the drop-folder lock" in pids[first].output.read_text())
    again = wait_for(lambda: watcher_holders(data, url))
    assert len(again) == 1 and again[0] in pids
    (drop / "one-1.0.0.tar").write_bytes(erlang_package("one", "1.0.0"))
    assert wait_for(lambda: (drop / "done" / "one-1.0.0.tar").exists())

    # That holder dies: the other node takes over.
    pids[again[0]].kill()
    survivor = next(pid for pid in pids if pid != again[0])
    assert wait_for(lambda: watcher_holders(data, url) == [survivor])
    (drop / "two-1.0.0.tar").write_bytes(erlang_package("two", "1.0.0"))
    assert wait_for(lambda: (drop / "done" / "two-1.0.0.tar").exists())
    assert not (drop / "failed").exists() or not list((drop / "failed").iterdir())
    reader = cluster.driver(pids[survivor])
    assert versions_on(reader, "one") == ["1.0.0"] and versions_on(reader, "two") == ["1.0.0"]


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh installs it)")
def test_behind_nginx_two_nodes_serve_as_one_and_go_on_when_one_dies(database_url):
    """The README's topology: the TLS front (`hexvault front config --upstream A --upstream B`)
    before two nodes on one PostgreSQL and one data directory."""
    root = world_dir("hvnodes")
    https_port = free_port()
    base = f"https://localhost:{https_port}"
    tls = make_tls(root / "tls")
    config = load_config(environ={}, data_dir=str(root / "data"), bcrypt_rounds=4, base_url=base,
                         database_url=database_url, trusted_proxy=True, secure_cookies=True)
    initialize(config)
    runtime = open_runtime(config)
    database.connect(reuse_if_open=True)
    world = make_world(runtime)
    database.close()
    env = {"HEXVAULT_BASE_URL": base, "HEXVAULT_TRUSTED_PROXY": "true", "HEXVAULT_SECURE_COOKIES": "true"}
    nodes = [ServerProcess(config.data_dir, env=env).start() for _ in range(2)]
    share_blobs_with_service(config.blob_path)
    nginx = NginxFront(config, [f"127.0.0.1:{node.port}" for node in nodes], tls, https_port=https_port).start()
    try:
        hv = Driver(nginx.url, runtime, **world)
        hv.http.verify = tls.ca_cert
        hv.http.trust_env = False
        database.connect(reuse_if_open=True)
        for n in range(6):  # round-robin: both nodes publish and serve
            data = erlang_package("fronted", f"1.0.{n}")
            assert hv.publish(data).status_code == 201
            assert versions_on(hv, "fronted")[-1] == f"1.0.{n}"
            tarball = hv.repo(f"tarballs/fronted-1.0.{n}.tar")
            assert tarball.content == data and "X-Accel-Redirect" not in tarball.headers

        nodes[0].kill()
        # nginx passes what it could not send to the dead node to the live one.
        for _ in range(6):
            assert hv.repo("names").status_code == 200
        data = erlang_package("fronted", "2.0.0")
        assert hv.publish(data).status_code == 201
        assert versions_on(hv, "fronted")[-1] == "2.0.0"
        assert hv.repo("tarballs/fronted-2.0.0.tar").content == data
    finally:
        nginx.stop()
        for node in nodes:
            node.stop()
        db.close_all()


@pytest.fixture
def own_postgresql(tmp_path, monkeypatch):
    """Two nodes on a PostgreSQL of their own, so a test may stop it without disturbing others:
    (cluster, config, runtime, world, nodes)."""
    pg = PostgresCluster().start()
    nodes = []
    try:
        url = pg.create_database()
        monkeypatch.setenv("HEXVAULT_DATABASE_URL", url)
        config = load_config(environ={}, data_dir=str(tmp_path / "data"), bcrypt_rounds=4, database_url=url)
        initialize(config)
        runtime = open_runtime(config)
        database.connect(reuse_if_open=True)
        world = make_world(runtime)
        db.close_all()
        env = {"HEXVAULT_THREADS": "2", "HEXVAULT_PENDING_BUILD_SWEEP": "0.3"}
        nodes = [ServerProcess(config.data_dir, env=env).start() for _ in range(2)]
        yield pg, config, runtime, world, nodes
    finally:
        for node in nodes:
            node.stop()
        db.close_all()
        pg.stop()


def test_while_postgresql_is_down_nodes_answer_503_and_afterwards_recover_without_a_restart(own_postgresql):
    """An outage (a restart, a failover) cuts every connection: requests get a clear 503 meanwhile,
    and once PostgreSQL answers again every node serves on the very next request."""
    pg, _config, runtime, world, nodes = own_postgresql
    drivers = [Driver(node.url, runtime, **world) for node in nodes]
    for hv in drivers:  # every thread of both nodes holds a connection now
        for _ in range(4):
            assert hv.repo("names").status_code == 200

    # A restart nobody saw: the first request on each thread finds its connection dead
    # and is served on a new one.
    pg.pause()
    pg.resume()
    for hv in drivers:
        for _ in range(4):
            assert hv.repo("names").status_code == 200

    pg.pause()
    for hv in drivers:
        down = hv.repo("names")
        assert down.status_code == 503 and "database is unavailable" in down.text
        assert down.headers["Retry-After"] == "5"
        refused = hv.publish(erlang_package("during", "1.0.0"))
        assert refused.status_code == 503 and refused.term["message"].startswith("the database is unavailable")
        assert WebSession(hv.url).login().status_code == 503
        assert requests.get(f"{hv.url}/healthz", timeout=10).status_code == 200  # the process lives
        ready = requests.get(f"{hv.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["database"]["status"] == "fail"

    pg.resume()
    for n, hv in enumerate(drivers):
        for _ in range(4):  # each thread's connection died with the server; none fails
            assert hv.repo("names").status_code == 200
        assert hv.publish(erlang_package(f"after{n}", "1.0.0")).status_code == 201
    database.connect(reuse_if_open=True)
    assert check.run(runtime) == []


def test_a_publish_committed_before_an_outage_is_acknowledged_and_built_after_it(own_postgresql):
    """The database goes away between a publish's commit and its registry build: the release is
    stored, so the client hears 201 (not "nothing was changed"), and the build is finished once
    the database is back, by the sweep of pending builds."""
    pg, config, runtime, world, nodes = own_postgresql
    a, b = (Driver(node.url, runtime, **world) for node in nodes)
    answer = []
    with psycopg.connect(config.database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_id("registry-acme"),))
        published = threading.Thread(target=lambda: answer.append(a.publish(erlang_package("late", "1.0.0"))))
        published.start()
        assert wait_for(lambda: holder.execute("SELECT count(*) FROM pending_build").fetchone()[0] == 1)
        pg.pause()  # the build waiting for the lock loses its connection
        published.join(timeout=60)
    assert answer[0].status_code == 201, answer[0].text
    pg.resume()
    assert wait_for(lambda: _versions_or_none(b, "late") == ["1.0.0"], seconds=60)
    database.connect(reuse_if_open=True)
    assert check.run(runtime) == []


def _versions_or_none(driver, name):
    response = driver.repo(f"packages/{name}")
    return versions_on(driver, name) if response.status_code == 200 else None


def test_liveness_answers_while_postgresql_is_frozen(own_postgresql):
    """A database that stops answering without closing anything (a frozen host): /healthz asks
    nothing of it, so a supervisor does not restart healthy nodes for it."""
    pg, _config, runtime, world, nodes = own_postgresql
    for node in nodes:
        assert Driver(node.url, runtime, **world).repo("names").status_code == 200
    frozen = _cluster_pids(pg.proc.pid)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        for node in nodes:
            for _ in range(4):
                assert requests.get(f"{node.url}/healthz", timeout=10).status_code == 200
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    for node in nodes:
        assert Driver(node.url, runtime, **world).repo("names").status_code == 200


def _cluster_pids(postmaster):
    pids, todo = [], [postmaster]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                todo.extend(int(child) for child in fh.read().split())
        except FileNotFoundError:
            pass
    return pids


def test_workers_on_postgresql_each_talk_on_sessions_of_their_own(runtime, config, database_url):
    """The supervisor opens the database before it forks (migrations, repair, warm caches); a
    connection it kept would be inherited by every worker, which would then read each other's
    results and share one transaction (and its write lock)."""
    world = make_world(runtime)
    database.close()
    server = ServerProcess(config.data_dir, workers=2).start()
    try:
        workers = wait_for(lambda: len(server.worker_pids()) == 2 and server.worker_pids())
        seen = statuses_per_worker(server, "/repos/acme/names", {"authorization": world["repo_key"]})
        assert seen == {pid: {200} for pid in workers}
        with psycopg.connect(database_url) as conn:
            names = [name for (name,) in conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'hexvault pid %%' AND pid <> pg_backend_pid()").fetchall()]
        owners = {int(name.rsplit(" ", 1)[1]) for name in names} - {os.getpid()}  # this test's own
        assert owners == set(workers), (owners, workers, server.proc.pid)
    finally:
        server.stop()


def test_a_node_waiting_for_a_duty_retries_on_one_session(cluster):
    """Every process not holding a duty's lock tries again every few seconds; each try on a new
    connection would be a new PostgreSQL session (a fork on the server) per duty, per process."""
    url = cluster.config.database_url
    holders = wait_for(lambda: watcher_holders(cluster.config.data_path, url))
    waiter = next(node.proc.pid for node in cluster.nodes if node.proc.pid != holders[0])
    query = ("SELECT pid, query_start FROM pg_stat_activity WHERE application_name = %s")
    with psycopg.connect(url, autocommit=True) as conn:
        def sessions():
            return conn.execute(query, (f"hexvault drop-folder pid {waiter}",)).fetchall()

        first = wait_for(lambda: sessions())
        assert len(first) == 1
        # A later try shows as a later query on a session; the same one, not a new one.
        later = wait_for(lambda: [s for s in sessions() if s[1] > first[0][1]], seconds=30)
        assert later and later[0][0] == first[0][0] and len(sessions()) == 1
