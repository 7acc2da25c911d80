#!/usr/bin/env python3
"""Benchmark: what the request observer (appliance/ops/edge.py) adds to every request.

Calls a one-line WSGI app a few hundred thousand times in-process, bare and wrapped in the
observer (route family, request counter, latency histogram; access log off, as by default), and
prints the best of five runs per call. No server, no sockets: the figure is the observer alone.

Usage: scripts/bench_observer.py [--calls 200000]
"""

import argparse
import os
import sys
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from appliance.ops.edge import RequestObserver  # noqa: E402


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "5")])
    return [b"hello"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/repos/acme/packages/foo", "REMOTE_ADDR": "127.0.0.1"}

    def start_response(status, headers, exc_info=None):
        return None

    observed = RequestObserver(app)
    results = {}
    for name, wsgi in (("bare_us", app), ("observed_us", observed)):
        best = min(timeit.repeat(lambda: wsgi(environ, start_response), number=calls, repeat=5))
        results[name] = best / calls * 1e6
    print(" ".join(f"{k}={v:.2f}" for k, v in results.items()),
          f"observer_us={results['observed_us'] - results['bare_us']:.2f} load={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
