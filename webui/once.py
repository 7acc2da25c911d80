"""Secrets shown once after a redirect (post/redirect/get): the POST that made a secret puts it,
sealed (appliance/sealed.py), in the session and redirects; the page it redirects to takes it out.
Reloading that page finds nothing, and never repeats the POST."""

from flask import session

from appliance import sealed
from appliance.routes.keyauth import runtime

SESSION_KEY = "shown_once"


def put(kind, object_id, secret, **about):
    session[SESSION_KEY] = dict(kind=kind, id=object_id, sealed=sealed.seal(runtime().app_secret, secret), **about)


def take(kind, object_id):
    """(secret, about) put for this object, once; (None, {}) after that or for another object."""
    pending = session.get(SESSION_KEY) or {}
    if pending.get("kind") != kind or pending.get("id") != object_id:
        return None, {}
    session.pop(SESSION_KEY)
    secret = sealed.unseal(runtime().app_secret, pending.get("sealed"))
    return secret, (pending if secret else {})
