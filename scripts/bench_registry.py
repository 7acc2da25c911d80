#!/usr/bin/env python3
"""Benchmark: authenticated registry reads and publish latency of a live Hexvault on loopback.

Initializes a throw-away data directory, fills one organization with N packages (through the
same publish service the API uses), starts `hexvault serve` as a separate process on 127.0.0.1,
then measures with C concurrent keep-alive clients for a bounded time. When Debian's nginx is
installed, the same registry bytes are also served by a plain nginx (no auth) on loopback in the
same run for comparison. Load comes from wrk when installed, else from Python clients.
Prints one line per figure:

    hexvault_packages_rps=... p99_ms=...   authenticated GET /repos/ORG/packages/NAME
    hexvault_tarballs_rps=... p99_ms=...   authenticated GET /repos/ORG/tarballs/NAME-1.0.0.tar
    nginx_packages_rps=... p99_ms=...      the same files from nginx
    ratio_packages=...                     hexvault / nginx
    waitress_hello_rps=...                 a WSGI app that returns one byte, on waitress: the ceiling
                                           of the design's server, with no Hexvault code at all
    conditional_304_rps=...                GETs with a matching If-None-Match
    mirror_packages_rps=...                GET /mirror/hexpm/packages/NAME (the open hex.pm mirror,
                                           filled from a bundle signed by a stand-in upstream key)
    publish_ms_median=...                  end-to-end publish latency (HTTP, validation, registry rebuild) at N

Scaling out (needs wrk; scripts/bench_scaleout.py, whose docstring says how), in the same run:
    workers1_packages_rps=... workers2_packages_rps=... ratio_workers=...
                                           authenticated GET /repos/ORG/packages/NAME with `workers = 1`
                                           and `workers = 2` (target on 2 cores: >= 1.7)
    with --postgresql, on a PostgreSQL 15 cluster started for the run (tests/pgcluster.py):
    pg_nodes1_packages_rps=... pg_nodes2_packages_rps=... ratio_nodes=...
                                           the same GETs against one node and against two nodes
                                           (`hexvault serve` x2, workers = 1 each, one database, one data dir)
    sqlite_workers1_packages_rps=... pg_nodes1_packages_rps=... ratio_pg_vs_sqlite=...
                                           one process on each backend: the cost of PostgreSQL's
                                           per-request generation read
    publish_ms_median_sqlite=... publish_ms_median_postgresql=...
                                           publish latency at N packages on each backend

With --tls (needs nginx and wrk), over HTTPS through the TLS front (scripts/bench_front.py):
    front_mirror_rps=...                   the open mirror's packages/NAME, which nginx serves from disk
    static_tls_mirror_rps=...              the same files from a plain nginx over TLS
    ratio_front_mirror=...                 front / plain nginx (target >= 0.8)
    front_tarballs_rps=...                 authorized tarballs (Hexvault decides, nginx streams)
    ratio_front_tarballs_vs_direct=...     front / Hexvault direct over HTTP (target >= 1)

Usage: scripts/bench_registry.py [--packages 1000] [--clients 32] [--seconds 10] [--publishes 20]
                                 [--mirror-packages 200] [--tls] [--postgresql] [--scale-only]

--scale-only measures only the scaling-out figures.
"""

import argparse
import http.client
import multiprocessing
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from appliance import accounts, keys, orgs, packages  # noqa: E402
from appliance.config import load_config  # noqa: E402
from appliance.db import database  # noqa: E402
from appliance.protocol import tarball  # noqa: E402
from appliance.runtime import initialize, open_runtime  # noqa: E402


def package_bytes(name, version):
    files = {f"src/{name}.erl": f"-module({name}).\n".encode(), "rebar.config": b"{erl_opts, []}.\n"}
    meta = {"name": name, "version": version, "app": name, "description": "bench", "licenses": ["MIT"],
            "files": sorted(files), "build_tools": ["rebar3"], "requirements": []}
    return tarball.create_package(meta, files)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(data_dir, n, database_url=""):
    config = load_config(environ={}, data_dir=data_dir, bcrypt_rounds=4, database_url=database_url)
    initialize(config)
    rt = open_runtime(config)
    with database.connection_context():
        admin = accounts.create_user("bench", "bench-password", is_admin=True, rounds=4)
        org = orgs.create("bench")
        orgs.add_member(org, admin, "admin")
        _k, repo_key = keys.create(rt.app_secret, "read", [["repository", "bench"]], organization=org)
        _k, api_key = keys.create(rt.app_secret, "write", [["api", "write"]], user=admin)
        started = time.perf_counter()
        for i in range(n):
            packages.publish(rt, org, package_bytes(f"pkg{i:05d}", "1.0.0"), actor=packages.audit.CLI)
        fill_seconds = time.perf_counter() - started
    return repo_key, api_key, fill_seconds


