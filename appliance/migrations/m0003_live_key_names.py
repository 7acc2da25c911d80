"""One live key per owner and name: unique indexes on key (user_id, name) and (organization_id,
name) over unrevoked keys, so of several rotations of one key only one can win (issue 14.5).

Concurrent rotations could leave several live keys with one name. Before the indexes are made,
each such key but the newest is renamed NAME-duplicate-ID and the renaming is audited: it keeps
working, so no deployed client breaks, and an admin can find and revoke it.
"""

import datetime
import json

OWNERS = ("user_id", "organization_id")


def upgrade(migrator, database):
    p = database.param
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(" ")
    for owner in OWNERS:
        duplicates = database.execute_sql(
            f'SELECT k."id", k."name", o."name" FROM "key" k LEFT JOIN "organization" o ON o."id" = k."organization_id" '
            f'WHERE k."revoked_at" IS NULL AND k."{owner}" IS NOT NULL AND EXISTS ('
            f'SELECT 1 FROM "key" newer WHERE newer."{owner}" = k."{owner}" AND newer."name" = k."name" '
            f'AND newer."revoked_at" IS NULL AND newer."id" > k."id")').fetchall()
        for key_id, name, org_name in duplicates:
            renamed = f"{name}-duplicate-{key_id}"
            database.execute_sql(f'UPDATE "key" SET "name" = {p} WHERE "id" = {p}', (renamed, key_id))
            database.execute_sql(
                'INSERT INTO "audit_log" ("created_at", "actor", "action", "organization", "target", "details") '
                f"VALUES ({p}, 'system', 'key.rename', {p}, {p}, {p})",
                (now, org_name, renamed, json.dumps({"from": name, "why": "another live key had that name"})))
    for owner, index in (("user_id", "key_live_user_name"), ("organization_id", "key_live_organization_name")):
        database.execute_sql(f'CREATE UNIQUE INDEX "{index}" ON "key" ("{owner}", "name") '
                             f'WHERE (("revoked_at" IS NULL) AND ("{owner}" IS NOT NULL))')
