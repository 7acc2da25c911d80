"""Health checks and metrics: /healthz, /readyz (no authentication, nothing private) and
/metrics (configured networks or the metrics token). The work is in appliance/ops/."""

import json

from flask import Blueprint, Response, current_app, request

from appliance import front
from appliance.ops import health, metrics
from appliance.routes.keyauth import client_ip, runtime

bp = Blueprint("ops", __name__)
WATCH = "hexvault.pending_watch"  # app.extensions key of the app's health.PendingWatch


@bp.record_once
def _watch_pending_builds(state):
    config = state.app.extensions["hexvault"].config
    state.app.extensions.setdefault(WATCH, health.PendingWatch(grace=health.pending_grace(config)))
_NO_STORE = {"Cache-Control": "no-store"}


def _json(body, status=200):
    return Response(json.dumps(body) + "\n", status=status, headers=_NO_STORE, content_type="application/json")


@bp.get("/healthz")
def healthz():
    """The process answers; nothing else is checked (that is /readyz)."""
    return _json({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Whether this node should get traffic: 200 (ok or degraded) or 503, a status per check."""
    body, ready = health.readiness(runtime(), current_app.extensions[WATCH])
    return _json(body, 200 if ready else 503)


@bp.get("/metrics")
def metrics_page():
    """Prometheus text or OpenMetrics, as the scraper asks."""
    rt = runtime()
    metrics.check_scraper(rt.config, client_ip(), request.headers.get("Authorization"),
                          proxied=front.ACCEL_REQUEST_HEADER in request.headers)
    body, content_type = metrics.exposition(rt, request.headers.get("Accept"))
    return Response(body, headers=_NO_STORE, content_type=content_type)
