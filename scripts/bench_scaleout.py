"""The scaling-out figures of scripts/bench_registry.py (its --scale-only, and the end of a full
run with wrk installed); not a benchmark of its own. Every figure is authorized
`GET /repos/ORG/packages/NAME` over N packages under wrk, or publish latency at N packages.

- workers: one `hexvault serve` on SQLite with `workers = 2`, then with `workers = 1`.
- with --postgresql, a PostgreSQL 15 cluster started for the run (tests/pgcluster.py) and a second
  data directory filled with the same N packages in it: ONE node, then TWO nodes (two
  `hexvault serve` processes, workers = 1 each, one database_url, one data directory, so one app
  secret). One node on PostgreSQL is printed next to one worker on SQLite: what the per-request
  read of the change counter (appliance/generation.py) costs. Then publish latency on each backend.

The order (workers 2, workers 1, one node, two nodes) puts each pair that makes a ratio next to
each other in time, so load from other jobs on the machine drifts as little as possible between
them.

How two nodes are loaded: with the same wrk, its threads and connections split between the two
ports. One node gets one wrk with 2 threads and C connections; two nodes get two wrk started
together, each with 1 thread and C/2 connections to one port, and their requests/s are summed
(p99 is the worse of the two). Both run the same seconds; their start-up skew of a few
milliseconds is noise against 10 s. No balancer is put in front: on this 2-core machine an nginx
upstream would take CPU from the nodes it measures (in production the balancer runs elsewhere),
and an even split of long-lived keep-alive connections is what a round-robin balancer makes of
this load anyway. On one machine both nodes, PostgreSQL (which answers every request's
generation read) and wrk share the same cores: ratio_nodes says what a second process adds
beside PostgreSQL on these 2 cores, not what a second machine would.
"""

import os
import shutil
import subprocess
import tempfile

from bench_registry import fill, measure_publish, measure_wrk, parse_wrk, serve, stop, wrk_command, write_wrk_script

from appliance import db


def load():
    """The 1-minute load average as the figure is printed (it counts this benchmark's own
    server and wrk too): on a shared machine, what the figure was measured under."""
    return f"load1={os.getloadavg()[0]:.1f}"


def measure_workers(data_dir, paths, auth, args, tmp):
    """Requests/s with `workers = 2` and `workers = 1` on the same data and load; {workers: rps}."""
    results = {}
    for workers in (2, 1):
        server, port = serve(data_dir, args, HEXVAULT_WORKERS=str(workers))
        try:
            measure_wrk(port, paths, auth, args.clients, 2, tmp)  # warm every worker
            rps, p99, bad = measure_wrk(port, paths, auth, args.clients, args.seconds, tmp)
        finally:
            stop(server)
        results[workers] = rps
        print(f"workers{workers}_packages_rps={rps:.0f} p99_ms={p99:.1f} non_2xx={bad} {load()}", flush=True)
    print(f"ratio_workers={results[2] / results[1]:.2f}", flush=True)
    return results


def wrk_split(ports, paths, auth, clients, seconds, tmp):
    """One wrk per port, started together, 1 thread and clients/len(ports) connections each:
    (summed requests/s, worst p99 ms, summed non-2xx, requests/s per port)."""
    script = write_wrk_script(paths, auth, tmp)
    share = clients // len(ports)
    runs = []
    try:
        for port in ports:
            runs.append(subprocess.Popen(wrk_command(port, script, share, seconds, threads=1),
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        results = [parse_wrk(run.communicate(timeout=seconds + 60)[0]) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    per_port = [r[0] for r in results]
    return sum(per_port), max(r[1] for r in results), sum(r[2] for r in results), per_port


def measure_nodes(data_dir, url, paths, auth, args, tmp):
    """Requests/s against one node, then two, on one PostgreSQL database; {nodes: rps}."""
    results = {}
    for count in (1, 2):
        nodes = []
        try:
            for _ in range(count):
                nodes.append(serve(data_dir, args, HEXVAULT_DATABASE_URL=url, HEXVAULT_WORKERS="1"))
            ports = [port for _server, port in nodes]
            for port in ports:
                measure_wrk(port, paths, auth, args.clients, 2, tmp)  # warm every node
            if count == 1:
                rps, p99, bad = measure_wrk(ports[0], paths, auth, args.clients, args.seconds, tmp)
                per_node = [rps]
            else:
                rps, p99, bad, per_node = wrk_split(ports, paths, auth, args.clients, args.seconds, tmp)
        finally:
            for server, _port in nodes:
                stop(server)
        results[count] = rps
        print(f"pg_nodes{count}_packages_rps={rps:.0f} p99_ms={p99:.1f} non_2xx={bad} "
              f"per_node={'+'.join(f'{r:.0f}' for r in per_node)} {load()}", flush=True)
    print(f"ratio_nodes={results[2] / results[1]:.2f}", flush=True)
    return results


def run(tmp, data_dir, repo_key, api_key, args, sqlite_publish_median=None):
    """Every scaling-out figure for the SQLite data directory ``data_dir`` (filled by
    bench_registry.fill); ``sqlite_publish_median``: SQLite's publish latency if already measured
    on it (a second measurement would publish the same names again)."""
    cluster = None
    try:
        if args.postgresql:
            from tests.pgcluster import PostgresCluster

            cluster = PostgresCluster().start()
            pg_dir = os.path.join(tmp, "data-pg")
            url = cluster.create_database("bench")
            pg_repo_key, pg_api_key, fill_seconds = fill(pg_dir, args.packages, url)
            db.close_all()
            print(f"fill_packages_postgresql={args.packages} fill_seconds={fill_seconds:.1f}", flush=True)
        paths = [f"/repos/bench/packages/pkg{i:05d}" for i in range(args.packages)]
        if shutil.which("wrk"):
            workers = measure_workers(data_dir, paths, {"authorization": repo_key}, args, tmp)
            if args.postgresql:
                nodes = measure_nodes(pg_dir, url, paths, {"authorization": pg_repo_key}, args, tmp)
                print(f"sqlite_workers1_packages_rps={workers[1]:.0f} pg_nodes1_packages_rps={nodes[1]:.0f} "
                      f"ratio_pg_vs_sqlite={nodes[1] / workers[1]:.2f}", flush=True)
        else:
            print("no wrk: workers and nodes not measured (apt-get install wrk)")
        if args.postgresql:
            if sqlite_publish_median is None:
                server, port = serve(data_dir, args)
                try:
                    sqlite_publish_median, _worst = measure_publish(port, api_key, args.publishes)
                finally:
                    stop(server)
            server, port = serve(pg_dir, args, HEXVAULT_DATABASE_URL=url)
            try:
                median, worst = measure_publish(port, pg_api_key, args.publishes)
            finally:
                stop(server)
            print(f"publish_ms_median_sqlite={sqlite_publish_median:.1f} publish_ms_median_postgresql={median:.1f} "
                  f"publish_ms_max_postgresql={worst:.1f} at_packages={args.packages} {load()}", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()


def scale_only(args):
    """bench_registry.py --scale-only: fill one SQLite data directory, then run()."""
    with tempfile.TemporaryDirectory(prefix="hexvault-bench-") as tmp:
        data_dir = os.path.join(tmp, "data")
        repo_key, api_key, fill_seconds = fill(data_dir, args.packages)
        db.close_all()
        print(f"fill_packages={args.packages} fill_seconds={fill_seconds:.1f}", flush=True)
        run(tmp, data_dir, repo_key, api_key, args)
