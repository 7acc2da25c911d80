"""Audit actions named with the admin UI's words (issue 13.3): a revoked key is ``key.revoke``,
as the Revoke button says, no longer ``key.remove``."""


def upgrade(migrator, database):
    database.execute_sql("""UPDATE "audit_log" SET "action" = 'key.revoke' WHERE "action" = 'key.remove'""")
