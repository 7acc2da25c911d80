"""What `hexvault serve` starts besides the WSGI app: crash recovery, then background work.

``create_app`` never starts threads; only ``serve`` calls ``start``, so tests and tools can build
apps freely.
"""

import logging
import os
import signal
import sys
import threading

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

from appliance import importer, keyuse, registry_builder
from appliance.db import database
from appliance.models import Organization
from appliance.ops import delivery
from appliance.protocol.names import shown

log = logging.getLogger("hexvault")


class Background:
    def __init__(self, stoppers=()):
        self._stoppers = list(stoppers)

    def stop(self):
        for stop in self._stoppers:
            stop()


def prepare_metrics(config, workers):
    """Run before the app is built and workers start: with several worker processes, point
    prometheus-client's multi-process mode at DATA/metrics (emptied of an earlier run's files),
    so a scrape of any worker reports them all (ops/metrics.py). Returns that directory, or None
    for one process. A PROMETHEUS_MULTIPROC_DIR set by the operator is used as it is."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if workers <= 1:
        return None
    path = config.data_path / "metrics"
    path.mkdir(mode=0o750, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return str(path)


def recover(rt):
    """Finish what a crash interrupted: temp files from half-written blobs, pending builds."""
    removed = rt.store.remove_temp_files()
    if removed:
        log.info("removed %d temporary files left by an interrupted write", removed)
    with database.connection_context():
        repaired, failed = registry_builder.repair_pending(rt)
    if repaired:
        log.info("rebuilt registries interrupted by a crash: %s", ", ".join(repaired))
    for org_name, problems in failed.items():
        # Serve anyway: every other package and organization is fine, and `check --repair` fixes these.
        log.error("registry %s is degraded: %d package(s) cannot be built (%s); run `hexvault check --repair`",
                  org_name, len(problems), ", ".join(shown(name) for name in sorted(problems)))


def warm(rt):
    """Encode every organization's index entries once, before the first publish needs them."""
    with database.connection_context():
        for org in Organization.select():
            try:
                registry_builder.warm_index(rt, org)
            except Exception as exc:  # a cold cache is only slower; never a reason not to start
                log.error("registry %s: cannot warm the index cache: %s", org.name, exc)


def stop_on_sigterm():
    """systemd stops the service with SIGTERM, which by default ends Python without running any
    ``finally``; as SystemExit it ends waitress's loop, and `serve` then stops the background work
    (flushing key uses). Only the main thread may set a handler."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))


def start(rt):
    stop_on_sigterm()
    recover(rt)
    warm(rt)
    watcher = importer.DropFolderWatcher(rt).start()
    webhooks = delivery.DeliveryWorker(rt).start()
    flusher = keyuse.Flusher(rt.key_uses).start()
    return Background([watcher.stop, webhooks.stop, flusher.stop])


class _KeepAliveTask(WSGITask):
    """waitress ends the connection after any HTTP/1.1 response without a Content-Length, 304s
    included, though a 304 never has a body and needs no length to be framed (RFC 9112 §6.3).
    Clients revalidate registry files with conditional GETs, so keep those connections open."""

    _bodiless = False

    def build_response_header(self):
        self._bodiless = (not self.has_body and self.version == "1.1" and not self.close_on_finish
                          and self.request.headers.get("CONNECTION", "").lower() != "close")
        try:
            return super().build_response_header()
        finally:
            self._bodiless = False

    def set_close_on_finish(self):
        if not self._bodiless:
            super().set_close_on_finish()


class _KeepAliveChannel(HTTPChannel):
    task_class = _KeepAliveTask


def waitress_options(config):
    """The waitress settings a config implies. Behind a trusted proxy, waitress itself replaces
    REMOTE_ADDR with the address the proxy reports (the last X-Forwarded-For hop, which the client
    cannot forge); otherwise it strips forwarding headers, and REMOTE_ADDR is the peer."""
    options = dict(threads=config.threads, max_request_body_size=config.max_tarball_size + 1024 * 1024,
                   ident="hexvault", clear_untrusted_proxy_headers=True)
    if config.trusted_proxy:
        options.update(trusted_proxy="*", trusted_proxy_headers={"x-forwarded-for"}, trusted_proxy_count=1)
    return options


def create_server(app, config=None, **options):
    """waitress.create_server with the keep-alive fix above and ``config``'s options (overridden
    by ``options``); `hexvault serve` and the tests' live servers both use it."""
    server = waitress.create_server(app, **dict(waitress_options(config) if config else {}, **options))
    for listener in [server, *getattr(server, "map", {}).values()]:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = _KeepAliveChannel
    return server
