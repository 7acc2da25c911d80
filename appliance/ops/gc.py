"""Garbage collection of stored blobs nothing references (``hexvault gc``).

Garbage is a package tarball (``tarballs/``) whose outer checksum no release names, a docs
tarball (``docs/``) whose checksum no release names, and a hex.pm mirror tarball
(``mirror/hexpm/tarballs/``) that the stored record of its package does not list. Such blobs
are left by publishes that stored their tarball and then failed (the release exists, a refused
drop-folder file, a kill -9 before the commit), by a crash between a revert or replace and its
blob deletion, and by a mirror bundle interrupted between its tarballs and its records.
Registry files are not considered: registry_builder owns them (``hexvault registry rebuild``
removes stale ones).

A publish stores its tarball *before* the transaction that names it (packages.py). Two rules
keep gc from taking such a blob: it considers only blobs older than ``gc_grace_seconds``, and
it re-checks every candidate and deletes it while holding SQLite's write lock, while publish,
once it holds that lock, stores its bytes again if they are gone. Mirror tarballs are decided
under the mirror's registry lock, which a bundle import holds from its first tarball to its
last record.
"""

import dataclasses
import logging
import re
import time

from appliance import audit, mirror
from appliance.db import write_lock_tx, write_tx
from appliance.models import Release
from storage import BlobNotFound

log = logging.getLogger("hexvault.gc")

BATCH = 200  # deletions per hold of the write lock: a publish waits for at most one batch
_TARBALL = re.compile(r"tarballs/[0-9a-f]{2}/([0-9a-f]{64})\.tar")
_DOCS = re.compile(r"docs/[0-9a-f]{2}/([0-9a-f]{64})\.tar\.gz")
_MIRROR_PREFIX = mirror.key_for("tarballs")
_MIRROR_TARBALL = re.compile(re.escape(_MIRROR_PREFIX) + r"/([a-z][a-z0-9_]*)-([0-9A-Za-z.+-]+)\.tar")


@dataclasses.dataclass(frozen=True)
class Orphan:
    key: str
    size: int


@dataclasses.dataclass
class Report:
    """Unreferenced blobs old enough to go (deleted ones, if ``deleted``), and how many younger
    ones the grace period kept."""

    orphans: list = dataclasses.field(default_factory=list)
    young: int = 0
    deleted: bool = False

    @property
    def bytes(self):
        return sum(o.size for o in self.orphans)


def _column_for(key):
    """(Release column, checksum) that would reference a package or docs blob, or None."""
    match = _TARBALL.fullmatch(key)
    if match:
        return Release.outer_checksum, match.group(1)
    match = _DOCS.fullmatch(key)
    if match:
        return Release.docs_checksum, match.group(1)
    return None


def _referenced(key):
    column, checksum = _column_for(key)
    return Release.select().where(column == checksum).exists()


def _stat(rt, key):
    try:
        return rt.store.stat(key)
    except BlobNotFound:  # deleted meanwhile by a revert or another gc
        return None


def _old_orphan(rt, key, cutoff, report):
    """Orphan(key, size) if the blob is older than the cutoff; counts it as young otherwise."""
    stat = _stat(rt, key)
    if stat is None:
        return None
    if stat.modified > cutoff:
        report.young += 1
        return None
    return Orphan(key, stat.size)


def _release_blobs(rt, cutoff, report):
    """Unreferenced package and docs blobs older than the cutoff, found without any lock."""
    outer = {c for (c,) in Release.select(Release.outer_checksum).tuples()}
    docs = {c for (c,) in Release.select(Release.docs_checksum).where(Release.docs_checksum.is_null(False)).tuples()}
    found = []
    for prefix, pattern, names in (("tarballs", _TARBALL, outer), ("docs", _DOCS, docs)):
        for key in rt.store.list(prefix):
            match = pattern.fullmatch(key)
            if match and match.group(1) not in names:
                orphan = _old_orphan(rt, key, cutoff, report)
                if orphan:
                    found.append(orphan)
    return found


def _delete_release_blobs(rt, candidates, cutoff):
    """Delete the candidates that, under the write lock, are still unreferenced and old."""
    deleted = []
    for start in range(0, len(candidates), BATCH):
        with write_lock_tx():
            for orphan in candidates[start:start + BATCH]:
                stat = _stat(rt, orphan.key)
                if stat is None or stat.modified > cutoff or _referenced(orphan.key):
                    continue  # published meanwhile, or put again by a publish waiting for this lock
                rt.store.delete(orphan.key)
                deleted.append(orphan)
    return deleted


def _mirror_blobs(rt, cutoff, report, delete):
    """Unreferenced mirror tarballs, decided (and deleted) under the mirror's lock."""
    found = []
    with rt.registry_lock(f"mirror-{mirror.REPOSITORY}"):
        listed = {}
        for key in rt.store.list(_MIRROR_PREFIX):
            match = _MIRROR_TARBALL.fullmatch(key)
            if not match:
                continue
            package, version = match.groups()
            if package not in listed:
                listed[package] = mirror.listed_versions(rt, package)
            if version in listed[package]:
                continue
            orphan = _old_orphan(rt, key, cutoff, report)
            if orphan:
                if delete:
                    rt.store.delete(key)
                found.append(orphan)
    return found


def collect(rt, *, delete=False, grace_seconds=None, actor=audit.CLI, now=None):
    """Find (and with ``delete``, remove) unreferenced blobs older than the grace period.

    A run with ``delete`` is audited (``storage.gc``: how many blobs, how many bytes) even when
    nothing was found, so the log shows every collection."""
    grace = rt.config.gc_grace_seconds if grace_seconds is None else grace_seconds
    cutoff = (time.time() if now is None else now) - grace
    report = Report(deleted=delete)
    candidates = _release_blobs(rt, cutoff, report)
    report.orphans = _delete_release_blobs(rt, candidates, cutoff) if delete else candidates
    report.orphans += _mirror_blobs(rt, cutoff, report, delete)
    if delete:
        with write_tx():
            audit.record(actor, "storage.gc", target=f"{len(report.orphans)} blobs",
                         blobs=len(report.orphans), bytes=report.bytes, kept_young=report.young or None)
        log.info("gc deleted %d unreferenced blobs, %d bytes", len(report.orphans), report.bytes)
    return report
