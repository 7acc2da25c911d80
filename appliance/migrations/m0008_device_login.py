"""OAuth device login for `mix hex.user auth` (issue 11.3): pending device authorizations and the
grants (one per logged-in device, holding its refresh token's hash) that access tokens name.
"""

from appliance.migrations import spelled_for_backend

STATEMENTS = (
    'CREATE TABLE "device_authorization" ("id" INTEGER NOT NULL PRIMARY KEY, '
    '"device_code_hash" VARCHAR(255) NOT NULL, "user_code_hash" VARCHAR(255) NOT NULL, '
    '"client_name" VARCHAR(255) NOT NULL, "scope" VARCHAR(255) NOT NULL, "requested_ip" VARCHAR(255) NOT NULL, '
    '"created_at" DATETIME NOT NULL, "expires_at" DATETIME NOT NULL, "last_polled_at" DATETIME, '
    '"user_id" INTEGER, "decision" VARCHAR(255), "used_at" DATETIME, '
    'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "device_authorization_device_code_hash" ON "device_authorization" ("device_code_hash")',
    'CREATE UNIQUE INDEX "device_authorization_user_code_hash" ON "device_authorization" ("user_code_hash")',
    'CREATE INDEX "device_authorization_requested_ip" ON "device_authorization" ("requested_ip")',
    'CREATE INDEX "device_authorization_created_at" ON "device_authorization" ("created_at")',
    'CREATE INDEX "device_authorization_user_id" ON "device_authorization" ("user_id")',
    'CREATE TABLE "oauth_grant" ("id" INTEGER NOT NULL PRIMARY KEY, "user_id" INTEGER NOT NULL, '
    '"client_name" VARCHAR(255) NOT NULL, "scope" VARCHAR(255) NOT NULL, "refresh_hash" VARCHAR(255) NOT NULL, '
    '"previous_refresh_hash" VARCHAR(255), "created_at" DATETIME NOT NULL, "refreshed_at" DATETIME NOT NULL, '
    '"revoked_at" DATETIME, "last_used_at" DATETIME, "last_used_ip" VARCHAR(255), '
    '"last_used_user_agent" VARCHAR(255), FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "oauth_grant_user_id" ON "oauth_grant" ("user_id")',
    'CREATE UNIQUE INDEX "oauth_grant_refresh_hash" ON "oauth_grant" ("refresh_hash")',
    'CREATE INDEX "oauth_grant_previous_refresh_hash" ON "oauth_grant" ("previous_refresh_hash")',
)


def upgrade(migrator, database):
    for statement in spelled_for_backend(STATEMENTS):
        database.execute_sql(statement)
