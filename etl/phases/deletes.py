"""Deletes from OpenDental's `deletedobject` log: a cheap incremental delete feed.

OpenDental records many deletions in `deletedobject` (DeletedObjectNum, ObjectNum, ObjectType,
DateTStamp). For a table configured with ``delete_detection: deletedobject`` and its
``deleted_object_type``, each phase reads the log past its own watermark (DeletedObjectNum, kept in the
phase's column-status table under the name ``deletedobject.DeletedObjectNum``) and deletes the logged keys
that no longer exist upstream: the copy phase reads the source's log and deletes from the replica; the
load phase reads the replica's copy of the log (configure `deletedobject` itself in tables.yml, `etl run`
copies it before the other tables) and deletes from raw. Tables whose deletions are not logged there use
``delete_detection: reconcile`` (the chunked key comparison) instead.
"""

from __future__ import annotations

from typing import Any

from etl import tracking
from etl.config import TableConfig
from etl.db import execute, fetch_all
from etl.render import Ident, render

FEED_COLUMN = "deletedobject.DeletedObjectNum"
BATCH = 5000


def apply_deleted_objects(read_conn, log_database: str, upstream_database: str, write_conn, write_dialect: str,
                          write_ctx: dict[str, Any], table: TableConfig, key: Ident, phase: str,
                          schema: str | None = None) -> int:
    """Delete logged keys gone upstream, in `write_conn`'s open transaction; returns rows deleted."""
    dialect = tracking.PHASE_DIALECT[phase]
    ctx = {"schema": Ident(schema)} if phase == "load" else {}
    stored = dict(fetch_all(write_conn, render(f"{dialect}/{phase}_column_status_select", **ctx),
                            {"table_name": table.name})).get(FEED_COLUMN)
    after = int(stored) if stored else 0
    deleted = 0
    delete = render(f"{write_dialect}/reconcile_delete", table=Ident(table.name), key=key, **write_ctx)
    while True:
        rows = fetch_all(read_conn, render("mysql/deleted_objects", database=Ident(log_database)),
                         {"object_type": table.deleted_object_type, "after": after, "batch_size": BATCH})
        if not rows:
            break
        after = int(rows[-1][0])
        keys = sorted({int(r[1]) for r in rows})
        still_there = {int(r[0]) for r in fetch_all(
            read_conn, render("mysql/existing_keys", database=Ident(upstream_database), table=Ident(table.name), key=key),
            {"keys": tuple(keys)})}
        gone = [k for k in keys if k not in still_there]
        if gone:
            with write_conn.cursor() as cur:
                execute(cur, delete, {"keys": tuple(gone) if write_dialect == "mysql" else list(gone)})
                deleted += max(cur.rowcount, 0)
        if len(rows) < BATCH:
            break
    with write_conn.cursor() as cur:
        execute(cur, render(f"{dialect}/{phase}_column_status_upsert", **ctx),
                {"table_name": table.name, "column_name": FEED_COLUMN, "last_value": str(after)})
    return deleted
