"""The Hex HTTP API under /api, as mix and rebar3_hex call it (hex-protocol.md §5).

Every package route exists twice: ``/api/PATH`` acts on the default organization and
``/api/repos/REPO/PATH`` on organization REPO (``hexpm`` also meaning the default one, since
mix sends that literal). Views parse, call one service, and render.
"""

from flask import Blueprint, Response, request

from appliance import audit, db, keys, orgs, packages, permissions
from appliance.errors import Forbidden, Invalid, InvalidTarball, NotFound, UnsupportedMediaType
from appliance.models import Package
from appliance.routes import serializers
from appliance.routes.keyauth import client_ip, require_principal, runtime
from appliance.routes.responses import read_body, render

bp = Blueprint("api", __name__, url_prefix="/api")

# The body types a browser may send cross-site without a CORS preflight. Hex clients send ETF,
# JSON or application/octet-stream, so refusing these keeps a page from driving the API with
# credentials the browser has cached (Basic auth for realm "hex").
_BROWSER_SIMPLE_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


@bp.before_request
def refuse_cross_site_writes():
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise Forbidden("cross-site requests are refused")
    if request.mimetype in _BROWSER_SIMPLE_TYPES:
        raise UnsupportedMediaType("unsupported content type: send application/vnd.hex+erlang, application/json "
                                   "or application/octet-stream")


def route(rule, **options):
    """Register a view at /api/RULE (default organization) and /api/repos/<repo>/RULE."""

    def decorator(view):
        bp.add_url_rule(rule, view.__name__, view, defaults={"repo": None}, **options)
        bp.add_url_rule("/repos/<repo>" + rule, view.__name__ + "_in_repo", view, **options)
        return view

    return decorator


def base_url():
    return runtime().config.external_url


def actor(principal):
    return audit.AuditContext(user=principal.user, key_name=principal.key.name if principal.key else None,
                              ip=client_ip(), user_agent=request.headers.get("User-Agent"), via="api")


def org_name_of(repo):
    """The organization an API path names: the default one for none or ``hexpm``."""
    name = repo
    if repo in (None, "hexpm"):
        name = orgs.default_name(runtime().config.default_organization)
        if not name:
            raise NotFound("no default organization is configured")
    # `mix hex.package fetch PKG --organization acme` asks for /repos/hexpm:acme/...
    return name.rpartition(":")[2]


def allowed_org(principal, action, org_name):
    """The organization if the principal may do ``action`` in it. Otherwise the answer is the
    same whether it exists or not, so organization names cannot be probed: 404 for reads (as
    hexpm does for private packages), else 403. Only an appliance administrator, who sees every
    organization anyway, is told that one does not exist."""
    try:
        org = orgs.get(org_name)
    except NotFound:
        user = principal.user
        if user is not None and user.is_admin and user.disabled_at is None and principal.key_allows(action, org_name):
            raise
        org = None
    if org is None or not permissions.can(principal, action, org, orgs.role_of):
        raise NotFound() if action == permissions.API_READ else permissions.refusal(principal)
    return org


def authorize(action, repo):
    """(principal, org) for an allowed call on the organization of an API path."""
    principal = require_principal()
    return principal, allowed_org(principal, action, org_name_of(repo))


def _flag(name, default):
    value = request.args.get(name)
    if value is None:
        return default
    return value.lower() in ("true", "1", "yes")


# -- users ---------------------------------------------------------------------------------------

@bp.get("/users/me")
def users_me():
    principal = require_principal()
    if principal.user is None:
        # An organization key (CI publishing) has no user; mix still needs a user map.
        # Its role is what the key may do: a repository-only key must not look like a publisher.
        org = principal.key.organization
        role = "write" if permissions.can(principal, permissions.API_WRITE, org, orgs.role_of) else "read"
        return render({"username": f"{org.name} (organization key)", "handles": {}, "url": None,
                       "inserted_at": None, "updated_at": None,
                       "organizations": [{"name": org.name, "role": role}], "packages": []})
    # A key shows only what it may see: a repository-only key (or token) names its user and the
    # organizations it reads, not the user's email, other memberships or their packages.
    memberships = [m for m in orgs.memberships_of(principal.user)
                   if principal.key_allows(permissions.API_READ, m.organization.name)
                   or principal.key_allows(permissions.READ_REPOSITORY, m.organization.name)]
    listed = [m.organization_id for m in memberships
              if principal.key_allows(permissions.API_READ, m.organization.name)]
    owned = list(Package.select().where(Package.organization.in_(listed)).order_by(Package.name).limit(1000))
    return render(serializers.user(base_url(), principal.user, memberships, owned,
                                   private=not principal.key_allows(permissions.API_READ, "")))


# -- packages and releases ----------------------------------------------------------------------

@route("/packages", methods=["GET"])
def packages_index(repo):
    principal = require_principal()
    if repo is not None:
        _principal, org = authorize(permissions.API_READ, repo)
        visible = [org]
    else:
        visible = [o for o in orgs.list_all() if permissions.can(principal, permissions.API_READ, o, orgs.role_of)]
    found = packages.search(visible, request.args.get("search"), page=request.args.get("page", 1, type=int))
    return render([serializers.package(base_url(), p.organization, p, packages.releases_of(p)) for p in found])