def fill_mirror(data_dir, workdir, count):
    """Import a hex.pm bundle of ``count`` packages made by scripts/hexpm_bundle.py from a fake
    upstream (tests/fake_hexpm.py) signed with its own key; returns (package names, key file)."""
    from pathlib import Path

    from appliance import mirror
    from tests.fake_hexpm import FakeHexpm

    names = [f"pub{i:04d}" for i in range(count)]
    root = Path(workdir) / "upstream"
    with FakeHexpm(root, {name: [("1.0.0", [])] for name in names}) as upstream:
        key_file = os.path.join(workdir, "upstream.pem")
        with open(key_file, "wb") as fh:
            fh.write(upstream.public_pem)
        bundle = os.path.join(workdir, "bundle.tar")
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hexpm_bundle.py"),
                        "--repo-url", upstream.url, "--public-key", key_file, "--out", bundle, *names],
                       check=True, capture_output=True, timeout=600)
    rt = open_runtime(load_config(environ={}, data_dir=data_dir, mirror_public_key=key_file))
    with database.connection_context():
        mirror.import_bundle(rt, bundle)
    return names, key_file


def wait_ready(port, deadline=30.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def client_worker(port, key, names, seconds, threads, queue):
    import threading

    latencies, errors = [], [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        local, rng = [], random.Random()
        while time.monotonic() < stop_at:
            name = rng.choice(names)
            t0 = time.perf_counter()
            conn.request("GET", f"/repos/bench/packages/{name}", headers={"authorization": key})
            response = conn.getresponse()
            response.read()
            local.append(time.perf_counter() - t0)
            if response.status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(local)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    queue.put((latencies, errors[0]))


def measure_reads(port, key, names, clients, seconds):
    procs_count = min(4, clients)
    queue = multiprocessing.Queue()
    per_proc = [clients // procs_count + (1 if i < clients % procs_count else 0) for i in range(procs_count)]
    procs = [multiprocessing.Process(target=client_worker, args=(port, key, names, seconds, t, queue))
             for t in per_proc]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    return len(latencies) / elapsed, p99 * 1000, errors


WRK_SCRIPT = """
local paths = {%s}
local headers = {%s}
request = function()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
"""


def lua_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_script(paths, headers, workdir):
    """A wrk Lua script requesting random ``paths`` with ``headers``; its file name."""
    script = os.path.join(workdir, "bench.lua")
    with open(script, "w") as fh:
        fh.write(WRK_SCRIPT % (", ".join(lua_string(p) for p in paths),
                               ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())))
    return script


def wrk_command(port, script, clients, seconds, threads=2, scheme="http"):
    return ["wrk", f"-t{threads}", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-s", script,
            f"{scheme}://127.0.0.1:{port}/"]


def parse_wrk(out):
    """(requests/s, p99 in ms, non-2xx/3xx responses) from wrk's --latency report."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


def measure_wrk(port, paths, headers, clients, seconds, workdir, scheme="http"):
    script = write_wrk_script(paths, headers, workdir)
    out = subprocess.run(wrk_command(port, script, clients, seconds, scheme=scheme),
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


NGINX_CONF = """
worker_processes 2;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %(dir)s/tmp;
  proxy_temp_path %(dir)s/tmp;
  fastcgi_temp_path %(dir)s/tmp;
  uwsgi_temp_path %(dir)s/tmp;
  scgi_temp_path %(dir)s/tmp;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:%(port)d;
    root %(dir)s/www;
  }
}
"""


def start_nginx(rt, org_name, names, workdir):
    """Serve the same registry files and tarballs with nginx at the same paths, no auth."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None, None
    os.chmod(workdir, 0o755)  # nginx workers run as an unprivileged user
    base = os.path.join(workdir, "nginx")
    www = os.path.join(base, "www", "repos", org_name)
    os.makedirs(os.path.join(www, "packages"))
    os.makedirs(os.path.join(www, "tarballs"))
    os.makedirs(os.path.join(base, "tmp"))
    with database.connection_context():
        org = orgs.get(org_name)
        for name in names:
            with open(os.path.join(www, "packages", name), "wb") as fh:
                fh.write(rt.store.get(f"registry/{org_name}/packages/{name}"))
            blob = packages.tarball_blob(rt, org, f"{name}-1.0.0.tar")
            with blob.open() as src, open(os.path.join(www, "tarballs", f"{name}-1.0.0.tar"), "wb") as dst:
                shutil.copyfileobj(src, dst)
    port = free_port()
    conf = os.path.join(base, "nginx.conf")
    with open(conf, "w") as fh:
        fh.write(NGINX_CONF % {"dir": base, "port": port})
    proc = subprocess.Popen([nginx, "-c", conf, "-p", base], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port)
    return proc, port


