"""The admin web UI: server-rendered pages under /admin, private docs under /docs.

Views call the domain services (appliance.accounts, orgs, keys, packages, audit, docs) and never
touch SQL or the file system. Every unsafe request passes the CSRF check.
"""

from flask import Blueprint, render_template
from flask_login import LoginManager

from appliance.errors import HexvaultError
from webui import csrf

bp = Blueprint("webui", __name__, url_prefix="/admin", template_folder="templates",
               static_folder="static", static_url_path="/static")
login_manager = LoginManager()


def init_app(app):
    from webui import access, auth, docs, keys, packages, sso, twofactor, users, views, webhooks  # noqa: F401  (registers the routes on bp)

    login_manager.init_app(app)
    login_manager.login_view = "webui.login"
    login_manager.login_message = "Log in to continue."
    app.register_blueprint(bp)
    app.register_blueprint(docs.bp)
    app.jinja_env.globals["csrf_token"] = csrf.token

    @app.context_processor
    def _sso():
        config = app.extensions["hexvault"].config
        return {"sso_name": config.oidc_display_name if config.oidc_issuer else None}


@bp.before_request
def _csrf():
    csrf.check()


@bp.errorhandler(HexvaultError)
def _domain_error(exc):
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
    return (render_template("webui/error.html", status=exc.status, message=exc.message, errors=exc.errors),
            exc.status, headers)


@bp.errorhandler(400)
@bp.errorhandler(404)
@bp.errorhandler(429)
def _http_error(exc):
    return render_template("webui/error.html", status=exc.code, message=exc.description, errors={}), exc.code


@bp.after_request
def _headers(response):
    # The admin UI is never framed and loads nothing from elsewhere (an offline appliance).
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
