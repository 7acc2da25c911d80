#!/usr/bin/env python3
"""Benchmark: publish latency as one organization grows to 10,000 packages / 100,000 releases.

The organization is grown in steps by bulk-inserting package and release rows (all releases
point at one real stored tarball, so the fill takes seconds, not hours), names/versions are
rebuilt, and `hexvault serve` is started on loopback. At each step it publishes real tarballs
through the HTTP API and prints one line per figure:

    step_packages=N backend=sqlite releases=M publish_ms_first=... publish_ms_median=... names_ok=1 versions_ok=1
        rss_mb=... load1=...

load1 is the 1-minute load average when the step was measured (the machine may be shared).
publish_ms_first includes warming the server's index cache; the median is the steady state.

With --postgresql the same organization is grown a second time in a PostgreSQL 15 cluster started
for the run (tests/pgcluster.py; the bulk insert binds peewee to its URL), and each step is
measured on both backends one after the other, printing a `backend=postgresql` line after the
SQLite one and then

    step_packages=N publish_ms_median_sqlite=... publish_ms_median_postgresql=... ratio_pg_vs_sqlite=...

Usage: scripts/bench_scale.py [--steps 100,1000,10000] [--releases-per-package 10] [--publishes 10]
                              [--postgresql]
"""

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_registry import package_bytes  # noqa: E402

from appliance import accounts, db, keys, orgs, packages, registry_builder  # noqa: E402
from appliance.config import load_config  # noqa: E402
from appliance.db import database, write_tx  # noqa: E402
from appliance.models import Package, Release, SigningKey  # noqa: E402
from appliance.protocol import registry, signing  # noqa: E402
from appliance.runtime import initialize, open_runtime  # noqa: E402
from tests.procserver import ServerProcess  # noqa: E402


def grow(rt, org, template, start, stop, per_package):
    """Bulk-insert packages [start, stop) with per_package releases each."""
    for base in range(start, stop, 1000):
        names = [f"bulk{i:06d}" for i in range(base, min(stop, base + 1000))]
        with write_tx():
            Package.insert_many([dict(organization=org.id, name=n, meta={}, revision=1) for n in names]).execute()
            ids = dict(Package.select(Package.name, Package.id)
                       .where((Package.organization == org.id) & Package.name.in_(names)).tuples())
            rows = [dict(package=ids[n], version=f"1.{v}.0", inner_checksum=template.inner_checksum,
                         outer_checksum=template.outer_checksum, size=template.size, metadata={})
                    for n in names for v in range(per_package)]
            for chunk in range(0, len(rows), 5000):
                Release.insert_many(rows[chunk:chunk + 5000]).execute()
    registry_builder.rebuild_index(rt, org)


def publish(port, api_key, name):
    data = package_bytes(name, "1.0.0")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", f"/api/repos/scale/packages/{name}/releases?replace=false", body=data,
                 headers={"authorization": api_key, "content-type": "application/octet-stream"})
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter() - t0) * 1000
    if response.status != 201:
        raise SystemExit(f"publish of {name} failed: {response.status}")
    return elapsed


def fetch(port, key, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", f"/repos/scale/{path}", headers={"authorization": key})
    response = conn.getresponse()
    return response.read()


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Backend:
    """One data directory and its organization, on SQLite or (``url``) PostgreSQL."""

    def __init__(self, name, data_dir, url=""):
        self.name, self.url = name, url
        self.have = 0  # packages bulk-inserted so far
        self.published = 1  # packages published for real, the template first
        self.config = load_config(environ={}, data_dir=data_dir, bcrypt_rounds=4, database_url=url)
        initialize(self.config)
        self.rt = open_runtime(self.config)
        with database.connection_context():
            admin = accounts.create_user("bench", "bench-password", is_admin=True, rounds=4)
            self.org = orgs.create("scale")
            orgs.add_member(self.org, admin, "admin")
            _k, self.repo_key = keys.create(self.rt.app_secret, "read", [["repository", "scale"]],
                                            organization=self.org)
            _k, self.api_key = keys.create(self.rt.app_secret, "write", [["api", "write"]], user=admin)
            self.template, _ = packages.publish(self.rt, self.org, package_bytes("template", "1.0.0"))
            self.public_key = signing.load_public_key(SigningKey.current().public_pem.encode())
        db.close_all()

    def grow_to(self, step, per_package):
        # Bind this backend's database: the other backend's steps ran in between.
        db.init_database(self.config.database_target, state_dir=self.config.data_path)
        with database.connection_context():
            grow(self.rt, self.org, self.template, self.have, step, per_package)
        db.close_all()
        self.have = step

    def measure(self, args):
        """Publish ``args.publishes`` packages through a fresh server and check names/versions."""
        server = ServerProcess(self.config.data_dir, env={"HEXVAULT_DATABASE_URL": self.url}).start()
        try:
            port = server.port
            timings = [publish(port, self.api_key, f"fresh{self.have}x{i:03d}") for i in range(args.publishes)]
            self.published += args.publishes
            names = registry.decode_names(
                registry.decode_signed(fetch(port, self.repo_key, "names"), self.public_key), "scale")
            versions = registry.decode_versions(
                registry.decode_signed(fetch(port, self.repo_key, "versions"), self.public_key), "scale")
            names_ok = len(names["packages"]) == self.have + self.published
            versions_ok = sum(len(p["versions"]) for p in versions["packages"]) == \
                self.have * args.releases_per_package + self.published
            median = statistics.median(timings[1:])
            print(f"step_packages={self.have} backend={self.name} releases={self.have * args.releases_per_package} "
                  f"publish_ms_first={timings[0]:.1f} publish_ms_median={median:.1f} "
                  f"names_ok={int(names_ok)} versions_ok={int(versions_ok)} rss_mb={rss_mb(server.proc.pid):.0f} "
                  f"load1={os.getloadavg()[0]:.1f}",
                  flush=True)
            return median
        finally:
            server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="100,1000,10000")
    parser.add_argument("--releases-per-package", type=int, default=10)
    parser.add_argument("--publishes", type=int, default=10)
    parser.add_argument("--postgresql", action="store_true",
                        help="also on PostgreSQL (a cluster started for the run), step by step beside SQLite")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]

    cluster = None
    with tempfile.TemporaryDirectory(prefix="hexvault-scale-") as tmp:
        try:
            backends = [Backend("sqlite", os.path.join(tmp, "data"))]
            if args.postgresql:
                from tests.pgcluster import PostgresCluster

                cluster = PostgresCluster().start()
                backends.append(Backend("postgresql", os.path.join(tmp, "data-pg"), cluster.create_database("scale")))
            for step in steps:
                medians = {}
                # Both backends at one step, one after the other: the machine's load drifts
                # less between them than between two whole runs.
                for backend in backends:
                    backend.grow_to(step, args.releases_per_package)
                    medians[backend.name] = backend.measure(args)
                if len(medians) == 2:
                    print(f"step_packages={step} publish_ms_median_sqlite={medians['sqlite']:.1f} "
                          f"publish_ms_median_postgresql={medians['postgresql']:.1f} "
                          f"ratio_pg_vs_sqlite={medians['postgresql'] / medians['sqlite']:.2f}", flush=True)
        finally:
            if cluster is not None:
                cluster.stop()


if __name__ == "__main__":
    main()
