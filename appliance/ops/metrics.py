"""Prometheus metrics at /metrics (prometheus-client), for one process or several.

Recorded at the edges, never inside domain code: ``observe_request`` is called by the request
observer (ops/edge.py) for every request; ``record_event`` listens to domain events (audit
entries, registry builds, key uses). Gauges of what is stored (disk, bytes, mirror packages,
pending builds) are read when scraped, by ``StateCollector``.

Several processes: prometheus-client keeps counters and histograms in files under
``PROMETHEUS_MULTIPROC_DIR`` when that variable is set before it is first imported
(serving.prepare_metrics sets it to DATA/metrics when there are several workers); a scrape of
any process then reports the sum of all. The scraped gauges need no sharing: they are read from
the disk and the database, which every process sees alike.

Only addresses in ``metrics_allow`` or callers with the token whose SHA-256 is
``metrics_token_sha256`` may scrape (``check_scraper``). Labels never carry organization,
package or key names: the page must be safe to hand to a monitoring team.
"""

import hashlib
import hmac
import ipaddress
import os
import threading
import time

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from appliance.errors import ConfigError, Forbidden, Unauthenticated
from appliance.models import Package, PendingBuild, Release
from appliance.ops import disk

STORED_BYTES_MAX_AGE = 60.0  # seconds a walk of the blob directory is reused: walking is O(files)

_registry = CollectorRegistry()
METRICS_TOKEN_REFUSED = "invalid metrics token"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("hexvault_http_requests", "HTTP requests answered, by route family, method and status.",
                   ["family", "method", "status"], registry=_registry)
LATENCY = Histogram("hexvault_http_request_duration_seconds",
                    "Time until the response body was handed to the server, by route family.",
                    ["family"], buckets=_LATENCY_BUCKETS, registry=_registry)
AUTH_FAILURES = Counter("hexvault_auth_failures",
                        "Requests refused for their credentials or permissions, by reason.",
                        ["reason"], registry=_registry)
LOGIN_FAILURES = Counter("hexvault_login_failures",
                         "Wrong username or password, on the login form or with HTTP Basic.", registry=_registry)
LOGIN_LOCKOUTS = Counter("hexvault_login_lockouts",
                         "Password attempts refused because the login limits locked the account or address.",
                         registry=_registry)
AUDIT_EVENTS = Counter("hexvault_audit_events",
                       "Audited changes by action: release.publish, release.replace, release.revert, "
                       "release.retire, key.generate, ...", ["action"], registry=_registry)
REGISTRY_BUILDS = Histogram("hexvault_registry_build_seconds",
                            "Time to rebuild and store one organization's registry files "
                            "(update: after a change; full: rebuild or repair).",
                            ["kind"], buckets=_LATENCY_BUCKETS, registry=_registry)
KEY_USES = Counter("hexvault_key_uses", "Requests authenticated with a key, by owner (user or organization) "
                   "and form (key, or oauth token exchanged for one).", ["owner", "form"], registry=_registry)
prometheus_client.ProcessCollector(registry=_registry)  # CPU, memory, open files: single-process mode only

# Unauthenticated's messages (keys.py, keyauth.py, accounts.py, check_scraper) as reason labels.
_UNAUTHENTICATED_REASONS = {
    METRICS_TOKEN_REFUSED: "bad_metrics_token",
    "missing authentication information": "missing",
    "invalid API key": "invalid_key",
    "API key revoked": "revoked_key",
    "token expired": "expired_token",
    "invalid username and password combination": "bad_password",
}
_LOGIN_FORM = "/admin/login"


def auth_failure_reason(method, path, status, error):
    """The reason label of a 401, 403 or 429 response, or None for any other."""
    if status == 401:
        if error is not None:
            return _UNAUTHENTICATED_REASONS.get(error.message, "other")
        # The login form renders its own 401 page (webui/auth.py) instead of raising.
        return "bad_password" if (method, path) == ("POST", _LOGIN_FORM) else "other"
    if status == 403:
        return "forbidden"
    if status == 429:
        return "locked_out"  # only the login limits answer 429
    return None


_request_children = {}  # (family, method, status) -> (counter, histogram): labels() costs more than inc()


def observe_request(family, method, path, status, seconds, error=None):
    children = _request_children.get((family, method, status))
    if children is None:  # few keys: families, methods and statuses are fixed sets
        children = _request_children[family, method, status] = (REQUESTS.labels(family, method, str(status)),
                                                                  LATENCY.labels(family))
    children[0].inc()
    children[1].observe(seconds)
    reason = auth_failure_reason(method, path, status, error)
    if reason is not None:
        AUTH_FAILURES.labels(reason).inc()
        if reason == "bad_password":
            LOGIN_FAILURES.inc()
        elif reason == "locked_out":
            LOGIN_LOCKOUTS.inc()


