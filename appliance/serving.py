"""What `hexvault serve` starts besides the WSGI app: crash recovery, then background work.

``create_app`` never starts threads; only ``serve`` calls ``start``, so tests and tools can build
apps freely.
"""

import logging

from appliance import importer, registry_builder
from appliance.db import database
from appliance.models import Organization

log = logging.getLogger("hexvault")


class Background:
    def __init__(self, stoppers=()):
        self._stoppers = list(stoppers)

    def stop(self):
        for stop in self._stoppers:
            stop()


def recover(rt):
    """Finish what a crash interrupted: temp files from half-written blobs, pending builds."""
    removed = rt.store.remove_temp_files()
    if removed:
        log.info("removed %d temporary files left by an interrupted write", removed)
    with database.connection_context():
        repaired = registry_builder.repair_pending(rt)
    if repaired:
        log.info("rebuilt registries interrupted by a crash: %s", ", ".join(repaired))


def warm(rt):
    """Encode every organization's index entries once, before the first publish needs them."""
    with database.connection_context():
        for org in Organization.select():
            registry_builder.warm_index(rt, org)


def start(rt):
    recover(rt)
    warm(rt)
    watcher = importer.DropFolderWatcher(rt).start()
    return Background([watcher.stop])
