"""Domain events: what just happened, told to whoever listens (metrics, the log), never stored.

``emit(name, **fields)`` tells the listeners at once. ``emit_after_commit`` (``audit.record``
uses it) holds the event until the outermost ``db.write_tx`` commits and drops it if the
transaction rolls back, so no listener counts or logs a change that did not happen.

Listeners are process-wide, like the loggers and metrics they feed: ``listen`` adds one (adding
the same function twice keeps one), ``unlisten`` removes it. A listener runs in the emitting
thread, must be quick, and is never allowed to fail the domain operation: its exception is logged.
This module imports nothing of Hexvault's, so any module may emit.
"""

import logging
import threading

log = logging.getLogger("hexvault")

_listeners = {}  # function -> None; a dict keeps insertion order and makes adding idempotent
_held = threading.local()


def listen(listener):
    """Call ``listener(name, fields)`` for every event from now on."""
    _listeners[listener] = None


def unlisten(listener):
    _listeners.pop(listener, None)


def emit(name, **fields):
    for listener in list(_listeners):
        try:
            listener(name, fields)
        except Exception:
            log.exception("event listener %s failed on %s", getattr(listener, "__name__", listener), name)


def _queue():
    if not hasattr(_held, "events"):
        _held.events = []
    return _held.events


def emit_after_commit(name, **fields):
    """Emit once the transaction this thread is in commits; at once outside a transaction."""
    if getattr(_held, "depth", 0) == 0:
        emit(name, **fields)
    else:
        _queue().append((name, fields))


def transaction_started():
    """Called by db.write_tx on entry; returns a mark for ``transaction_failed``."""
    _held.depth = getattr(_held, "depth", 0) + 1
    return len(_queue())


def transaction_failed(mark):
    """Drop the events held since ``mark`` (the transaction, or savepoint, rolled back)."""
    _held.depth -= 1
    del _queue()[mark:]


def transaction_committed():
    """Emit the held events once the outermost transaction has committed."""
    _held.depth -= 1
    if _held.depth == 0:
        held, _held.events = _queue(), []
        for name, fields in held:
            emit(name, **fields)
