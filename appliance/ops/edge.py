"""The request observer: one WSGI layer that sees every request, the repository fast path's
(routes/fastpath.py, answered below Flask) as well as Flask's.

It times each request from arrival until the application hands back its response body (a large
tarball's transfer afterwards is waitress's), then counts it in the metrics and, with
``access_log`` on, writes the access log line. The layer that turned a HexvaultError into the
response leaves the exception in ``environ[ERROR_KEY]`` so failures can be counted by reason.
"""

import time

from appliance.ops import logs, metrics

ERROR_KEY = "hexvault.error"

_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
_REGISTRY_FILES = {"names": "registry_index", "versions": "registry_index", "packages": "registry_package",
                   "tarballs": "registry_tarball"}
_TOP_LEVEL = {"api": "api", "docs": "docs", "admin": "admin", "healthz": "health", "readyz": "health",
              "metrics": "metrics"}


def route_family(path):
    """A small fixed set of names for what a path is, never a name from the path itself (an
    organization or package name would make one time series per name, and leak it). Split, not
    matched: this runs on every request."""
    parts = path.split("/", 6)  # ["", first, ...]
    first = parts[1] if len(parts) > 1 else ""
    if first == "repos":  # /repos/ORG/FILE
        return _REGISTRY_FILES.get(parts[3] if len(parts) > 3 else "", "repository_other")
    if first == "mirror":  # /mirror/hexpm/FILE or /mirror/hexpm/repos/ORG/FILE
        kind = parts[5] if len(parts) > 5 and parts[3] == "repos" else (parts[3] if len(parts) > 3 else "")
        return "mirror_" + _REGISTRY_FILES.get(kind, "repository_other")
    return _TOP_LEVEL.get(first, "other")


class RequestObserver:
    def __init__(self, app, access_log=False):
        self.app = app
        self.access_log = access_log

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        response = ["500", ()]  # status line, headers: parsed after the request, and only if needed

        def observing_start_response(status, headers, exc_info=None):
            response[0], response[1] = status, headers
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, observing_start_response)
        finally:
            self._record(environ, int(response[0][:3]), response[1], time.perf_counter() - started)

    def _record(self, environ, status, headers, seconds):
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        metrics.observe_request(route_family(path), method if method in _METHODS else "other", path, status,
                                seconds, environ.get(ERROR_KEY))
        if self.access_log:
            size = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
            # The path only: query strings can carry keys, and headers carry them always.
            logs.log_request(environ.get("REMOTE_ADDR"), method, path, status, size, seconds * 1000,
                             environ.get("HTTP_USER_AGENT"))
