"""``hexvault ldap sync``: directory users who left the directory, or every mapped group, are
disabled (sessions ended, keys and their tokens revoked, audited); the others get the
memberships their groups grant today, as at a login.

Run it from a timer (scripts/hexvault-ldap-sync.timer): a login updates only the person logging
in, and someone who left never logs in again. The directory is asked about every user before
anything is changed, so an outage half-way changes nothing (DirectoryUnavailable), and never
reads as everyone having left.
"""

import dataclasses

from appliance import accounts, identity
from appliance.models import User


@dataclasses.dataclass
class SyncReport:
    checked: int = 0
    disabled: list = dataclasses.field(default_factory=list)  # (username, reason)
    keys_revoked: int = 0


def sync(directory):
    report = SyncReport()
    users = list(User.active().where(User.auth_source == identity.LDAP).order_by(User.username))
    answers = []
    for user in users:
        found = directory.find(user.username)
        answers.append((user, found, directory.groups(found) if found is not None else ()))
    for user, found, group_dns in answers:
        report.checked += 1
        if found is None:
            reason = "no longer in the directory"
        elif directory.group_roles and not identity.roles_for_groups(directory.group_roles, group_dns):
            reason = "in none of the mapped groups"
        else:
            accounts.user_for_identity(found, group_dns, directory.group_roles)
            continue
        report.keys_revoked += accounts.disable_departed(user, reason)
        report.disabled.append((user.username, reason))
    return report
