"""Content negotiation (Erlang term format or JSON) and the one mapping of errors to responses.

Hex clients send ``accept: application/vnd.hex+erlang`` and decode a body only when the
response's content-type contains that string (hex_core hex_api.erl); browsers and scripts get
JSON. Every API error has hexpm's shape ``{status, message, errors}``. Repository paths answer
errors with short plain text, because mix prints those bodies raw (hex-protocol.md §2.3).
"""

import json
import logging

from flask import Response, request
from werkzeug.exceptions import HTTPException

from appliance import db
from appliance.errors import HexvaultError
from appliance.ops.edge import ERROR_KEY
from appliance.protocol import etf

ETF_TYPE = "application/vnd.hex+erlang"
JSON_TYPE = "application/json"
MAX_BODY = 1024 * 1024  # ETF/JSON request bodies are small maps

log = logging.getLogger("hexvault")


def wants_etf():
    return "vnd.hex+erlang" in (request.headers.get("Accept") or "")


def render(value, status=200, headers=None):
    if wants_etf():
        return Response(etf.encode(value), status=status, headers=headers, content_type=ETF_TYPE)
    body = json.dumps(value, default=_json_default, ensure_ascii=False)
    return Response(body, status=status, headers=headers, content_type=JSON_TYPE)


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__}")


def read_body():
    """The request body as a dict, decoded from ETF or JSON according to its content-type."""
    from appliance.errors import Invalid

    if (request.content_length or 0) > MAX_BODY:
        raise Invalid("Bad request", {"body": "too large"})
    data = request.get_data(cache=True)
    if not data:
        return {}
    ctype = request.headers.get("Content-Type") or ""
    try:
        if "vnd.hex+erlang" in ctype:
            value = etf.decode(data)
        else:
            value = json.loads(data)
    except (etf.ETFError, ValueError) as exc:
        raise HexvaultError(f"Bad request: body could not be decoded ({exc})") from None
    except RecursionError:  # json's parser recurses once per level; the ETF decoder has its own limit
        raise HexvaultError("Bad request: body is nested too deeply") from None
    if not isinstance(value, dict):
        raise HexvaultError("Bad request: body must be a map")
    return value


def error_body(status, message, errors=None):
    body = {"status": status, "message": message}
    if errors:
        body["errors"] = errors
    return body


def _is_repository_path():
    return request.path.startswith(("/repos/", "/mirror/", "/docs/"))


def _respond(status, message, errors=None, retry_after=None):
    headers = {}
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        # Harmless for clients (hexpm sends it too). Never send a Bearer www-authenticate with an
        # error= value: hex_core would start a 2FA or token-refresh flow (hex-protocol.md §5.3).
        headers["WWW-Authenticate"] = 'Basic realm="hex"'
    if _is_repository_path():
        return Response(message + "\n", status=status, headers=headers, content_type="text/plain; charset=utf-8")
    return render(error_body(status, message, errors), status=status, headers=headers)


def register_error_handlers(app):
    @app.errorhandler(HexvaultError)
    def handle_hexvault_error(exc):
        request.environ[ERROR_KEY] = exc  # for the request observer's failure counts
        return _respond(exc.status, exc.message, exc.errors, exc.retry_after)

    @app.errorhandler(HTTPException)
    def handle_http_error(exc):
        if exc.code == 413:
            return _respond(422, "Validation error(s)", {"tar": "too big"})
        message = {404: "Page not found", 405: "Method not allowed", 400: "Bad request"}.get(exc.code, exc.name)
        return _respond(exc.code, message)

    @app.errorhandler(Exception)
    def handle_unexpected(exc):
        refusal = db.unavailable(exc)
        if refusal is not None:
            log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
            return handle_hexvault_error(refusal)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _respond(500, "Internal server error")
