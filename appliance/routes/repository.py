"""The Hex repository of each organization, at /repos/ORG/ (hexpm/specifications endpoints.md).

Files are served as stored: registry files are gzip by format, so no Content-Encoding is ever
sent (mix would gunzip twice). Every 200 carries a strong ETag (rebar3 refuses a tarball
without one) and a matching If-None-Match gets 304; an empty If-None-Match, which rebar3 3.19
sends on a first download, counts as absent.
"""

from flask import Blueprint, Response, request
from werkzeug.wsgi import wrap_file

from appliance import orgs, packages, permissions, registry_builder
from appliance.errors import Forbidden, NotFound
from appliance.models import SigningKey
from appliance.routes.keyauth import require_principal, runtime
from storage import BlobNotFound

bp = Blueprint("repository", __name__)

REGISTRY_CACHE = "private, max-age=60"
TARBALL_CACHE = "private, max-age=86400"


def _authorized_org(org_name):
    """The organization if the caller may read its repository. A missing organization and a
    forbidden one get the same 403, so names of organizations don't leak."""
    principal = require_principal()
    try:
        org = orgs.get(org_name)
    except NotFound:
        raise Forbidden("key not authorized for this repository") from None
    if not permissions.can(principal, permissions.READ_REPOSITORY, org, orgs.role_of):
        raise Forbidden("key not authorized for this repository")
    return org


def _not_modified(etag):
    inm = (request.headers.get("If-None-Match") or "").strip()
    if not inm:
        return False
    return inm == "*" or etag in [tag.strip() for tag in inm.split(",")]


def serve_blob(blob, cache_control):
    headers = {"ETag": blob.etag, "Cache-Control": cache_control}
    if _not_modified(blob.etag):
        return Response(status=304, headers=headers)
    try:
        fh = blob.open()
    except BlobNotFound:
        raise NotFound() from None
    response = Response(wrap_file(request.environ, fh), headers=headers,
                        content_type="application/octet-stream", direct_passthrough=True)
    response.content_length = blob.size
    return response


def _registry_file(org, key):
    store = runtime().store
    try:
        info = store.info(key)
    except BlobNotFound:
        if key not in (registry_builder.names_key(org.name), registry_builder.versions_key(org.name)):
            raise NotFound() from None
        # A new organization has no index yet; an empty signed one is the right answer.
        registry_builder.ensure_index(runtime(), org)
        info = store.info(key)
    return serve_blob(packages.Blob(info.etag, info.size, lambda: store.open(key)), REGISTRY_CACHE)


@bp.get("/repos/<org_name>/public_key")
def public_key(org_name):
    """The registry's public key (PEM). Public data, served without a key, as hex.pm does."""
    try:
        orgs.get(org_name)
    except NotFound:
        raise Forbidden("key not authorized for this repository") from None
    pem = SigningKey.current().public_pem
    return Response(pem, content_type="application/x-pem-file",
                    headers={"Cache-Control": "public, max-age=300"})


@bp.get("/repos/<org_name>/names")
def names(org_name):
    org = _authorized_org(org_name)
    return _registry_file(org, registry_builder.names_key(org.name))


@bp.get("/repos/<org_name>/versions")
def versions(org_name):
    org = _authorized_org(org_name)
    return _registry_file(org, registry_builder.versions_key(org.name))


@bp.get("/repos/<org_name>/packages/<name>")
def package(org_name, name):
    org = _authorized_org(org_name)
    if not packages.PACKAGE_NAME_RE.match(name):
        raise NotFound()
    return _registry_file(org, registry_builder.package_key(org.name, name))


@bp.get("/repos/<org_name>/tarballs/<filename>")
def tarball(org_name, filename):
    org = _authorized_org(org_name)
    return serve_blob(packages.tarball_blob(runtime(), org, filename), TARBALL_CACHE)


@bp.get("/repos/<org_name>/docs/<filename>")
def docs(org_name, filename):
    org = _authorized_org(org_name)
    return serve_blob(packages.docs_blob(runtime(), org, filename), TARBALL_CACHE)
