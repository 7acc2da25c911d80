"""Directory logins and two-factor authentication (issue 11): users get an auth_source ("local"
or "ldap") and their directory DN, a TOTP secret and state, and table recovery_code.

Every existing user is a local one.
"""

from appliance.migrations import spelled_for_backend

STATEMENTS = (
    """ALTER TABLE "user" ADD COLUMN "auth_source" VARCHAR(255) NOT NULL DEFAULT 'local'""",
    'ALTER TABLE "user" ADD COLUMN "directory_dn" VARCHAR(255)',
    'ALTER TABLE "user" ADD COLUMN "totp_secret_encrypted" TEXT',
    'ALTER TABLE "user" ADD COLUMN "totp_enabled_at" DATETIME',
    'ALTER TABLE "user" ADD COLUMN "totp_last_step" INTEGER',
    'CREATE TABLE "recovery_code" ("id" INTEGER NOT NULL PRIMARY KEY, "user_id" INTEGER NOT NULL, '
    '"code_hash" VARCHAR(255) NOT NULL, "used_at" DATETIME, '
    'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "recovery_code_user_id" ON "recovery_code" ("user_id")',
)


def upgrade(migrator, database):
    for statement in spelled_for_backend(STATEMENTS):
        database.execute_sql(statement)
