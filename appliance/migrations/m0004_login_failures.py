"""Failed password logins kept in the database (table login_failure), so the login limits are
per account and address and hold across server processes and restarts (issue 14.4).

The limits used to live in each process's memory; nothing is carried over from them.
"""

from appliance.migrations import spelled_for_backend

STATEMENTS = (
    'CREATE TABLE "login_failure" ("id" INTEGER NOT NULL PRIMARY KEY, "account" VARCHAR(255) NOT NULL, '
    '"address" VARCHAR(255) NOT NULL, "failed_at" REAL NOT NULL)',
    'CREATE INDEX "login_failure_failed_at" ON "login_failure" ("failed_at")',
    'CREATE INDEX "login_failure_account_address_failed_at" ON "login_failure" ("account", "address", "failed_at")',
    'CREATE INDEX "login_failure_address_failed_at" ON "login_failure" ("address", "failed_at")',
)


def upgrade(migrator, database):
    for statement in spelled_for_backend(STATEMENTS, doubles=("failed_at",)):
        database.execute_sql(statement)
