"""The schema of Hexvault's first release (schema version 1): users, organizations, members,
keys, packages, releases, requirements, pending builds, audit log, signing keys and meta.

The statements are what peewee's ``create_tables`` wrote for that release on SQLite, frozen here:
later changes to ``appliance/models.py`` come as later migrations, never as edits to this file.
On PostgreSQL (added later; no PostgreSQL database ever had another version 1) the same
statements are spelled in its types by ``migrations.spelled_for_backend``.
"""

from appliance.migrations import spelled_for_backend

STATEMENTS = (
    'CREATE TABLE "user" ("id" INTEGER NOT NULL PRIMARY KEY, "username" VARCHAR(255) NOT NULL, '
    '"email" VARCHAR(255), "full_name" VARCHAR(255), "password_hash" VARCHAR(255), '
    '"is_admin" INTEGER NOT NULL, "disabled_at" DATETIME, "created_at" DATETIME NOT NULL, '
    '"updated_at" DATETIME NOT NULL)',
    'CREATE UNIQUE INDEX "user_username" ON "user" ("username")',
    'CREATE TABLE "audit_log" ("id" INTEGER NOT NULL PRIMARY KEY, "created_at" DATETIME NOT NULL, '
    '"user_id" INTEGER, "actor" VARCHAR(255) NOT NULL, "action" VARCHAR(255) NOT NULL, '
    '"organization" VARCHAR(255), "target" VARCHAR(255), "details" TEXT NOT NULL, "ip" VARCHAR(255), '
    '"user_agent" VARCHAR(255), FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE SET NULL)',
    'CREATE INDEX "audit_log_created_at" ON "audit_log" ("created_at")',
    'CREATE INDEX "audit_log_user_id" ON "audit_log" ("user_id")',
    'CREATE INDEX "audit_log_action" ON "audit_log" ("action")',
    'CREATE INDEX "audit_log_organization" ON "audit_log" ("organization")',
    'CREATE TABLE "organization" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, '
    '"created_at" DATETIME NOT NULL)',
    'CREATE UNIQUE INDEX "organization_name" ON "organization" ("name")',
    'CREATE TABLE "key" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, '
    '"user_id" INTEGER, "organization_id" INTEGER, "secret_first" VARCHAR(255) NOT NULL, '
    '"secret_second" VARCHAR(255) NOT NULL, "permissions" TEXT NOT NULL, "created_at" DATETIME NOT NULL, '
    '"revoked_at" DATETIME, "expires_at" DATETIME, "last_used_at" DATETIME, "last_used_ip" VARCHAR(255), '
    '"last_used_user_agent" VARCHAR(255), '
    'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE, '
    'FOREIGN KEY ("organization_id") REFERENCES "organization" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "key_user_id" ON "key" ("user_id")',
    'CREATE INDEX "key_organization_id" ON "key" ("organization_id")',
    'CREATE UNIQUE INDEX "key_secret_first" ON "key" ("secret_first")',
    'CREATE TABLE "membership" ("id" INTEGER NOT NULL PRIMARY KEY, "user_id" INTEGER NOT NULL, '
    '"organization_id" INTEGER NOT NULL, "role" VARCHAR(255) NOT NULL, "created_at" DATETIME NOT NULL, '
    'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE, '
    'FOREIGN KEY ("organization_id") REFERENCES "organization" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "membership_user_id" ON "membership" ("user_id")',
    'CREATE INDEX "membership_organization_id" ON "membership" ("organization_id")',
    'CREATE UNIQUE INDEX "membership_user_id_organization_id" ON "membership" ("user_id", "organization_id")',
    'CREATE TABLE "meta" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL)',
    'CREATE TABLE "package" ("id" INTEGER NOT NULL PRIMARY KEY, "organization_id" INTEGER NOT NULL, '
    '"name" VARCHAR(255) NOT NULL, "meta" TEXT NOT NULL, "created_at" DATETIME NOT NULL, '
    '"updated_at" DATETIME NOT NULL, "revision" INTEGER NOT NULL, '
    'FOREIGN KEY ("organization_id") REFERENCES "organization" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "package_organization_id" ON "package" ("organization_id")',
    'CREATE UNIQUE INDEX "package_organization_id_name" ON "package" ("organization_id", "name")',
    'CREATE TABLE "pending_build" ("id" INTEGER NOT NULL PRIMARY KEY, "organization_id" INTEGER NOT NULL, '
    '"package_name" VARCHAR(255) NOT NULL, '
    'FOREIGN KEY ("organization_id") REFERENCES "organization" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "pending_build_organization_id" ON "pending_build" ("organization_id")',
    'CREATE TABLE "release" ("id" INTEGER NOT NULL PRIMARY KEY, "package_id" INTEGER NOT NULL, '
    '"version" VARCHAR(255) NOT NULL, "inner_checksum" VARCHAR(255) NOT NULL, '
    '"outer_checksum" VARCHAR(255) NOT NULL, "size" INTEGER NOT NULL, "metadata" TEXT NOT NULL, '
    '"readme" TEXT, "docs_checksum" VARCHAR(255), "retirement_reason" VARCHAR(255), '
    '"retirement_message" VARCHAR(255), "publisher_id" INTEGER, "published_at" DATETIME NOT NULL, '
    '"updated_at" DATETIME NOT NULL, '
    'FOREIGN KEY ("package_id") REFERENCES "package" ("id") ON DELETE CASCADE, '
    'FOREIGN KEY ("publisher_id") REFERENCES "user" ("id") ON DELETE SET NULL)',
    'CREATE INDEX "release_package_id" ON "release" ("package_id")',
    'CREATE INDEX "release_publisher_id" ON "release" ("publisher_id")',
    'CREATE UNIQUE INDEX "release_package_id_version" ON "release" ("package_id", "version")',
    'CREATE TABLE "requirement" ("id" INTEGER NOT NULL PRIMARY KEY, "release_id" INTEGER NOT NULL, '
    '"name" VARCHAR(255) NOT NULL, "app" VARCHAR(255) NOT NULL, "requirement" VARCHAR(255) NOT NULL, '
    '"optional" INTEGER NOT NULL, "repository" VARCHAR(255), '
    'FOREIGN KEY ("release_id") REFERENCES "release" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "requirement_release_id" ON "requirement" ("release_id")',
    'CREATE TABLE "signing_key" ("id" INTEGER NOT NULL PRIMARY KEY, "public_pem" TEXT NOT NULL, '
    '"fingerprint" VARCHAR(255) NOT NULL, "created_at" DATETIME NOT NULL, "retired_at" DATETIME)',
)


def upgrade(migrator, database):
    for statement in spelled_for_backend(STATEMENTS, booleans=("is_admin", "optional")):
        database.execute_sql(statement)
