"""The one place that decides who may do what.

A principal is a user (web session or Basic auth), a key (owned by a user or an organization),
or both. Permissions follow hexpm's model: a key carries (domain, resource) pairs and can never
do more than its owner may.

  repository:ORG  read ORG's repository         repositories  read every repository the owner may
  api             full API (read and write)     api:read / api:write
  docs:ORG        read ORG's private docs
"""

import dataclasses

from appliance.errors import Forbidden, NotFound

READ_REPOSITORY = "repository"  # fetch registry files and tarballs
READ_DOCS = "docs"
API_READ = "api:read"  # package info, search
API_WRITE = "api:write"  # publish, revert, retire, docs upload
ADMIN = "admin"  # manage the organization's keys and members

_ROLE_RANK = {"read": 1, "write": 2, "admin": 3}
_NEEDED_ROLE = {READ_REPOSITORY: "read", READ_DOCS: "read", API_READ: "read", API_WRITE: "write", ADMIN: "admin"}


@dataclasses.dataclass(frozen=True)
class Principal:
    user: object = None  # models.User
    key: object = None  # models.Key
    # An OAuth token's permissions: a further limit on the key's, or (a device login's token, no
    # key) on the user's. None = no token.
    scope: tuple = None

    def key_allows(self, action, org_name):
        """Do the key and the token scope (if any) cover the action, whatever the owner holds?"""
        if self.key is not None and not key_grants(self.key.permissions, action, org_name):
            return False
        return self.scope is None or key_grants(self.scope, action, org_name)

    @property
    def name(self):
        if self.key is not None:
            return f"key {self.key.name}"
        return self.user.username if self.user else "anonymous"


def _owner_allows(principal, action, org, role_of):
    """Does the key's or session's owner hold the right on org, whatever the key says?"""
    key = principal.key
    if key is not None and key.organization_id is not None:
        # Organization keys act inside their own organization and never manage it.
        return key.organization_id == org.id and action != ADMIN
    user = principal.user
    if user is None or user.disabled_at is not None:
        return False
    if user.is_admin:
        return True
    role = role_of(user, org)
    return role is not None and _ROLE_RANK[role] >= _ROLE_RANK[_NEEDED_ROLE[action]]


def key_grants(permissions, action, org_name):
    """Does a key's permission list cover the action on org_name (ignoring who owns the key)?"""
    for domain, resource in permissions:
        resource = resource or None
        if action == READ_REPOSITORY:
            if domain == "repositories" or (domain == "repository" and resource == org_name):
                return True
        elif action == READ_DOCS:
            if domain == "repositories" or (domain in ("repository", "docs") and resource == org_name):
                return True
        elif action == API_READ:
            if domain == "api" and resource in (None, "read", "write"):
                return True
        elif action in (API_WRITE, ADMIN):
            if domain == "api" and resource in (None, "write"):
                return True
    return False


def can(principal, action, org, role_of):
    """The decision. ``role_of(user, org)`` is orgs.role_of, passed in to keep this module pure."""
    if not principal.key_allows(action, org.name):
        return False
    return _owner_allows(principal, action, org, role_of)


def refusal(principal):
    """The Forbidden for an action the principal may not do. Also what an organization that does
    not exist gets, so that answers never tell which organization names exist."""
    if principal.key is not None:
        return Forbidden("key not authorized for this action")
    return Forbidden("account not authorized for this action")


def require(principal, action, org, role_of):
    if not can(principal, action, org, role_of):
        raise refusal(principal)


def grantable(principal, permissions, role_of, org_lookup):
    """Refuse a key that would carry more than its creator holds (hexpm: a key can't escalate)."""
    # What counts is what the owner holds, not the key used to ask (an api:write key creates
    # repository keys for organizations its user belongs to).
    owner = Principal(user=principal.user, key=principal.key if principal.user is None else None)
    for domain, resource in permissions:
        if domain in ("repository", "docs"):
            action = READ_REPOSITORY if domain == "repository" else READ_DOCS
            try:
                org = org_lookup(resource)
            except NotFound:  # refused like an organization the owner cannot read: names don't leak
                org = None
            if org is None or not can(owner, action, org, role_of):
                raise Forbidden(f"you cannot grant {domain}:{resource}: a key never reads more than its owner, "
                                "and its owner cannot read that")