@route("/packages/<name>", methods=["GET"])
def package_show(repo, name):
    _principal, org = authorize(permissions.API_READ, repo)
    pkg = packages.get_package(org, name)
    return render(serializers.package(base_url(), org, pkg, packages.releases_of(pkg), owners=_owners(org)))


def _render_release(org, release, status=200, headers=None):
    return render(serializers.release(base_url(), org, release.package.name, release,
                                      packages.requirements_of(release), packages.publisher_of(release)),
                  status=status, headers=headers)


@route("/packages/<name>/releases/<version>", methods=["GET"])
def release_show(repo, name, version):
    _principal, org = authorize(permissions.API_READ, repo)
    return _render_release(org, packages.get_release(org, name, version))


def _upload_body():
    """The uploaded tarball, refused before reading when its declared size is over the limit."""
    limit = runtime().config.max_tarball_size
    if (request.content_length or 0) > limit:
        # Worded apart from packages.read_tarball's own size check, so a test can tell which one refused.
        raise InvalidTarball(f"too big: the upload is {request.content_length} bytes; the limit is {limit}")
    return request.get_data(cache=False)


def _publish(repo, expected_name):
    principal, org = authorize(permissions.API_WRITE, repo)
    release, created = packages.publish(runtime(), org, _upload_body(), replace=_flag("replace", True),
                                        expected_name=expected_name, actor=actor(principal),
                                        publisher=principal.user)
    name, version, status = release.package.name, release.version, 201 if created else 200
    url, html_url, _docs = serializers._urls(base_url(), org, name, version)
    try:
        release = packages.get_release(org, name, version)
        return _render_release(org, release, status=status, headers={"Location": url})
    except Exception as exc:
        if db.unavailable(exc) is None:
            raise
        # Committed before the database went away: the client must hear that it is stored.
        return render({"name": name, "version": version, "checksum": release.outer_checksum, "url": url,
                       "html_url": html_url}, status=status, headers={"Location": url})


@route("/packages/<name>/releases", methods=["POST"])
def release_create(repo, name):
    return _publish(repo, name)


@route("/publish", methods=["POST"])
def publish_legacy(repo):
    """Hex <= 2.2 publishes here; the package name comes from the tarball."""
    return _publish(repo, None)


@route("/packages/<name>/releases/<version>", methods=["DELETE"])
def release_delete(repo, name, version):
    principal, org = authorize(permissions.API_WRITE, repo)
    packages.revert(runtime(), org, name, version, actor=actor(principal))
    return Response(status=204)


@route("/packages/<name>/releases/<version>/retire", methods=["POST"])
def release_retire(repo, name, version):
    principal, org = authorize(permissions.API_WRITE, repo)
    body = read_body()
    packages.retire(runtime(), org, name, version, body.get("reason"), body.get("message"),
                    actor=actor(principal))
    return Response(status=204)


@route("/packages/<name>/releases/<version>/retire", methods=["DELETE"])
def release_unretire(repo, name, version):
    principal, org = authorize(permissions.API_WRITE, repo)
    packages.unretire(runtime(), org, name, version, actor=actor(principal))
    return Response(status=204)


@route("/packages/<name>/releases/<version>/docs", methods=["POST"])
def docs_create(repo, name, version):
    principal, org = authorize(permissions.API_WRITE, repo)
    packages.upload_docs(runtime(), org, name, version, _upload_body(), actor=actor(principal))
    # mix prints this location as the docs URL when api_url is not hex.pm.
    location = f"{base_url()}/docs/{org.name}/{name}/{version}/"
    return Response(status=201, headers={"Location": location})


@route("/packages/<name>/releases/<version>/docs", methods=["DELETE"])
def docs_delete(repo, name, version):
    principal, org = authorize(permissions.API_WRITE, repo)
    packages.delete_docs(runtime(), org, name, version, actor=actor(principal))
    return Response(status=204)


# -- owners: private packages belong to their organization ---------------------------------------

def _owners(org):
    """Private packages are owned by their organization: its write and admin members."""
    return [m.user for m in orgs.members(org) if m.role in ("write", "admin")]


@route("/packages/<name>/owners", methods=["GET"])
def owners_index(repo, name):
    _principal, org = authorize(permissions.API_READ, repo)
    packages.get_package(org, name)
    return render([dict(serializers.user_ref(base_url(), u), level="full") for u in _owners(org)])


@route("/packages/<name>/owners/<path:owner>", methods=["PUT", "DELETE"])
def owners_change(repo, name, owner):
    _principal, org = authorize(permissions.API_WRITE, repo)
    packages.get_package(org, name)
    if owner == org.name:
        # `mix hex.publish` may transfer a new package to the organization it already lives in.
        return Response(status=204)
    raise Invalid("Validation error(s)", {
        "owner": f"packages in {org.name} are owned by the organization; manage its members instead"})


# -- auth check and keys -------------------------------------------------------------------------

