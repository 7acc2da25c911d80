"""Where people come from: the company directory, beside Hexvault's own (local) accounts.

A provider answers two questions and nothing else::

    authenticate(username, password) -> Identity or None   # None: wrong name or password
    groups(identity) -> list of group DNs                    # what the directory says today

and raises ``errors.DirectoryUnavailable`` when it cannot tell (server down, service account
refused): an outage must never read as "wrong password", nor as "left the company".
``appliance/identity/ldap.py`` is the LDAP / Active Directory provider; it also has
``find(username)`` for ``hexvault ldap sync``, which has no password to offer.

``appliance/accounts.py`` stays the one place that turns an Identity into a ``User`` (created at
the first login, its organization roles following the directory's groups at every login), and
``loginlimit.checked_login`` the one place a password is checked, for the login form and for
HTTP Basic auth alike, so the failure limits cover directory logins too.

``appliance/identity/oidc.py`` is OpenID Connect single sign-on for the web UI (its users go
through the same ``accounts.user_for_identity``), and ``appliance/identity/device.py`` the OAuth
device login of `mix hex.user auth`.

``appliance/identity/totp.py`` is the second factor of local accounts (TOTP and recovery codes).
"""

import dataclasses

LOCAL = "local"
LDAP = "ldap"
OIDC = "oidc"  # single sign-on (identity/oidc.py)


@dataclasses.dataclass(frozen=True)
class Identity:
    """A person as a provider knows them."""

    username: str  # Hexvault's canonical spelling of the name they logged in with
    source: str  # LDAP, ...
    subject: str  # the provider's stable name for them (an LDAP DN)
    email: str | None = None
    full_name: str | None = None


def normalize_dn(dn):
    """A DN compared case- and space-insensitively (``CN=Devs, OU=Groups`` = ``cn=devs,ou=groups``)."""
    return ",".join(part.strip() for part in (dn or "").lower().split(","))


def roles_for_groups(group_roles, group_dns):
    """{organization name: role} granted by the directory groups ``group_dns`` under the
    ``ldap_group_roles`` setting ((group DN, ("org:role", ...)) pairs); of several roles in one
    organization the strongest wins."""
    from appliance.models import ROLES

    held = {normalize_dn(dn) for dn in group_dns}
    granted = {}
    for group, grants in group_roles:
        if normalize_dn(group) not in held:
            continue
        for grant in grants:
            org, _, role = grant.partition(":")
            if org not in granted or ROLES.index(role) > ROLES.index(granted[org]):
                granted[org] = role
    return granted


def mapped_organizations(group_roles):
    """Organizations whose memberships the directory decides (of directory users)."""
    orgs = set()
    for _group, grants in group_roles:
        for grant in grants:
            orgs.add(grant.partition(":")[0])
    return orgs
