"""Liveness and readiness of this node, for load balancers, systemd and monitoring.

``/healthz`` says the process answers. ``/readyz`` runs the checks below, each "ok",
"degraded" or "fail", with a short message naming no organization, package or path:

- database: a read of the schema version answers.
- storage: a file can be created and written in the blob directory.
- disk: free space on the data directory's disk is above the disk guard's reserve. Below it the
  node refuses writes (507) but serves every read, so it stays in the pool: "degraded".
- registry: no registry build has been pending for longer than ``pending_grace`` (by default
  50 s: the sweep of pending builds finishes what a process that died between commit and
  rebuild left within that). One pending longer though its package builds means clients read a
  stale registry: "fail" until `hexvault registry rebuild` writes it. Packages the registry cannot build at all (registry_builder.failing_packages) stay pending
  by design, and only they are stale: "degraded" (`hexvault check --repair` quarantines them).

The node is ready (HTTP 200) unless a check fails (HTTP 503); the overall status is the worst one.
"""

import dataclasses
import logging
import tempfile
import threading
import time

from appliance import registry_builder
from appliance.db import database
from appliance.models import Meta, Organization, PendingBuild
from appliance.ops import disk

PENDING_GRACE = 15.0  # seconds; a publish's rebuild takes milliseconds, a full rebuild of 10,000 packages ~10 s
# How long another node may take to hold the pending-build sweep after the machine running it
# went silent: PostgreSQL ends that session after about 25 s (dbbackends.LOCK_SESSION_SERVER).
SWEEP_TAKEOVER_SECONDS = 30.0


def pending_grace(config):
    """How long a build may stay pending before readiness fails: long enough for the sweep of
    pending builds (two looks, after a takeover) to finish what a dead process left, since the
    rows live in the database every node reports on, and all of them would fail together."""
    return max(PENDING_GRACE, 2 * config.pending_build_sweep + SWEEP_TAKEOVER_SECONDS)
STATUSES = ("ok", "degraded", "fail")
log = logging.getLogger("hexvault")


@dataclasses.dataclass(frozen=True)
class Check:
    status: str
    message: str = ""


class PendingWatch:
    """When this process first saw each PendingBuild row (the rows carry no time of their own);
    one per app (routes/ops.py keeps it). A row is stale once it has been seen pending for
    ``grace`` seconds, so a build left by a crash is reported by the first check at least that
    long after one that saw it."""

    def __init__(self, grace=PENDING_GRACE, clock=time.monotonic):
        self.grace = grace
        self._clock = clock
        self._first_seen = {}
        self._lock = threading.Lock()

    def stale(self, row_ids):
        now = self._clock()
        with self._lock:
            self._first_seen = {i: self._first_seen.get(i, now) for i in row_ids}
            return {i for i, seen in self._first_seen.items() if now - seen >= self.grace}


def _database(rt):
    database.connect(reuse_if_open=True)
    Meta.get(Meta.key == "schema_version")
    return Check("ok")


def _storage(rt):
    with tempfile.TemporaryFile(dir=rt.config.blob_path) as probe:
        probe.write(b"hexvault readiness probe\n")
        probe.flush()
    return Check("ok")


def _disk(rt):
    if disk.usage(rt.config).low:
        return Check("degraded", "free disk space is below the reserve (min_free_bytes): writes are refused")
    return Check("ok")


def _registry(rt, watch):
    rows = list(PendingBuild.select(PendingBuild.id, PendingBuild.organization, PendingBuild.package_name).tuples())
    stale = watch.stale(row_id for row_id, _org, _name in rows)
    by_org = {}
    for row_id, org_id, name in rows:
        if row_id in stale:
            by_org.setdefault(org_id, set()).add(name)
    unbuildable = stuck = 0
    for org in Organization.select().where(Organization.id.in_(list(by_org))):
        failing = registry_builder.failing_packages(rt, org)
        unbuildable += len(by_org[org.id] & failing.keys())
        stuck += len(by_org[org.id] - failing.keys())
    if stuck:
        return Check("fail", f"registry files of {stuck} package(s) waiting to be written for more than "
                             f"{watch.grace:.0f} s, though they are swept every few seconds; see the log, "
                             "then run `hexvault registry rebuild`")
    if unbuildable:
        return Check("degraded", f"{unbuildable} package(s) cannot be built into the registry; see `hexvault check`")
    return Check("ok")


def readiness(rt, watch):
    """({"status": worst, "checks": {name: {"status", "message"?}}}, whether the node is ready);
    ``watch`` is the app's PendingWatch."""
    checks = {}
    for name, run in (("database", _database), ("storage", _storage), ("disk", _disk),
                      ("registry", lambda rt: _registry(rt, watch))):
        try:
            checks[name] = run(rt)
        except Exception as exc:  # the check's finding; details go to the log, not to the caller
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = Check("fail", f"{name} check failed; see the server log")
    worst = max((c.status for c in checks.values()), key=STATUSES.index)
    body = {"status": worst, "checks": {name: {k: v for k, v in dataclasses.asdict(c).items() if v}
                                        for name, c in checks.items()}}
    return body, worst != "fail"
