"""CSRF protection for every unsafe request to the admin UI: a per-session token that each form
carries in a hidden field. No view is exempt."""

import hmac
import secrets

from flask import abort, request, session

FIELD = "csrf_token"


def token():
    if FIELD not in session:
        session[FIELD] = secrets.token_urlsafe(32)
    return session[FIELD]


def check():
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.form.get(FIELD) or request.headers.get("X-CSRF-Token") or ""
    expected = session.get(FIELD) or ""
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="CSRF token missing or invalid. Reload the page and try again.")