def record_event(name, fields):
    """Event listener (events.listen)."""
    if name == "audit":
        AUDIT_EVENTS.labels(fields["action"]).inc()
    elif name == "registry.build":
        REGISTRY_BUILDS.labels(fields["kind"]).observe(fields["seconds"])
    elif name == "key.used":
        KEY_USES.labels(fields["owner"], fields["form"]).inc()


def check_scraper(config, remote_addr, authorization, proxied=False):
    """Let a scrape through, or raise: Unauthenticated for a wrong token, Forbidden for an
    address outside metrics_allow that brought no token. ``proxied``: the request came through
    the TLS front; without trusted_proxy its address is the front's own (127.0.0.1), not the
    client's, so only the token opens the page."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        expected = config.metrics_token_sha256
        given = hashlib.sha256(token.strip().encode()).hexdigest()
        if expected and hmac.compare_digest(given, expected):
            return
        raise Unauthenticated(METRICS_TOKEN_REFUSED)
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        address = None
    if proxied and not config.trusted_proxy:
        address = None
    if address is not None and any(address in ipaddress.ip_network(n) for n in config.metrics_allow):
        return
    raise Forbidden("metrics are served only to the networks in the metrics_allow setting, "
                    "or with the metrics token")


def multiprocess_dir():
    """The shared directory of multi-process mode, or None when this process reports alone."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and not values.ValueClass._multiprocess:
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported; "
                          "set it before the server starts")
    return path


_stored_walks = {}  # blob directory -> (monotonic time, {area: bytes})
_stored_walks_lock = threading.Lock()


def _stored_bytes(root):
    """Bytes per top-level area of the blob store (tarballs, docs, registry, mirror), walked at
    most every STORED_BYTES_MAX_AGE seconds."""
    with _stored_walks_lock:
        taken, sizes = _stored_walks.get(root, (float("-inf"), {}))
        if time.monotonic() - taken < STORED_BYTES_MAX_AGE:
            return sizes
        sizes = {}
        for dirpath, _dirnames, filenames in os.walk(root):
            area = os.path.relpath(dirpath, root).split(os.sep)[0]
            for name in filenames:
                try:
                    sizes[area] = sizes.get(area, 0) + os.stat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:  # replaced or deleted while walking
                    pass
        sizes.pop(".", None)  # nothing is stored at the top level
        _stored_walks[root] = (time.monotonic(), sizes)
        return sizes


class StateCollector:
    """Gauges read at scrape time from the disk and the database."""

    def __init__(self, rt):
        self.rt = rt

    def collect(self):
        config = self.rt.config
        space = disk.usage(config)
        yield GaugeMetricFamily("hexvault_disk_free_bytes", "Free bytes on the data directory's file system.",
                                value=space.free)
        yield GaugeMetricFamily("hexvault_disk_size_bytes", "Size of the data directory's file system.",
                                value=space.total)
        yield GaugeMetricFamily("hexvault_disk_reserve_bytes", "Free bytes the disk guard keeps: below this, "
                                "bulk writes are refused (min_free_bytes; 0: guard off).", value=space.reserve)
        stored = GaugeMetricFamily("hexvault_stored_bytes", "Bytes in the blob store by area, at most "
                                   f"{STORED_BYTES_MAX_AGE:.0f} s old; area database is the SQLite file.",
                                   labels=["area"])
        for area, size in sorted(_stored_bytes(config.blob_path).items()):
            stored.add_metric([area], size)
        stored.add_metric(["database"], _database_bytes(config))
        yield stored
        yield GaugeMetricFamily("hexvault_mirror_packages", "Packages in the hex.pm mirror.",
                                value=sum(1 for _ in self.rt.store.list("mirror/hexpm/packages")))
        yield GaugeMetricFamily("hexvault_packages", "Packages in all organizations.", value=Package.select().count())
        yield GaugeMetricFamily("hexvault_releases", "Releases in all organizations.", value=Release.select().count())
        yield GaugeMetricFamily("hexvault_registry_pending_builds", "Registry builds waiting to be written.",
                                value=PendingBuild.select().count())


def _database_bytes(config):
    """The database file and its write-ahead log, which SQLite deletes when the last connection
    closes (in this process or another): gone between a listing and a stat is not an error."""
    total = 0
    for path in (config.database_path, config.database_path.with_name(config.database_path.name + "-wal")):
        try:
            total += os.stat(path).st_size
        except FileNotFoundError:
            pass
    return total


class _Scrape:
    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


def exposition(rt, accept):
    """(body, content type) of /metrics in the format the scraper's Accept header asks for
    (Prometheus text, or OpenMetrics): this process's counters and histograms (every process's,
    in multi-process mode) and the gauges of what ``rt`` stores."""
    shared = multiprocess_dir()
    counters = MultiProcessCollector(None, path=shared) if shared else _registry
    encode, content_type = choose_encoder(accept or "")
    return encode(_Scrape(counters, StateCollector(rt))), content_type
