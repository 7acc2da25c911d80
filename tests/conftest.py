"""Fixtures: a real data directory, a real database and a real waitress server on 127.0.0.1.

``hexvault`` initializes a fresh data directory per test and serves it with waitress in a
thread; ``hv`` is a driver with verbs (publish, api, repo) shared by the tests. Nothing of
Hexvault's own is mocked.

The database is SQLite in the data directory, or, with ``HEXVAULT_TEST_DATABASE=postgresql``
(scripts/test.sh's second pass), a new database per test in a real PostgreSQL cluster started
once per session (tests/pgcluster.py); its URL is also exported as HEXVAULT_DATABASE_URL for the
CLI and server processes a test starts. ``postgres`` gives tests that always need PostgreSQL
(db copy, migrations on both backends) that cluster.
"""

import os
import socket
import threading

import pytest

from appliance import accounts, create_app, keys, orgs, registry_builder, serving
from appliance.config import load_config
from appliance import db
from appliance.db import database
from appliance.runtime import initialize, open_runtime
from tests.driver import Driver
from tests.fake_hexpm import FakeHexpm
from tests.mixclient import Installs
from tests.pgcluster import PostgresCluster

# No test reads a config file it was not given: not the developer's HEXVAULT_CONFIG, and not
# the hexvault.toml that `install.sh --dev` writes into this checkout (set but empty: no file).
os.environ["HEXVAULT_CONFIG"] = ""

ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")
BACKEND = os.environ.get("HEXVAULT_TEST_DATABASE", "sqlite")
assert BACKEND in ("sqlite", "postgresql"), f"HEXVAULT_TEST_DATABASE={BACKEND!r}"


@pytest.fixture(scope="session")
def postgres():
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def database_url(request, monkeypatch):
    """'' (SQLite in the data directory) or the URL of a new PostgreSQL database."""
    if BACKEND == "sqlite":
        monkeypatch.delenv("HEXVAULT_DATABASE_URL", raising=False)
        return ""
    url = request.getfixturevalue("postgres").create_database()
    monkeypatch.setenv("HEXVAULT_DATABASE_URL", url)
    return url


@pytest.fixture
def another_database(request):
    """Makes a second database of the test's backend: '' for SQLite (each data directory has its
    own), else the URL of a new PostgreSQL database (a restore target, a second appliance)."""
    return lambda: "" if BACKEND == "sqlite" else request.getfixturevalue("postgres").create_database()


@pytest.fixture
def config(tmp_path, database_url):
    return load_config(environ={}, data_dir=str(tmp_path / "data"), bcrypt_rounds=4, port=8000,
                       database_url=database_url)


@pytest.fixture
def runtime(config):
    initialize(config)
    rt = open_runtime(config)
    database.connect(reuse_if_open=True)
    yield rt
    db.close_all()


class LiveServer:
    """waitress on a socket bound to port 0, so the URL is known before the app is built."""

    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = None
        self.thread = None

    def start(self, app, config=None, **options):
        """``options`` override the tests' waitress settings (8 threads, 64 MiB bodies)."""
        options = dict(dict(threads=8, max_request_body_size=64 * 1024 * 1024), **options)
        self.server = serving.create_server(app, config, sockets=[self.socket], **options)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        # Closing the listening socket is not enough: waitress's loop runs while any client
        # connection (a keep-alive session) is still in its map.
        # Channels are closed from inside the loop's own thread (via its trigger), never under it.
        def close_all():
            for channel in list(self.server._map.values()):
                if channel is not self.server.trigger:
                    channel.close()
            self.server.trigger.close()

        try:
            self.server.trigger.pull_trigger(close_all)
        except OSError as exc:
            # Seen now and then (EBADF): the trigger pipe was closed under the loop, which then
            # cannot be woken. Its poll() snapshots the map and wakes at least once a second, so
            # closing the channels from here ends it just as well.
            trigger_state = f"trigger closed by the loop: {self.server.trigger._closed}; {exc}"
            for channel in list(self.server._map.values()):
                channel.close()
        else:
            trigger_state = "trigger pulled"
        self.server.task_dispatcher.shutdown()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), f"waitress did not stop ({trigger_state})"


@pytest.fixture
def live_server(config, runtime):
    # The external URL must be the live one: it is printed in client commands and API URLs.
    server = LiveServer()
    runtime.config = config.with_updates(base_url=server.url)
    server.start(create_app(runtime.config, runtime), runtime.config)
    yield server
    server.stop()


def make_world(runtime):
    """An admin, an organization `acme`, its repository key and the admin's api:write key."""
    admin = accounts.create_user("admin", "admin-password", is_admin=True, rounds=4)
    org = orgs.create("acme")
    orgs.add_member(org, admin, "admin")
    registry_builder.ensure_index(runtime, org)
    _k, repo_key = keys.create(runtime.app_secret, "acme-read", [["repository", "acme"]], organization=org)
    _k, api_key = keys.create(runtime.app_secret, "admin-write", [["api", "write"]], user=admin)
    return dict(org=org, admin=admin, repo_key=repo_key, api_key=api_key)


@pytest.fixture
def hv(runtime, live_server):
    """A driver for the live server, with make_world's admin, organization and keys."""
    return Driver(live_server.url, runtime, **make_world(runtime))


@pytest.fixture(scope="module")
def module_hv(tmp_path_factory):
    """Like ``hv``, but one server for a whole test module, for real-client tests whose cases each
    take seconds and make their own packages. A module using it must not use ``config``,
    ``runtime`` or ``hv``: the database binding is process-wide (pytest finishes one module's
    fixtures before another module's test starts, so modules never overlap)."""
    config = load_config(environ={}, data_dir=str(tmp_path_factory.mktemp("module-data")), bcrypt_rounds=4,
                         port=8000)
    initialize(config)
    rt = open_runtime(config)
    database.connect(reuse_if_open=True)
    server = LiveServer()
    rt.config = config.with_updates(base_url=server.url)
    server.start(create_app(rt.config, rt), rt.config)
    yield Driver(server.url, rt, **make_world(rt))
    server.stop()
    if not database.is_closed():
        database.close()


@pytest.fixture(scope="module")
def module_mirror(module_hv, tmp_path_factory):
    """module_hv's hex.pm mirror filled from a fake hex.pm (test key) with upa 1.0.0 and upb 2.1.0,
    as tests/test_mirror.py fills it; ``pem_path`` is the key clients must trust for hexpm."""
    from tests.test_mirror import UPSTREAM, drop, make_bundle

    hv = module_hv
    root = tmp_path_factory.mktemp("upstream")
    with FakeHexpm(root / "upstream", UPSTREAM) as fake:
        fake.pem_path = root / "hexpm.pem"
        fake.pem_path.write_bytes(fake.public_pem)
        hv.runtime.config = hv.runtime.config.with_updates(mirror_public_key=str(fake.pem_path))
        assert [r[1] for r in drop(hv, make_bundle(fake, root, root / "deps.tar", "upa"))] == ["done"]
        yield fake


@pytest.fixture(scope="session")
def hex_installs(tmp_path_factory):
    """MIX_HOMEs with each Hex archive installed, made once per session (per xdist worker)."""
    return Installs(tmp_path_factory.mktemp("mix-homes"))
