"""The drop folder: package tarballs copied into ``<data>/import/<org>/`` are published into that
organization exactly as the publish API would, then moved to ``done/`` or to ``failed/`` with a
``.reason`` file beside them.

Half-copied files are never taken: names ending in ``.part`` (or starting with ``.``) are
ignored until renamed, and a file must keep the same size and mtime across two looks
``settle_seconds`` apart. Files that arrived while the server was down are found by the scan at
start. ``import_file`` is the unit of work; ``DropFolderWatcher`` is a thin watchdog shell that
calls it.
"""

import logging
import os
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from appliance import audit, mirror, orgs, packages
from appliance.db import database
from appliance.errors import HexvaultError

log = logging.getLogger("hexvault.import")
IGNORED_SUFFIXES = (".part", ".tmp", ".reason")
RESERVED_DIRS = ("done", "failed")
# hexpm/ is the air-gapped mirror's folder (appliance.mirror), not an organization.
MIRROR_DIR = "hexpm"


def _candidate(path):
    name = path.name
    return path.is_file() and not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def _move(path, folder, reason=None):
    target_dir = path.parent / folder
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    if target.exists():  # never overwrite an earlier import's record
        target = target_dir / f"{path.stem}-{time.time_ns()}{path.suffix}"
    if reason is not None:
        reason_path = target.with_name(target.name + ".reason")
        reason_path.write_text(reason.rstrip() + "\n")
    os.replace(path, target)
    return target


def import_file(rt, org_name, path):
    """Publish one dropped file; returns ("done" | "failed", message)."""
    path = Path(path)
    actor = audit.AuditContext(via="import", key_name=f"drop folder {org_name}/{path.name}")
    database.connect(reuse_if_open=True)  # the watcher thread keeps its own connection
    try:
        org = orgs.get(org_name)
        release, _created = packages.publish(rt, org, path.read_bytes(), replace=False, actor=actor)
    except HexvaultError as exc:
        details = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
        message = exc.message + (f" ({details})" if details else "")
        _move(path, "failed", message)
        log.warning("import of %s/%s failed: %s", org_name, path.name, message)
        return "failed", message
    except OSError as exc:
        return "failed", f"could not read {path.name}: {exc}"
    _move(path, "done")
    message = f"published {release.package.name} {release.version}"
    log.info("import of %s/%s: %s", org_name, path.name, message)
    return "done", message


def _settled(path, settle_seconds):
    try:
        first = path.stat()
        time.sleep(settle_seconds)
        second = path.stat()
    except FileNotFoundError:
        return False
    return (first.st_size, first.st_mtime_ns) == (second.st_size, second.st_mtime_ns) and second.st_size > 0


def scan(rt, settle_seconds=1.0):
    """Import every settled file waiting in any organization folder; returns the results."""
    root = rt.config.import_path
    results = []
    if not root.is_dir():
        return results
    for org_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(org_dir.iterdir()):
            if _candidate(path) and _settled(path, settle_seconds):
                if org_dir.name == MIRROR_DIR:
                    results.append((path.name, *import_bundle_file(rt, path)))
                else:
                    results.append((path.name, *import_file(rt, org_dir.name, path)))
    return results


def import_bundle_file(rt, path):
    """Import a hex.pm mirror bundle dropped into import/hexpm/."""
    path = Path(path)
    database.connect(reuse_if_open=True)
    try:
        stored, tarballs = mirror.import_bundle(rt, path.read_bytes(),
                                                actor=audit.AuditContext(via="import", key_name=f"bundle {path.name}"))
    except HexvaultError as exc:
        message = exc.message + "".join(f" ({k}: {v})" for k, v in exc.errors.items())
        _move(path, "failed", message)
        return "failed", message
    _move(path, "done")
    return "done", f"mirror: {stored} package records, {tarballs} tarballs"


class _Handler(FileSystemEventHandler):
    def __init__(self, wake):
        self.wake = wake

    def on_any_event(self, event):
        self.wake.set()


class DropFolderWatcher:
    """Watches the import folder; any change wakes one worker thread that runs ``scan``. A slow
    periodic scan also runs, in case a file system drops an event."""

    def __init__(self, rt, settle_seconds=1.0, poll_seconds=30.0):
        self.rt = rt
        self.settle_seconds = settle_seconds
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer = None
        self._thread = None

    def start(self):
        root = self.rt.config.import_path
        root.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(_Handler(self._wake), str(root), recursive=True)
        self._observer.start()
        self._thread = threading.Thread(target=self._run, name="hexvault-import", daemon=True)
        self._thread.start()
        self._wake.set()  # files that arrived while the server was down
        return self

    def _run(self):
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                while scan(self.rt, self.settle_seconds):
                    pass  # keep going while files keep landing
            except Exception:  # the watcher must outlive any one bad file
                log.exception("drop folder scan failed")

    def stop(self):
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=10)
