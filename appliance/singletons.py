"""Background work that exactly one process may do among all that share the database: every
worker of this machine and, on PostgreSQL, of every node.

Each duty is a ``Singleton``: every worker tries a named ``db.try_lock`` (an flock beside the
SQLite file; on PostgreSQL a session advisory lock on a connection of its own), the one holding
it does the work, and when that process dies (its lock goes with it) another takes the lock over
within ``Singleton.retry_seconds``. The holder checks its lock's connection every
``check_seconds``: a node cut off from PostgreSQL stops the duty before the server gives the lock
to another node (the lock connection's keepalives end a silent session later than that check).

Duties: the drop-folder watcher, and ``PendingBuildSweeper``, which finishes registry builds a
stopped process left pending (a worker or node killed between its commit and its build) without
waiting for anyone's restart.
"""

import logging
import threading

from appliance import db, registry_builder
from appliance.db import database

log = logging.getLogger("hexvault")


class Singleton:
    """Runs ``start()`` (which returns a stop function) in exactly one process among those that
    share the database: whichever holds the lock ``name``; the others retry."""

    retry_seconds = 2.0
    check_seconds = 2.0

    def __init__(self, name, start):
        self.name = name
        self._start = start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hexvault-{name}-leader", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _acquire(self):
        while not self._stop.is_set():
            try:
                held = db.try_lock(self.name)
            except Exception as exc:  # the database may be briefly away; keep trying
                log.warning("cannot take the %s lock: %s", self.name, exc)
                held = None
            if held is not None:
                return held
            self._stop.wait(self.retry_seconds)
        return None

    def _run(self):
        while not self._stop.is_set():
            held = self._acquire()
            if held is None:
                return
            log.info("this process now runs the %s duty", self.name)
            try:
                stop = self._start()
                try:
                    while not self._stop.wait(self.check_seconds):
                        if not held.alive():
                            log.error("lost the %s lock (its database connection is gone): stopped it here, "
                                      "another process takes it over", self.name)
                            break
                finally:
                    stop()
            except Exception:  # the duty must outlive one failure: give the lock back and try again
                log.exception("the %s duty failed", self.name)
                self._stop.wait(self.retry_seconds)
            finally:
                held.release()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=15)


class PendingBuildSweeper:
    """Every ``seconds``, rebuilds the registries of organizations that have pending builds.

    A publish commits its rows with a PendingBuild row, then builds; a process killed in between
    leaves the row, and start-up repair only runs when that process starts again. On several
    nodes it may never come back, so one process sweeps. ``registry_builder.update`` takes the
    organization's registry lock, so a sweep never runs beside another build: it waits, then finds
    the rows handled. A package that cannot be built stays pending (``hexvault check`` names it)
    and is logged once, not retried at every sweep."""

    def __init__(self, rt, seconds):
        self.rt = rt
        self.seconds = seconds
        self._stop = threading.Event()
        self._failing = set()  # (organization, package) that did not build
        self._seen = {}
        self._thread = threading.Thread(target=self._run, name="hexvault-pending-builds", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.seconds):
            try:
                self.sweep()
            except Exception as exc:  # the database may be briefly away; the next sweep retries
                log.warning("pending build sweep failed: %s", exc)

    def sweep(self):
        """Rebuild organizations with a pending row the previous sweep saw too (a build in flight
        deletes its rows within moments, so it is left alone)."""
        with database.connection_context():
            seen, self._seen = self._seen, registry_builder.pending_rows()
            # A package known not to build is not rebuilt every sweep (that would rewrite its
            # organization's index each time); a publish or `check --repair` deals with it.
            stale = {row_id for row_id, package in self._seen.items()
                     if row_id in seen and package not in self._failing}
            if not stale:
                return
            touched, failed = registry_builder.repair_pending(self.rt, only=stale)
        for org_name, problems in failed.items():
            for name, reason in problems.items():
                self._failing.add((org_name, name))
                log.error("registry %s: package %s stays pending: %s", org_name, name, reason)
        if touched:
            log.info("finished registry builds left pending in %s", ", ".join(sorted(touched)))

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)
