"""API response shapes, following hexpm's views (hex-protocol.md §5.6). Plain dicts; the
negotiation in responses.py turns them into ETF or JSON. Absent values are None (ETF nil), except
a user's ``email`` and ``full_name``: hexpm leaves those out when it has none, and rebar3_hex relies
on that (``rebar3 hex user whoami`` calls binary_to_list/1 on them, defaulting only absent keys).
"""

import datetime

from appliance import packages


def iso(value):
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.replace(microsecond=0).isoformat() + "Z"
    return str(value)


def configs(repository, name, version):
    # The mix line names the repo: pasted without it, mix would look for the package on hex.pm.
    return {
        "mix.exs": f'{{:{name}, "~> {version}", repo: "{repository}"}}',
        "rebar.config": f'{{{name}, "{version}"}}',
        "erlang.mk": f"dep_{name} = hex {version}",
    }


def _urls(base, org, name, version=None):
    api = f"{base}/api/repos/{org.name}/packages/{name}"
    html = f"{base}/admin/orgs/{org.name}/packages/{name}"
    if version is None:
        return api, html, f"{base}/docs/{org.name}/{name}/"
    return f"{api}/releases/{version}", f"{html}/{version}", f"{base}/docs/{org.name}/{name}/{version}/"


def retirement(release):
    if not release.retirement_reason:
        return None
    return {"reason": release.retirement_reason, "message": release.retirement_message}


def package(base, org, pkg, releases, owners=()):
    """releases: newest first (packages.releases_of)."""
    url, html_url, docs_url = _urls(base, org, pkg.name)
    latest, stable = packages.latest_versions(releases)
    meta = pkg.meta or {}
    return {
        "name": pkg.name,
        "repository": org.name,
        "url": url,
        "html_url": html_url,
        "docs_html_url": docs_url if any(r.has_docs for r in releases) else None,
        "latest_version": latest,
        "latest_stable_version": stable,
        "configs": configs(org.name, pkg.name, stable or latest or "0.1.0"),
        "meta": {
            "description": meta.get("description"),
            "licenses": meta.get("licenses") or [],
            "links": meta.get("links") or {},
            "maintainers": meta.get("maintainers") or [],
        },
        "releases": [{"version": r.version, "url": _urls(base, org, pkg.name, r.version)[0],
                      "has_docs": r.has_docs, "inserted_at": iso(r.published_at)} for r in releases],
        "retirements": {r.version: retirement(r) for r in releases if r.retirement_reason},
        "downloads": {},
        "owners": [user_ref(base, u) for u in owners],
        "inserted_at": iso(pkg.created_at),
        "updated_at": iso(pkg.updated_at),
    }


def present(data):
    """``data`` without its None ``email`` and ``full_name`` (see the module docstring)."""
    return {k: v for k, v in data.items() if v is not None or k not in ("email", "full_name")}


def user_ref(base, user):
    if user is None:
        return None
    return present({"username": user.username, "email": user.email, "url": f"{base}/api/users/{user.username}"})


def release(base, org, pkg_name, rel, requirements, publisher):
    url, html_url, docs_url = _urls(base, org, pkg_name, rel.version)
    meta = rel.metadata or {}
    return {
        "version": rel.version,
        "checksum": rel.outer_checksum,
        "inner_checksum": rel.inner_checksum,
        "has_docs": rel.has_docs,
        "retirement": retirement(rel),
        "package_url": _urls(base, org, pkg_name)[0],
        "url": url,
        "html_url": html_url,
        "docs_html_url": docs_url if rel.has_docs else None,
        "requirements": {
            r.name: {"app": r.app, "requirement": r.requirement, "optional": r.optional,
                     "repository": r.repository or org.name}
            for r in requirements
        },
        "configs": configs(org.name, pkg_name, rel.version),
        "meta": {"app": meta.get("app"), "build_tools": meta.get("build_tools") or [],
                 "elixir": meta.get("elixir")},
        "downloads": 0,
        "publisher": user_ref(base, publisher),
        "inserted_at": iso(rel.published_at),
        "updated_at": iso(rel.updated_at),
    }


def key(base, k, *, secret=None, authing_key=None):
    owner_path = f"orgs/{k.organization.name}/keys" if k.organization_id else "keys"
    return {
        "name": k.name,
        "authing_key": bool(authing_key is not None and authing_key.id == k.id),
        "secret": secret,
        "permissions": [{"domain": d, "resource": r} for d, r in k.permissions],
        "revoke_at": iso(k.revoked_at or k.expires_at),
        "inserted_at": iso(k.created_at),
        "updated_at": iso(k.created_at),
        "url": f"{base}/api/{owner_path}/{k.name}",
        "last_use": {"used_at": iso(k.last_used_at), "ip": k.last_used_ip,
                     "user_agent": k.last_used_user_agent} if k.last_used_at else None,
    }


def user(base, u, memberships, owned_packages, *, private=False):
    """users/me; ``private`` leaves out email and full name (a key that may not read the API)."""
    return present({
        "username": u.username,
        "handles": {},
        "url": f"{base}/api/users/{u.username}",
        "inserted_at": iso(u.created_at),
        "updated_at": iso(u.updated_at),
        # mix hex.publish crashes without this list (hex-protocol.md §8.2).
        "organizations": [{"name": m.organization.name, "role": m.role} for m in memberships],
        "packages": [{"name": p.name, "repository": p.organization.name,
                      "url": _urls(base, p.organization, p.name)[0],
                      "html_url": _urls(base, p.organization, p.name)[1]} for p in owned_packages],
        "email": None if private else u.email,
        "full_name": None if private else u.full_name,
    })
