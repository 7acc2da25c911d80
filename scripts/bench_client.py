#!/usr/bin/env python3
"""Benchmark: real rebar3 fetching a project with N private dependencies, cold cache, from
Hexvault and from a plain nginx serving the very same registry files and tarballs.

Each run is a fresh HOME and cache, so every registry file and tarball is downloaded; the two
servers take turns going first. `rebar3 get-deps` (the fetch: registry records, tarballs, checks,
unpacking) is timed by default; --task compile adds compiling the 30 apps. rebar3's own start-up
dominates and wanders between runs, so the ratio is the median of each run's paired ratio.

Prints one line per figure:
    rebar3_hexvault_s=...  median wall time of `rebar3 TASK` against Hexvault
    rebar3_nginx_s=...     the same against nginx (no auth)
    ratio=...              median over runs of hexvault / nginx
With --tls both sides are HTTPS with the same local CA trusted through rebar3's ssl_cacerts_path:
Hexvault through its TLS front (scripts/bench_front.py) against a plain nginx over TLS.
Usage: scripts/bench_client.py [--deps 30] [--runs 10] [--task get-deps|compile] [--tls]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_registry import start_nginx  # noqa: E402

from appliance import accounts, keys, orgs, packages  # noqa: E402
from appliance.config import load_config  # noqa: E402
from appliance.db import database  # noqa: E402
from appliance.models import SigningKey  # noqa: E402
from appliance.runtime import initialize, open_runtime  # noqa: E402
from tests.driver import erlang_package  # noqa: E402
from tests.procserver import ServerProcess  # noqa: E402
from tests.rebar3 import rebar3_compile  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--task", choices=("get-deps", "compile"), default="get-deps")
    parser.add_argument("--tls", action="store_true", help="both over HTTPS: the TLS front against nginx over TLS")
    args = parser.parse_args()
    if not shutil.which("rebar3"):
        raise SystemExit("needs Debian's rebar3")
    with tempfile.TemporaryDirectory(prefix="hexvault-client-") as tmp:
        config = load_config(environ={}, data_dir=os.path.join(tmp, "data"), bcrypt_rounds=4)
        initialize(config)
        rt = open_runtime(config)
        database.connect()
        org = orgs.create("bench")
        admin = accounts.create_user("bench", "bench-password", is_admin=True, rounds=4)
        orgs.add_member(org, admin, "admin")
        _k, repo_key = keys.create(rt.app_secret, "read", [["repository", "bench"]], organization=org)
        names = [f"dep{i:02d}" for i in range(args.deps)]
        for name in names:
            packages.publish(rt, org, erlang_package(name, "1.0.0"))
        pem = SigningKey.current().public_pem
        database.close()
        nginx, nginx_port = start_nginx(rt, "bench", names, tmp)  # byte-identical copies, same paths
        if nginx is None:
            raise SystemExit("needs Debian's nginx (apt-get install nginx-light)")
        server = ServerProcess(config.data_dir).start()
        extra_global, stoppers = "", []
        try:
            timings = {"hexvault": [], "nginx": []}
            targets = [("hexvault", server.url), ("nginx", f"http://127.0.0.1:{nginx_port}")]
            if args.tls:
                import bench_front

                tls = bench_front.make_tls(tmp)
                front, front_port = bench_front.start_front(config, server.port, tls, tmp)
                plain_tls, static_port = bench_front.start_static_tls(os.path.join(tmp, "nginx", "www"), tls, tmp)
                stoppers = [lambda: bench_front.stop(front), lambda: bench_front.stop(plain_tls)]
                targets = [("hexvault", f"https://localhost:{front_port}"), ("nginx", f"https://localhost:{static_port}")]
                extra_global = f'{{ssl_cacerts_path, "{tls.ca_cert}"}}.\n'

            for run in range(args.runs):
                # Alternate who goes first, so warm-up and drift don't favour one side.
                for label, url in (targets if run % 2 == 0 else targets[::-1]):
                    work = Path(tempfile.mkdtemp(dir=tmp))  # a new HOME and cache: cold every time
                    t0 = time.perf_counter()
                    result = rebar3_compile(work, repo_name="bench", repo_url=f"{url}/repos/bench",
                                            public_key_pem=pem, repo_key=repo_key,
                                            deps=[(n, "1.0.0") for n in names], task=args.task,
                                            extra_global=extra_global)
                    elapsed = time.perf_counter() - t0
                    if result.returncode != 0:
                        raise SystemExit(f"rebar3 failed against {label}: {result.stdout[-2000:]}")
                    timings[label].append(elapsed)
            hexvault, static = statistics.median(timings["hexvault"]), statistics.median(timings["nginx"])
            paired = statistics.median(h / n for h, n in zip(timings["hexvault"], timings["nginx"]))
            print(f"rebar3_hexvault_s={hexvault:.2f} min={min(timings['hexvault']):.2f} task={args.task} "
                  f"deps={args.deps} runs={args.runs} tls={args.tls}")
            print(f"rebar3_nginx_s={static:.2f} min={min(timings['nginx']):.2f}")
            print(f"ratio={paired:.3f}")
        finally:
            for stop in stoppers:
                stop()
            server.stop()
            nginx.terminate()
            nginx.wait(timeout=10)


if __name__ == "__main__":
    main()
