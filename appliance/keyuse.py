"""When and from where each key was last used, recorded off the request path.

A request only notes the use in memory (one dict assignment); ``flush`` writes the newest use of
each key noted since the last flush, all in one transaction. `hexvault serve` flushes every
FLUSH_SECONDS from a background thread and once more when it stops (serving.start), so a GET
never waits on SQLite's write lock, and a thousand GETs with one key cost one UPDATE. Until a
flush, ``overlay`` shows this process's newer uses on key rows it lists.
"""

import logging
import threading

from appliance.db import database, write_tx
from appliance.errors import Busy, DatabaseUnavailable, InsufficientStorage
from appliance.models import Key, utcnow

FLUSH_SECONDS = 10.0
log = logging.getLogger("hexvault")


class KeyUses:
    """The uses of one kind of credential: ``model`` is Key, or OAuthGrant for device logins
    (any model with last_used_at, last_used_ip and last_used_user_agent)."""

    def __init__(self, model=Key):
        self.model = model
        self._pending = {}  # key id -> (when, ip, user agent)
        self._lock = threading.Lock()

    def note(self, key, ip, user_agent):
        use = (utcnow(), ip, (user_agent or "")[:300])
        with self._lock:
            self._pending[key.id] = use

    def overlay(self, keys):
        """Key rows with the uses noted here but not yet flushed applied (not saved)."""
        with self._lock:
            pending = dict(self._pending)
        for key in keys:
            if key.id in pending:
                key.last_used_at, key.last_used_ip, key.last_used_user_agent = pending[key.id]
        return keys

    def flush(self):
        """Write the noted uses; returns how many keys were written. A busy or full database keeps
        them for the next flush, which never loses a use noted in between."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            # Cached lookups never show last-use times (pages read them from the rows), so this
            # write does not drop every process's caches, which it would do every FLUSH_SECONDS.
            with write_tx(announce=False):
                for key_id, (when, ip, user_agent) in batch.items():
                    self.model.update(last_used_at=when, last_used_ip=ip, last_used_user_agent=user_agent)\
                        .where(self.model.id == key_id).execute()
        except (Busy, DatabaseUnavailable, InsufficientStorage) as exc:
            with self._lock:
                for key_id, use in batch.items():
                    if key_id not in self._pending:  # a use noted meanwhile is newer
                        self._pending[key_id] = use
            log.warning("key last-use times not written yet (%s); retrying later", type(exc).__name__)
            return 0
        return len(batch)


class Flusher:
    """The background thread `hexvault serve` runs: flush every ``interval`` seconds, and once more
    on stop."""

    def __init__(self, *key_uses, interval=FLUSH_SECONDS):
        self.key_uses = key_uses
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="hexvault-key-uses", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        with database.connection_context():
            while not self._stop.wait(self.interval):
                self._flush()

    def _flush(self):
        for uses in self.key_uses:
            try:
                uses.flush()
            except Exception:  # the thread must outlive any one failure
                log.exception("writing key last-use times failed")

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with database.connection_context():
            self._flush()
