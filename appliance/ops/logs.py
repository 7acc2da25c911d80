"""Hexvault's log output: text for people or one JSON object per line for log shippers.

Three kinds of line besides ordinary messages, each with its fields in ``extra={"fields": ...}``
so the JSON form carries them as keys:

- ``hexvault.access``: one per request when ``access_log`` is on (``edge.RequestObserver``):
  client address, method, path, status, bytes, milliseconds, user agent. Never a header value
  other than the user agent, never the query string: credentials travel in the Authorization
  header and, with some clients, in query strings.
- ``hexvault.audit``: every audit entry, once its transaction has committed (an ``audit`` event).
- everything else (``hexvault``, ``waitress``...): level, logger, message, and the traceback if any.
  Not peewee's query log, even at DEBUG: its parameters include password hashes and key digests.
"""

import datetime
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

access_log = logging.getLogger("hexvault.access")
audit_log = logging.getLogger("hexvault.audit")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601), level, logger, message,
    the record's fields, and ``exception`` with the traceback."""

    def format(self, record):
        line = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
                    .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(config):
    """Send log records to stderr in the configured format and level.

    Like logging.basicConfig, this leaves logging alone when something else already set it up
    (a test runner, an application embedding Hexvault); unlike it, a second call (another app
    in the same process) reconfigures the handler the first one added."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "hexvault", False)), None)
    if handler is None:
        if root.handlers:
            return
        handler = logging.StreamHandler()
        handler.hexvault = True
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.setLevel(config.log_level.upper())
    # peewee logs every query with its parameters at DEBUG: password hashes, key digests.
    logging.getLogger("peewee").setLevel(max(root.level, logging.INFO))


def log_request(remote, method, path, status, size, milliseconds, user_agent):
    access_log.info("%s %s %s %s %.1fms", remote, method, path, status, milliseconds, extra={"fields": {
        "remote": remote, "method": method, "path": path, "status": status, "bytes": size,
        "ms": round(milliseconds, 1), "user_agent": user_agent}})


def log_audit_event(name, fields):
    """Event listener: one line per audit entry (events.listen)."""
    if name != "audit":
        return
    where = f" in {fields['organization']}" if fields.get("organization") else ""
    what = f" {fields['target']}" if fields.get("target") else ""
    audit_log.info("%s by %s%s%s", fields["action"], fields["actor"], what, where, extra={"fields": {
        "action": fields["action"], "actor": fields["actor"], "organization": fields.get("organization"),
        "target": fields.get("target"), "details": fields.get("details") or {}, "remote": fields.get("ip")}})