HELLO_APP = """
import sys, waitress
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "1")])
    return [b"x"]
waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
"""


def measure_waitress_hello(paths, clients, seconds, threads, workdir):
    """Requests/s of waitress itself: the same load against a one-byte WSGI app."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", HELLO_APP, str(port), str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        return measure_wrk(port, paths, {}, clients, seconds, workdir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure_publish(port, api_key, count):
    timings = []
    for i in range(count):
        data = package_bytes(f"fresh{i:04d}", "1.0.0")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = time.perf_counter()
        conn.request("POST", f"/api/repos/bench/packages/fresh{i:04d}/releases?replace=false", body=data,
                     headers={"authorization": api_key, "content-type": "application/octet-stream",
                              "accept": "application/vnd.hex+erlang"})
        response = conn.getresponse()
        response.read()
        timings.append((time.perf_counter() - t0) * 1000)
        if response.status != 201:
            raise SystemExit(f"publish failed: {response.status}")
        conn.close()
    return statistics.median(timings), max(timings)


def serve(data_dir, args, **env_extra):
    """`hexvault serve` on a free port as a child process; (process, port) once it answers."""
    port = free_port()
    env = dict(os.environ, HEXVAULT_DATA_DIR=data_dir, HEXVAULT_PORT=str(port), HEXVAULT_LOG_LEVEL="WARNING",
               HEXVAULT_THREADS=str(args.threads), HEXVAULT_CONFIG="", **env_extra)
    server = subprocess.Popen([sys.executable, "-m", "appliance", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port)
    return server, port


def stop(server):
    server.terminate()
    server.wait(timeout=30)


def measure_tls(rt, port, tar_paths, direct_tar_rps, mirror_names, auth, args, tmp):
    """The TLS front against a plain nginx over TLS (same certificate, same files) and against
    Hexvault direct; see the module docstring."""
    import bench_front

    if bench_front.NGINX is None:
        raise SystemExit("--tls needs Debian's nginx")
    tls = bench_front.make_tls(tmp)
    front, front_port = bench_front.start_front(rt.config, port, tls, tmp)
    www = os.path.join(tmp, "static-www")
    for name in mirror_names:  # the same mirror bytes, at the same paths, for the plain nginx
        target = os.path.join(www, "mirror", "hexpm", "packages", name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(rt.store.get(f"mirror/hexpm/packages/{name}"))
    static, static_port = bench_front.start_static_tls(www, tls, tmp)
    try:
        paths = [f"/mirror/hexpm/packages/{n}" for n in mirror_names]
        f_rps, f_p99, bad = measure_wrk(front_port, paths, {}, args.clients, args.seconds, tmp, "https")
        print(f"front_mirror_rps={f_rps:.0f} p99_ms={f_p99:.1f} non_2xx={bad}")
        s_rps, s_p99, bad = measure_wrk(static_port, paths, {}, args.clients, args.seconds, tmp, "https")
        print(f"static_tls_mirror_rps={s_rps:.0f} p99_ms={s_p99:.1f} non_2xx={bad}")
        print(f"ratio_front_mirror={f_rps / s_rps:.3f}")
        t_rps, t_p99, bad = measure_wrk(front_port, tar_paths, auth, args.clients, args.seconds, tmp, "https")
        print(f"front_tarballs_rps={t_rps:.0f} p99_ms={t_p99:.1f} non_2xx={bad}")
        print(f"ratio_front_tarballs_vs_direct={t_rps / direct_tar_rps:.3f}")
    finally:
        bench_front.stop(front)
        bench_front.stop(static)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--publishes", type=int, default=20)
    parser.add_argument("--mirror-packages", type=int, default=200, help="packages in the hex.pm mirror bundle")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads of the server")
    parser.add_argument("--tls", action="store_true", help="also measure through the TLS front (nginx, wrk)")
    parser.add_argument("--postgresql", action="store_true",
                        help="also measure one vs two nodes and publish latency on PostgreSQL")
    parser.add_argument("--scale-only", action="store_true",
                        help="only the scaling-out figures (workers; nodes with --postgresql)")
    args = parser.parse_args()
    import bench_scaleout  # it imports this module's helpers

    if args.scale_only:
        return bench_scaleout.scale_only(args)

    with tempfile.TemporaryDirectory(prefix="hexvault-bench-") as tmp:
        data_dir = os.path.join(tmp, "data")
        repo_key, api_key, fill_seconds = fill(data_dir, args.packages)
        print(f"fill_packages={args.packages} fill_seconds={fill_seconds:.1f}")
        mirror_names, mirror_key = fill_mirror(data_dir, tmp, args.mirror_packages)
        port = free_port()
        env = dict(os.environ, HEXVAULT_DATA_DIR=data_dir, HEXVAULT_PORT=str(port), HEXVAULT_LOG_LEVEL="WARNING",
                   HEXVAULT_THREADS=str(args.threads), HEXVAULT_CONFIG="", HEXVAULT_MIRROR_PUBLIC_KEY=mirror_key)
        server = subprocess.Popen([sys.executable, "-m", "appliance", "serve"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nginx = None
        try:
            wait_ready(port)
            names = [f"pkg{i:05d}" for i in range(args.packages)]
            auth = {"authorization": repo_key}
            if shutil.which("wrk"):
                pkg_paths = [f"/repos/bench/packages/{n}" for n in names]
                tar_paths = [f"/repos/bench/tarballs/{n}-1.0.0.tar" for n in names]
                rps, p99, bad = measure_wrk(port, pkg_paths, auth, args.clients, args.seconds, tmp)
                print(f"hexvault_packages_rps={rps:.0f} p99_ms={p99:.1f} non_2xx={bad} clients={args.clients}")
                tar_rps, tar_p99, bad = measure_wrk(port, tar_paths, auth, args.clients, args.seconds, tmp)
                print(f"hexvault_tarballs_rps={tar_rps:.0f} p99_ms={tar_p99:.1f} non_2xx={bad}")
                rt = open_runtime(load_config(environ={}, data_dir=data_dir))
                etag = rt.store.info(f"registry/bench/packages/{names[0]}").etag
                c_rps, c_p99, _ = measure_wrk(port, [pkg_paths[0]], dict(auth, **{"if-none-match": etag}),
                                              args.clients, args.seconds, tmp)
                print(f"conditional_304_rps={c_rps:.0f} p99_ms={c_p99:.1f}")
                m_rps, m_p99, bad = measure_wrk(port, [f"/mirror/hexpm/packages/{n}" for n in mirror_names], {},
                                                args.clients, args.seconds, tmp)
                print(f"mirror_packages_rps={m_rps:.0f} p99_ms={m_p99:.1f} non_2xx={bad} packages={len(mirror_names)}")
                nginx, nginx_port = start_nginx(rt, "bench", names, tmp)
                if nginx is not None:
                    n_rps, n_p99, bad = measure_wrk(nginx_port, pkg_paths, {}, args.clients, args.seconds, tmp)
                    print(f"nginx_packages_rps={n_rps:.0f} p99_ms={n_p99:.1f} non_2xx={bad}")
                    nt_rps, nt_p99, bad = measure_wrk(nginx_port, tar_paths, {}, args.clients, args.seconds, tmp)
                    print(f"nginx_tarballs_rps={nt_rps:.0f} p99_ms={nt_p99:.1f} non_2xx={bad}")
                    print(f"ratio_packages={rps / n_rps:.3f} ratio_tarballs={tar_rps / nt_rps:.3f}")
                h_rps, h_p99, _ = measure_waitress_hello(pkg_paths, args.clients, args.seconds, args.threads, tmp)
                print(f"waitress_hello_rps={h_rps:.0f} p99_ms={h_p99:.1f} hexvault_share_of_it={rps / h_rps:.2f}")
                if args.tls:
                    measure_tls(rt, port, tar_paths, tar_rps, mirror_names, auth, args, tmp)
            else:
                rps, p99, errors = measure_reads(port, repo_key, names, args.clients, args.seconds)
                print(f"hexvault_packages_rps={rps:.0f} p99_ms={p99:.1f} errors={errors} clients={args.clients} "
                      "(python clients; install wrk for better figures)")
            median, worst = measure_publish(port, api_key, args.publishes)
            print(f"publish_ms_median={median:.1f} publish_ms_max={worst:.1f} at_packages={args.packages}")
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait(timeout=10)
            server.terminate()
            server.wait(timeout=10)
        if shutil.which("wrk"):
            bench_scaleout.run(tmp, data_dir, repo_key, api_key, args, sqlite_publish_median=median)


if __name__ == "__main__":
    main()
