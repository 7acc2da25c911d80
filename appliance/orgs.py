"""Organizations (one private repository each) and their members."""

import re

import peewee

from appliance import audit
from appliance.db import database, write_tx
from appliance.errors import Conflict, Invalid, NotFound
from appliance.models import ROLES, Membership, Meta, Organization, Package, User

ORG_NAME_RE = re.compile(r"[a-z0-9_]{3,40}")  # fullmatch
# "hexpm" means "the default organization" in API paths (/api/repos/hexpm/...), so it can't be an org.
RESERVED_NAMES = {"hexpm", "hex", "admin", "api", "repos", "mirror", "docs", "static"}


def canonical_name(text):
    """Trimmed and lower-cased only when ASCII (see accounts.canonical_username)."""
    text = (text or "").strip(" ") if isinstance(text, str) else ""
    return text.lower() if text.isascii() else text


def _exact(name):
    # Names from URLs are not trimmed: "acme " is not acme.
    return name.lower() if isinstance(name, str) and name.isascii() else name


def create(name, *, actor=audit.CLI):
    name = canonical_name(name)
    if not ORG_NAME_RE.fullmatch(name):
        raise Invalid("Validation error(s)", {"name": "use 3-40 characters: lowercase letters, digits and _"})
    if name in RESERVED_NAMES:
        raise Invalid("Validation error(s)", {"name": f"{name} is reserved"})
    try:
        with write_tx():
            org = Organization.create(name=name)
            audit.record(actor, "organization.create", organization=name, target=name)
            if Meta.get_or_none(Meta.key == "default_organization") is None:
                Meta.create(key="default_organization", value=name)
    except peewee.IntegrityError:
        raise Conflict(f"organization {name} already exists", {"name": "has already been taken"}) from None
    return org


def get(name):
    # Raw SQL: this runs on every repository and API request (see keys.authenticate).
    org = next(iter(Organization.raw(f'SELECT * FROM "organization" WHERE "name" = {database.param}', _exact(name))), None)
    if org is None:
        raise NotFound(f"no organization named {name}")
    return org


def list_all():
    return list(Organization.select().order_by(Organization.name))


def default_name(configured=""):
    """The organization for API calls without /repos/ORG: the setting, else the first one created."""
    if configured:
        return configured
    row = Meta.get_or_none(Meta.key == "default_organization")
    return row.value if row else None


def role_of(user, org):
    if user is None:
        return None
    row = database.execute_sql(f'SELECT "role" FROM "membership" WHERE "user_id" = {database.param} '
                               f'AND "organization_id" = {database.param}',
                               (user.id, org.id)).fetchone()
    return row[0] if row else None


def _check_role(role):
    if role not in ROLES:
        raise Invalid("Validation error(s)", {"role": f"must be one of {', '.join(ROLES)}"})


def add_member(org, user, role, *, actor=audit.CLI):
    _check_role(role)
    try:
        with write_tx():
            Membership.create(user=user, organization=org, role=role)
            audit.record(actor, "membership.add", organization=org, target=user.username, role=role)
    except peewee.IntegrityError:
        raise Conflict(f"{user.username} is already a member of {org.name}") from None


def _refuse_leaving_without_admin(org, user, actor):
    """Removing or demoting oneself as the organization's last admin would leave nobody able to
    manage it from inside, and lock oneself out of doing so: refused."""
    if actor.user is None or actor.user.id != user.id:
        return
    admins = [m.user_id for m in Membership.select(Membership.user)
              .where((Membership.organization == org.id) & (Membership.role == "admin"))]
    if admins == [user.id]:
        raise Invalid("Validation error(s)",
                      {"member": f"You are the last admin of {org.name}: make someone else an admin first."})


def set_role(org, user, role, *, actor=audit.CLI):
    _check_role(role)
    with write_tx():
        if role != "admin":
            _refuse_leaving_without_admin(org, user, actor)
        updated = (Membership.update(role=role)
                   .where((Membership.user == user.id) & (Membership.organization == org.id)).execute())
        if not updated:
            raise NotFound(f"{user.username} is not a member of {org.name}")
        audit.record(actor, "membership.role", organization=org, target=user.username, role=role)


def remove_member(org, user, *, actor=audit.CLI):
    with write_tx():
        _refuse_leaving_without_admin(org, user, actor)
        deleted = (Membership.delete()
                   .where((Membership.user == user.id) & (Membership.organization == org.id)).execute())
        if not deleted:
            raise NotFound(f"{user.username} is not a member of {org.name}")
        audit.record(actor, "membership.remove", organization=org, target=user.username)


def members(org):
    return list(Membership.select(Membership, User).join(User)
                .where(Membership.organization == org.id).order_by(User.username))


def memberships_of(user):
    return list(Membership.select(Membership, Organization).join(Organization)
                .where(Membership.user == user.id).order_by(Organization.name))


def package_count(org):
    return Package.select().where(Package.organization == org.id).count()


def delete(org, *, confirm=None, actor=audit.CLI):
    """Delete an organization with its members, keys and webhooks. One holding packages is
    deleted (with them) only when ``confirm`` is its name, so a slip cannot take them."""
    with write_tx():
        count = package_count(org)
        if count and confirm != org.name:
            raise Invalid("Validation error(s)",
                          {"confirm": f"The organization {org.name} holds {count} package(s); type its name to delete it with them."})
        Organization.delete().where(Organization.id == org.id).execute()  # everything of it cascades
        Meta.delete().where((Meta.key == "default_organization") & (Meta.value == org.name)).execute()
        audit.record(actor, "organization.delete", organization=org.name, target=org.name, packages=count or None)