@bp.get("/auth")
def auth_check():
    """`mix hex.organization auth ORG --key KEY` and rebar3_hex test a key here."""
    principal = require_principal()
    domain, resource = request.args.get("domain"), request.args.get("resource") or None
    if domain == "repository" and resource:
        try:
            org = orgs.get(resource)
        except NotFound:
            raise Forbidden("key not authorized for this action") from None
        allowed = permissions.can(principal, permissions.READ_REPOSITORY, org, orgs.role_of)
    elif domain == "repositories":
        allowed = principal.key_allows(permissions.READ_REPOSITORY, "")
    elif domain == "api":
        action = permissions.API_READ if resource == "read" else permissions.API_WRITE
        allowed = principal.key_allows(action, "")
    else:
        raise Invalid("Validation error(s)", {"domain": "must be api, repository or repositories"})
    if not allowed:
        raise Forbidden("key not authorized for this action")
    if principal.key is None:
        return Response(status=204)
    key = principal.key
    owner = ({"type": "organization", "name": key.organization.name} if key.organization_id
             else {"type": "user", "name": key.user.username})
    return render({"key": {"name": key.name, "owner": owner}})


def _key_creator():
    """The principal creating or listing its user's keys: Basic auth or a user's api:write key."""
    principal = require_principal()
    if not principal.key_allows(permissions.API_WRITE, ""):
        raise Forbidden("key not authorized for this action")
    if principal.user is None:
        raise Forbidden("organization keys cannot manage user keys")
    return principal


def _org_key_manager(org_name):
    """(principal, org) for managing an organization's keys: its administrators only."""
    principal = require_principal()
    return principal, allowed_org(principal, permissions.ADMIN, org_name)


def _create_key(principal, *, user=None, organization=None):
    body = read_body()
    raw = body.get("permissions") or []
    if organization is not None and isinstance(raw, list):
        # `mix hex.organization key ORG generate --permission repository` sends no resource:
        # under /orgs/ORG it can only mean ORG.
        raw = [dict(p, resource=p.get("resource") or organization.name)
               if isinstance(p, dict) and p.get("domain") in ("repository", "docs") else p for p in raw]
    # Whether named organizations exist is for grantable to answer, in the same words as "not yours".
    perms = keys.normalize_permissions(raw, check_orgs=False)
    permissions.grantable(principal, perms, orgs.role_of, orgs.get)
    key, secret = keys.create(runtime().app_secret, body.get("name") or "key", perms, user=user,
                              organization=organization, actor=actor(principal))
    data = serializers.key(base_url(), key, secret=secret, authing_key=principal.key)
    return render(data, status=201, headers={"Location": data["url"]})


@bp.get("/keys")
def keys_index():
    principal = _key_creator()
    return render([serializers.key(base_url(), k, authing_key=principal.key)
                   for k in keys.list_for(user=principal.user, include_revoked=False)])


@bp.post("/keys")
def keys_create():
    principal = _key_creator()
    return _create_key(principal, user=principal.user)


@bp.get("/keys/<name>")
def keys_show(name):
    principal = _key_creator()
    return render(serializers.key(base_url(), keys.get(name, user=principal.user), authing_key=principal.key))


@bp.delete("/keys/<name>")
def keys_delete(name):
    principal = _key_creator()
    key = keys.revoke(keys.get(name, user=principal.user), actor=actor(principal))
    return render(serializers.key(base_url(), key, authing_key=principal.key))


@bp.delete("/keys")
def keys_delete_all():
    principal = _key_creator()
    for key in keys.list_for(user=principal.user, include_revoked=False):
        if principal.key is None or key.id != principal.key.id:
            keys.revoke(key, actor=actor(principal))
    authing = principal.key
    return render(serializers.key(base_url(), authing, authing_key=authing) if authing else {})


@bp.get("/orgs/<org_name>/keys")
def org_keys_index(org_name):
    principal, org = _org_key_manager(org_name)
    return render([serializers.key(base_url(), k, authing_key=principal.key)
                   for k in keys.list_for(organization=org, include_revoked=False)])


@bp.post("/orgs/<org_name>/keys")
def org_keys_create(org_name):
    principal, org = _org_key_manager(org_name)
    return _create_key(principal, organization=org)


@bp.get("/orgs/<org_name>/keys/<name>")
def org_keys_show(org_name, name):
    principal, org = _org_key_manager(org_name)
    return render(serializers.key(base_url(), keys.get(name, organization=org), authing_key=principal.key))


@bp.delete("/orgs/<org_name>/keys/<name>")
def org_keys_delete(org_name, name):
    principal, org = _org_key_manager(org_name)
    key = keys.revoke(keys.get(name, organization=org), actor=actor(principal))
    return render(serializers.key(base_url(), key, authing_key=principal.key))


@bp.delete("/orgs/<org_name>/keys")
def org_keys_delete_all(org_name):
    principal, org = _org_key_manager(org_name)
    for key in keys.list_for(organization=org, include_revoked=False):
        keys.revoke(key, actor=actor(principal))
    return render({})


@bp.route("/<path:_rest>", methods=["GET", "POST", "PUT", "DELETE"])
def not_found(_rest):
    raise NotFound()

