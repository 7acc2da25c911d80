"""The drop folder: package tarballs copied into ``<data>/import/<org>/`` are published into that
organization exactly as the publish API would, then moved to ``done/`` or to ``failed/`` with a
``.reason`` file beside them. ``<data>/import/hexpm/`` takes hex.pm mirror bundles instead
(appliance.mirror); they are moved the same way.

Half-copied files are never taken: names ending in ``.part`` (or starting with ``.``) are
ignored until renamed, and a file must keep the same size and mtime across two looks
``settle_seconds`` apart (one pause per scan, however many files wait). Files that arrived while
the server was down are found by the scan at start. ``import_file`` and ``import_bundle_file``
are the units of work; ``DropFolderWatcher`` is a thin watchdog shell that calls them.
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
from appliance.errors import Busy, Conflict, HexvaultError, InsufficientStorage, ReleaseExists

log = logging.getLogger("hexvault.import")
IGNORED_SUFFIXES = (".part", ".tmp", ".reason")
RESERVED_DIRS = ("done", "failed")
# hexpm/ is the air-gapped mirror's folder (appliance.mirror), not an organization.
MIRROR_DIR = "hexpm"
WAITING = "waiting"


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


def describe_error(exc):
    details = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
    return exc.message + (f" ({details})" if details else "")


def publish_path(rt, org_name, path, actor):
    """Publish the tarball at ``path`` into ``org_name``; returns a message or raises HexvaultError."""
    org = orgs.get(org_name)
    try:
        release, _created = packages.publish(rt, org, Path(path).read_bytes(), replace=False, actor=actor)
    except ReleaseExists as exc:
        raise Conflict(f"{exc.name} {exc.version} already exists in {org_name}; imports never replace a "
                       "release (publish with --replace, or revert it first)") from None
    return f"published {release.package.name} {release.version}"


def _finish(path, what, work):
    """Run ``work``; move the file to done/ or failed/ (with the reason); ("done"|"failed", message).
    A full disk or a busy database is no fault of the file: it stays where it is ("waiting") and
    is taken again by a later scan."""
    database.connect(reuse_if_open=True)  # the watcher thread keeps its own connection
    try:
        message = work()
    except (InsufficientStorage, Busy) as exc:
        message = describe_error(exc)
        log.warning("import of %s waits: %s", what, message)
        return WAITING, message
    except HexvaultError as exc:
        message = describe_error(exc)
        _move(path, "failed", message)
        log.warning("import of %s failed: %s", what, message)
        return "failed", message
    except OSError as exc:  # vanished or unreadable: leave it where it is
        return "failed", f"could not read {path.name}: {exc}"
    _move(path, "done")
    log.info("import of %s: %s", what, message)
    return "done", message


def import_file(rt, org_name, path):
    """Publish one dropped file; returns ("done" | "failed" | "waiting", message)."""
    path = Path(path)
    actor = audit.AuditContext(via="import", key_name=f"drop folder {org_name}/{path.name}")
    return _finish(path, f"{org_name}/{path.name}", lambda: publish_path(rt, org_name, path, actor))


def import_bundle_file(rt, path):
    """Import one hex.pm mirror bundle dropped into import/hexpm/."""
    path = Path(path)
    actor = audit.AuditContext(via="import", key_name=f"drop folder {MIRROR_DIR}/{path.name}")
    return _finish(path, f"{MIRROR_DIR}/{path.name}", lambda: mirror.import_bundle(rt, path, actor=actor))


def _signature(path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns) if st.st_size > 0 else None


def _waiting(root):
    """(folder name, path) of every candidate file in the organization and mirror folders."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.iterdir()):
            if _candidate(path):
                yield folder.name, path


def scan(rt, settle_seconds=1.0):
    """Import every settled file waiting in the import folders; returns [(file, outcome, message)]."""
    root = rt.config.import_path
    if not root.is_dir():
        return []
    first = {path: _signature(path) for _folder, path in _waiting(root)}
    if not first:
        return []
    time.sleep(settle_seconds)
    results = []
    for folder, path in _waiting(root):
        signature = _signature(path)
        if signature is None or first.get(path) != signature:
            continue  # new, empty or still growing: the next scan looks again
        if folder == MIRROR_DIR:
            results.append((path.name, *import_bundle_file(rt, path)))
        else:
            results.append((path.name, *import_file(rt, folder, path)))
    return results


def _progressed(results):
    return any(outcome != WAITING for _name, outcome, _message in results)


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
        (root / MIRROR_DIR).mkdir(exist_ok=True)
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
                while _progressed(scan(self.rt, self.settle_seconds)) and not self._stop.is_set():
                    pass  # keep going while files keep landing; waiting ones are retried at the next poll
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
