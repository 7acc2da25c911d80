"""The Hex repository of each organization, at /repos/ORG/ (hexpm/specifications endpoints.md).

Files are served as stored: registry files are gzip by format, so no Content-Encoding is ever
sent (mix would gunzip twice). Every 200 carries a strong ETag (rebar3 refuses a tarball
without one) and a matching If-None-Match gets 304; an empty If-None-Match, which rebar3 3.19
sends on a first download, counts as absent.

Each repository also answers under /mirror/hexpm/repos/ORG/: mix resolves hex.pm-style
``organization: "acme"`` dependencies to the repo ``hexpm:acme`` at ``<hexpm URL>/repos/acme``,
so with mix's hexpm repo pointed at the mirror, private organization deps keep working unchanged.

``find_file`` is the one decision of what a GET returns; the Flask views here and the WSGI fast
path in fastpath.py (which serves the hot paths without Flask's per-request cost) both call it.
"""

import re

from flask import Blueprint, Response, request
from werkzeug.wsgi import wrap_file

from appliance import clientsetup, front, packages, permissions, registry_builder
from appliance.errors import Forbidden, NotFound, Unauthenticated
from appliance.models import SigningKey
from appliance.routes.keyauth import current_principal, runtime
from storage import BlobNotFound

bp = Blueprint("repository", __name__)

REGISTRY_CACHE = packages.REGISTRY_CACHE
TARBALL_CACHE = packages.TARBALL_CACHE
# Every pattern in this code base is used with fullmatch: ``$`` also matches before a final newline.
PATH_RE = re.compile(r"(names|versions|packages/([^/]+)|tarballs/([^/]+)|docs/([^/]+))")


def authorized_org(rt, principal, org_name):
    """The organization if the caller may read its repository. A missing organization and a
    forbidden one get the same 403, so names of organizations don't leak."""
    if principal is None:
        raise Unauthenticated("missing authentication information")
    try:
        org = rt.lookups.org(org_name)
    except NotFound:
        raise Forbidden("key not authorized for this repository") from None
    if not permissions.can(principal, permissions.READ_REPOSITORY, org, rt.lookups.role_of):
        raise Forbidden("key not authorized for this repository")
    return org


def _registry_blob(rt, org, key):
    try:
        return packages.Blob.opened(rt.store, key)
    except BlobNotFound:
        if key not in (registry_builder.names_key(org.name), registry_builder.versions_key(org.name)):
            raise NotFound() from None
    # A new organization has no index yet; an empty signed one is the right answer.
    registry_builder.ensure_index(rt, org)
    return packages.Blob.opened(rt.store, key)


def find_file(rt, principal, org_name, path):
    """(Blob, Cache-Control) for GET /repos/ORG/PATH, or a HexvaultError."""
    match = PATH_RE.fullmatch(path)
    if not match:
        raise NotFound()
    org = authorized_org(rt, principal, org_name)
    kind = match.group(1).split("/")[0]
    if kind == "names":
        return _registry_blob(rt, org, registry_builder.names_key(org.name)), REGISTRY_CACHE
    if kind == "versions":
        return _registry_blob(rt, org, registry_builder.versions_key(org.name)), REGISTRY_CACHE
    if kind == "packages":
        name = match.group(2)
        if not packages.is_package_name(name):
            raise NotFound()
        return _registry_blob(rt, org, registry_builder.package_key(org.name, name)), REGISTRY_CACHE
    if kind == "tarballs":
        return packages.tarball_blob(rt, org, match.group(3), rt.lookups.release_file), TARBALL_CACHE
    return packages.docs_blob(rt, org, match.group(4)), TARBALL_CACHE


def not_modified(if_none_match, etag):
    inm = (if_none_match or "").strip()
    if not inm:
        return False
    return inm == "*" or etag in [tag.strip() for tag in inm.split(",")]


def accel_redirect(front_header, blob):
    """The X-Accel-Redirect target for ``blob`` when the TLS front asked for one (it sends
    front.ACCEL_REQUEST_HEADER on every proxied request) and the blob is never replaced; else
    None. A client that forges the header only gets an empty body for a file it may read."""
    if front_header != front.ACCEL_REQUEST_VALUE or not blob.immutable_key:
        return None
    return front.ACCEL_LOCATION + blob.immutable_key


def serve_blob(blob, cache_control):
    headers = {"ETag": blob.etag, "Cache-Control": cache_control}
    if not_modified(request.headers.get("If-None-Match"), blob.etag):
        blob.release()
        return Response(status=304, headers=headers)
    target = accel_redirect(request.headers.get(front.ACCEL_REQUEST_HEADER), blob)
    if target:
        blob.release()
        headers["X-Accel-Redirect"] = target
        return Response(b"", headers=headers, content_type="application/octet-stream")
    try:
        fh = blob.open()
    except BlobNotFound:
        raise NotFound() from None
    response = Response(wrap_file(request.environ, fh), headers=headers,
                        content_type="application/octet-stream", direct_passthrough=True)
    response.content_length = blob.size
    return response


@bp.get("/repos/<org_name>/public_key")
@bp.get("/mirror/hexpm/repos/<org_name>/public_key")
def public_key(org_name):
    """The registry's public key (PEM). Public data, served without a key as hex.pm does (the
    README's curl line; mix's --fetch-public-key sends one). Every organization is signed with
    the same key, and it is served for any name, so the answer tells nothing about which
    organizations exist."""
    pem = SigningKey.current().public_pem
    return Response(pem, content_type="application/x-pem-file",
                    headers={"Cache-Control": "public, max-age=300"})


@bp.get("/ca.pem")
def company_ca():
    """The CA of the TLS front's certificate (setting tls_ca_file), for clients to trust after
    comparing its fingerprint with the one the administrator published."""
    ca = clientsetup.company_ca(runtime().config)
    if ca is None:
        raise NotFound()
    return Response(ca.pem, content_type="application/x-pem-file", headers={"Cache-Control": "public, max-age=300"})


@bp.get("/repos/<org_name>/<path:path>")
@bp.get("/mirror/hexpm/repos/<org_name>/<path:path>")
def repository_file(org_name, path):
    """names, versions, packages/NAME, tarballs/NAME-VERSION.tar, docs/NAME-VERSION.tar.gz"""
    blob, cache_control = find_file(runtime(), current_principal(), org_name, path)
    return serve_blob(blob, cache_control)
