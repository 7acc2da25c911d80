"""Hexvault: a self-hosted private Hex package registry.

``create_app(config)`` is the composition root: it opens the runtime (database, blob store,
keys) and registers the repository, API and admin blueprints. Nothing runs at import time.
"""

import re

from appliance.version import __version__  # noqa: F401 - the package's version, as usual


class MergeSlashes:
    """Collapse '//' in request paths in place. Clients join ``base + "/" + path``, so a base URL
    with a trailing slash yields '//'; Werkzeug would answer that with a 308 to a URL built from
    the Host header, and Hex would re-send a whole upload (hex-protocol.md §8.13)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = re.sub("/{2,}", "/", path)
        return self.app(environ, start_response)


class OneGenerationPerRequest:
    """Each request reads the database's change counter once (db.request_scope): on PostgreSQL
    that is a query, which the memoized lookups of one request would otherwise repeat."""

    def __init__(self, app):
        from appliance.db import request_scope

        self.app = app
        self._scope = request_scope

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":  # liveness asks nothing of the database
            return self.app(environ, start_response)
        with self._scope():
            return self.app(environ, start_response)


def create_app(config=None, runtime=None):
    from flask import Flask, redirect, request, url_for

    from appliance import db, events, sessions
    from appliance.config import load_config
    from appliance.db import database
    from appliance.ops import edge, logs, metrics
    from appliance.routes import api, mirror, oauth, ops, repository
    from appliance.routes.fastpath import RepositoryFastPath
    from appliance.routes.responses import register_error_handlers
    from appliance.runtime import open_runtime
    import webui

    config = config or load_config()
    runtime = runtime or open_runtime(config)
    logs.configure(config)
    # Process-wide, like the loggers and counters they feed; adding them again is a no-op.
    events.listen(logs.log_audit_event)
    events.listen(metrics.record_event)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=runtime.app_secret,
        # Body size is checked per route (tarballs) and by waitress; Flask's own cap would answer
        # before the view can name the limit.
        MAX_CONTENT_LENGTH=None,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        SESSION_COOKIE_NAME="hexvault_session",
        # Flask checks the signed cookie's age on every request, and the session it names must
        # still exist on the server (appliance/sessions.py), which expires it at the same age.
        PERMANENT_SESSION_LIFETIME=sessions.LIFETIME,
    )
    app.extensions["hexvault"] = runtime
    app.wsgi_app = MergeSlashes(edge.RequestObserver(RepositoryFastPath(app.wsgi_app, runtime),
                                                     access_log=config.access_log))
    if db.backend_name() == "postgresql":  # SQLite's counter is a memory read: nothing to save
        app.wsgi_app = OneGenerationPerRequest(app.wsgi_app)

    @app.before_request
    def _connect():
        # One SQLite connection per waitress worker thread, opened on first use and kept:
        # reconnecting per request would re-run the pragmas on every GET. A database server that
        # is away fails the request's own queries (503); /healthz and /readyz still answer.
        # Liveness asks nothing of the database, not even a connection (a frozen server would
        # hold the thread until connect_timeout).
        if request.path == "/healthz":
            return
        try:
            database.connect(reuse_if_open=True)
        except Exception as exc:
            if db.unavailable(exc) is None:
                raise

    register_error_handlers(app)
    app.register_blueprint(repository.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(mirror.bp)
    app.register_blueprint(ops.bp)

    webui.init_app(app)

    @app.get("/")
    def index():
        return redirect(url_for("webui.index"))

    return app
