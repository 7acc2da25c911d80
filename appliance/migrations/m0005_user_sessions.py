"""Admin UI sessions held on the server (table user_session), so logging out ends a session for
good and a copied cookie stops working (issue 14.9).

Sessions started before the upgrade carry no server-side id and end with it: everyone logs in
to the admin UI once more. The per-user session counters the old scheme kept in meta go.
"""

from appliance.migrations import spelled_for_backend

STATEMENTS = (
    'CREATE TABLE "user_session" ("id" INTEGER NOT NULL PRIMARY KEY, "id_hash" VARCHAR(255) NOT NULL, '
    '"user_id" INTEGER NOT NULL, "created_at" DATETIME NOT NULL, '
    'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "user_session_id_hash" ON "user_session" ("id_hash")',
    'CREATE INDEX "user_session_user_id" ON "user_session" ("user_id")',
    'CREATE INDEX "user_session_created_at" ON "user_session" ("created_at")',
    """DELETE FROM "meta" WHERE "key" LIKE 'sessions:%'""",
)


def upgrade(migrator, database):
    for statement in spelled_for_backend(STATEMENTS):
        database.execute_sql(statement)
