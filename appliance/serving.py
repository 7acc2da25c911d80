"""What `hexvault serve` starts besides the WSGI app: crash recovery, then background work.

``create_app`` never starts threads; only ``serve`` calls ``prepare`` (once, before any worker
process exists: crash recovery and warm caches, inherited by every fork) and ``start`` (in each
worker process), so tests and tools can build apps freely.

Background work that must run in one process only, whatever ``workers`` says and however many
nodes share the database (the drop-folder watcher, the sweep of pending builds), runs under
``singletons.Singleton``.
"""

import logging
import os
import resource
import signal
import sys
import tempfile
import threading

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

from appliance import importer, keyuse, registry_builder
from appliance.db import database
from appliance.models import Organization
from appliance.ops import delivery
from appliance.singletons import PendingBuildSweeper, Singleton
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
    prometheus-client's multi-process mode at a new private directory of this machine, so a
    scrape of any worker reports them all (ops/metrics.py). Local, not under the data directory:
    nodes sharing that directory have workers of their own (and may reuse each other's PIDs).
    Returns the directory (the caller removes it when serving ends), or None for one process.
    A PROMETHEUS_MULTIPROC_DIR set by the operator is used as it is (and kept)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if workers <= 1:
        return None
    # systemd's RuntimeDirectory= when the unit has one; else the (private, with PrivateTmp=) /tmp.
    path = tempfile.mkdtemp(prefix="hexvault-metrics-", dir=os.environ.get("RUNTIME_DIRECTORY"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


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


def prepare(rt):
    """Once per start of `hexvault serve`, before any worker exists (what it sets up, the forks
    inherit)."""
    raise_open_file_limit(rt.config)
    recover(rt)
    warm(rt)


def start(rt):
    """The background work of one worker process. Webhook deliveries run in every worker (each
    delivery is leased in the database), each worker flushes its own key uses, and the
    drop-folder watcher and the pending-build sweep run in one process among all nodes."""
    stop_on_sigterm()
    watcher = Singleton("drop-folder", lambda: importer.DropFolderWatcher(rt).start().stop).start()
    sweeper = Singleton("pending-builds",
                        lambda: PendingBuildSweeper(rt, rt.config.pending_build_sweep).start().stop).start()
    webhooks = delivery.DeliveryWorker(rt).start()
    flusher = keyuse.Flusher(rt.key_uses, rt.grant_uses).start()
    return Background([watcher.stop, sweeper.stop, webhooks.stop, flusher.stop])


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


class _Channel(HTTPChannel):
    """waitress's channel with the keep-alive fix above, making room at the connection limit."""

    task_class = _KeepAliveTask

    def add_channel(self, map=None):
        super().add_channel(map)
        _make_room(self)


# waitress stops accepting (new clients wait in the kernel's backlog) when its own limit is hit;
# it sits this far above connection_limit, for the listeners and the trigger in its map and the
# connections marked to close that its loop has not reached yet, so it only bites when every
# connection is busy with a request.
_WAITRESS_HEADROOM = 16


def _make_room(new):
    """At the connection limit, close the connection idle the longest so the new one is served.

    waitress's own answer to a full house is to stop accepting until channel_timeout passes, so
    ~100 clients that connect and say nothing locked everyone out (issue 14.3). A connection with
    no request in flight and nothing left to send loses nothing but its keep-alive; one that sends
    a request at once, as every real client does, is the most recently active and is not chosen.
    """
    limit = getattr(new.server, "hexvault_connection_limit", None)
    if limit is None or len(new._map) <= limit:
        return
    open_channels = [c for c in new._map.values() if isinstance(c, HTTPChannel) and not c.will_close]
    excess = len(open_channels) - limit
    if excess <= 0:
        return
    idle = sorted((c for c in open_channels if c is not new and not c.requests and not c.total_outbufs_len),
                  key=lambda c: c.last_activity)
    for channel in idle[:excess]:
        channel.will_close = True


def waitress_options(config):
    """The waitress settings a config implies. Behind a trusted proxy, waitress itself replaces
    REMOTE_ADDR with the address the proxy reports (the last X-Forwarded-For hop, which the client
    cannot forge); otherwise it strips forwarding headers, and REMOTE_ADDR is the peer."""
    options = dict(threads=config.threads, max_request_body_size=config.max_tarball_size + 1024 * 1024,
                   ident="hexvault", clear_untrusted_proxy_headers=True,
                   connection_limit=config.connection_limit + _WAITRESS_HEADROOM,
                   channel_timeout=config.channel_timeout,
                   # idle connections are looked for this often; waitress's 30 s would double the timeout
                   cleanup_interval=max(1, config.channel_timeout // 3),
                   # select() cannot watch file descriptors above 1023
                   asyncore_use_poll=True)
    if config.trusted_proxy:
        address = "*" if config.trusted_proxy is True else config.trusted_proxy
        if ":" in config.host and "." in address:
            address = f"::ffff:{address}"  # how an IPv6 (dual-stack) socket names an IPv4 peer
        options.update(trusted_proxy=address, trusted_proxy_headers={"x-forwarded-for"}, trusted_proxy_count=1)
    return options


def create_server(app, config=None, **options):
    """waitress.create_server with the keep-alive fix above and ``config``'s options (overridden
    by ``options``); `hexvault serve` and the tests' live servers both use it."""
    server = waitress.create_server(app, **dict(waitress_options(config) if config else {}, **options))
    for listener in [server, *getattr(server, "map", {}).values()]:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = _Channel
            if config is not None:
                listener.hexvault_connection_limit = config.connection_limit
    return server


def raise_open_file_limit(config):
    """Every connection is a file descriptor: lift the soft limit (often 1024) towards the hard one
    so connection_limit, the database and blob reads all fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = config.connection_limit + _WAITRESS_HEADROOM + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning("open file limit %d is below what connection_limit %d needs (%d); raise LimitNOFILE",
                        target, config.connection_limit, wanted)
