#!/usr/bin/env python3
"""Benchmark: publish latency as one organization grows to 10,000 packages / 100,000 releases.

The organization is grown in steps by bulk-inserting package and release rows (all releases
point at one real stored tarball, so the fill takes seconds, not hours), names/versions are
rebuilt, and `hexvault serve` is started on loopback. At each step it publishes real tarballs
through the HTTP API and prints one line per figure:

    step_packages=N releases=M publish_ms_first=... publish_ms_median=... names_ok=1 versions_ok=1 rss_mb=...

publish_ms_first includes warming the server's index cache; the median is the steady state.
Usage: scripts/bench_scale.py [--steps 100,1000,10000] [--releases-per-package 10] [--publishes 10]
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

from appliance import accounts, keys, orgs, packages, registry_builder  # noqa: E402
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="100,1000,10000")
    parser.add_argument("--releases-per-package", type=int, default=10)
    parser.add_argument("--publishes", type=int, default=10)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]

    with tempfile.TemporaryDirectory(prefix="hexvault-scale-") as tmp:
        config = load_config(environ={}, data_dir=os.path.join(tmp, "data"), bcrypt_rounds=4)
        initialize(config)
        rt = open_runtime(config)
        database.connect()
        admin = accounts.create_user("bench", "bench-password", is_admin=True, rounds=4)
        org = orgs.create("scale")
        orgs.add_member(org, admin, "admin")
        _k, repo_key = keys.create(rt.app_secret, "read", [["repository", "scale"]], organization=org)
        _k, api_key = keys.create(rt.app_secret, "write", [["api", "write"]], user=admin)
        template, _ = packages.publish(rt, org, package_bytes("template", "1.0.0"))
        public_key = signing.load_public_key(SigningKey.current().public_pem.encode())
        have, published = 0, 1
        for step in steps:
            grow(rt, org, template, have, step, args.releases_per_package)
            have = step
            database.close()
            server = ServerProcess(config.data_dir).start()
            try:
                port = server.port
                timings = [publish(port, api_key, f"fresh{step}x{i:03d}") for i in range(args.publishes)]
                published += args.publishes
                names = registry.decode_names(registry.decode_signed(fetch(port, repo_key, "names"), public_key),
                                              "scale")
                versions = registry.decode_versions(
                    registry.decode_signed(fetch(port, repo_key, "versions"), public_key), "scale")
                expected_packages = have + published
                names_ok = len(names["packages"]) == expected_packages
                versions_ok = sum(len(p["versions"]) for p in versions["packages"]) == \
                    have * args.releases_per_package + published
                print(f"step_packages={have} releases={have * args.releases_per_package} "
                      f"publish_ms_first={timings[0]:.1f} publish_ms_median={statistics.median(timings[1:]):.1f} "
                      f"names_ok={int(names_ok)} versions_ok={int(versions_ok)} rss_mb={rss_mb(server.proc.pid):.0f}",
                      flush=True)
            finally:
                server.stop()
            database.connect()


if __name__ == "__main__":
    main()
