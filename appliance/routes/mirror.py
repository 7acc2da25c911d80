"""The read-only hex.pm mirror at /mirror/hexpm/ (HEX_MIRROR for mix, HEX_CDN for rebar3).

Only what imported bundles brought is served, byte for byte, with the same 304 rules and no
Content-Encoding as the organization repositories (routes/repository.py serve_blob). Its ETags
are those of a static file server (storage.static_etag), because behind the TLS front nginx
serves the open mirror straight from the data directory.
"""

from flask import Blueprint, Response

from appliance import mirror
from appliance.errors import Unauthenticated
from appliance.routes.keyauth import current_principal, runtime
from appliance.routes.repository import REGISTRY_CACHE, TARBALL_CACHE, serve_blob

bp = Blueprint("mirror", __name__)


@bp.get("/mirror/hexpm/public_key")
def public_key():
    """The key the mirrored records verify with (hex.pm's). Public data, like /repos/ORG/public_key."""
    return Response(mirror.public_key_pem(runtime()), content_type="application/x-pem-file",
                    headers={"Cache-Control": "public, max-age=300"})


@bp.get("/mirror/hexpm/installs/hex-1.x.csv")
def hex_installs():
    """mix's update checker asks the hexpm repo for this; an empty 200 means "up to date"
    (hex-protocol.md §2.7), which keeps an offline mix from warning on every run."""
    return Response(b"", content_type="text/csv", headers={"Cache-Control": "public, max-age=3600"})


def find_mirror_file(rt, principal, path):
    """(Blob, Cache-Control) for GET /mirror/hexpm/PATH, or a HexvaultError. ``principal`` is a
    function returning the caller's Principal (or None); it is only asked when a key is required.
    Framework-free, so the fast path (fastpath.py) serves the mirror too."""
    if rt.config.mirror_requires_key and principal() is None:
        raise Unauthenticated("missing authentication information")
    return mirror.blob(rt, path), TARBALL_CACHE if path.startswith("tarballs/") else REGISTRY_CACHE


@bp.get("/mirror/hexpm/<path:path>")
def mirror_file(path):
    """hex.pm's signed records and tarballs as imported; with mirror_requires_key on, only
    callers with a valid key (of any organization) may read them."""
    return serve_blob(*find_mirror_file(runtime(), current_principal, path))
