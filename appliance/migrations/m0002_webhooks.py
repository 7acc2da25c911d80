"""Webhooks: the organization's hooks (URL, encrypted secret), the outbox of events and one
delivery row per event and hook (state, attempts, next attempt, lease).

New tables only; existing rows are untouched. Spelled out as DDL, as peewee wrote it for
appliance/models.py when this migration was made.
"""

from appliance.migrations import spelled_for_backend

STATEMENTS = (
    'CREATE TABLE "webhook" ("id" INTEGER NOT NULL PRIMARY KEY, "organization_id" INTEGER NOT NULL, '
    '"url" TEXT NOT NULL, "secret_encrypted" TEXT NOT NULL, "created_at" DATETIME NOT NULL, '
    'FOREIGN KEY ("organization_id") REFERENCES "organization" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "webhook_organization_id" ON "webhook" ("organization_id")',
    'CREATE TABLE "webhook_event" ("id" INTEGER NOT NULL PRIMARY KEY, "event_id" VARCHAR(255) NOT NULL, '
    '"organization_id" INTEGER NOT NULL, "type" VARCHAR(255) NOT NULL, "body" TEXT NOT NULL, '
    '"created_at" DATETIME NOT NULL, '
    'FOREIGN KEY ("organization_id") REFERENCES "organization" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "webhook_event_event_id" ON "webhook_event" ("event_id")',
    'CREATE INDEX "webhook_event_organization_id" ON "webhook_event" ("organization_id")',
    'CREATE TABLE "webhook_delivery" ("id" INTEGER NOT NULL PRIMARY KEY, "webhook_id" INTEGER NOT NULL, '
    '"event_id" INTEGER NOT NULL, "state" VARCHAR(255) NOT NULL, "attempts" INTEGER NOT NULL, '
    '"next_attempt_at" DATETIME NOT NULL, "lease_owner" VARCHAR(255), "lease_expires_at" DATETIME, '
    '"last_status" INTEGER, "last_error" TEXT, "last_attempt_at" DATETIME, "delivered_at" DATETIME, '
    '"redelivery" INTEGER NOT NULL, "created_at" DATETIME NOT NULL, '
    'FOREIGN KEY ("webhook_id") REFERENCES "webhook" ("id") ON DELETE CASCADE, '
    'FOREIGN KEY ("event_id") REFERENCES "webhook_event" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "webhook_delivery_webhook_id" ON "webhook_delivery" ("webhook_id")',
    'CREATE INDEX "webhook_delivery_event_id" ON "webhook_delivery" ("event_id")',
    'CREATE INDEX "webhook_delivery_state_next_attempt_at" ON "webhook_delivery" ("state", "next_attempt_at")',
)


def upgrade(migrator, database):
    for statement in spelled_for_backend(STATEMENTS, booleans=("redelivery",)):
        database.execute_sql(statement)
