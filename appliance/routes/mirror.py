"""The read-only hex.pm mirror at /mirror/hexpm/ (HEX_MIRROR for mix, repo_url for rebar3)."""

from flask import Blueprint

from appliance import mirror
from appliance.errors import Unauthenticated
from appliance.routes.keyauth import current_principal, runtime
from appliance.routes.repository import REGISTRY_CACHE, TARBALL_CACHE, serve_blob

bp = Blueprint("mirror", __name__)


@bp.get("/mirror/hexpm/<path:path>")
def mirror_file(path):
    """hex.pm's signed records and tarballs as imported; any valid key may read them when
    mirror_requires_key is on (the default)."""
    rt = runtime()
    if rt.config.mirror_requires_key and current_principal() is None:
        raise Unauthenticated("missing authentication information")
    return serve_blob(mirror.blob(rt, path), TARBALL_CACHE if path.startswith("tarballs/") else REGISTRY_CACHE)
