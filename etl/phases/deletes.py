"""Deletes from OpenDental's `deletedobject` log: a cheap incremental delete feed, as a recipe step.

OpenDental records many deletions in `deletedobject` (DeletedObjectNum, ObjectNum, ObjectType,
DateTStamp). For a table configured with ``delete_detection: deletedobject`` and its
``deleted_object_type``, each phase reads the log past its own watermark (DeletedObjectNum, kept in the
phase's column-status table under the name ``deletedobject.DeletedObjectNum``) and deletes the logged keys
that no longer exist upstream: the copy phase reads the source's log and deletes from the replica; the
load phase reads the replica's copy of the log (configure `deletedobject` itself in tables.yml, `etl run`
copies it before the other tables) and deletes from raw. Tables whose deletions are not logged there use
``delete_detection: reconcile`` (the chunked key comparison) instead. The executor runs the step
(etl/executor.py ``delete_feed``), inside the transaction of the phase's data and tracking; in raw, the
keys it deletes are recorded (raw.etl_deleted_keys, under the load's id) for the dbt models built on the
table, which delete them too (etl_apply_deletes).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from etl.config import TableConfig
from etl.dialects import mysql
from etl.recipe import DeleteFeed
from etl.render import Ident
from etl.tracking import Store

#: Log entries read per query.
BATCH = 5000
BRANCH = "deletedobject feed"


def feed_step(config: TableConfig, key: Ident, *, phase: str, read_on: str, log_database: str, write_on: str,
              write: ModuleType, write_scope: dict[str, Any], store: Store) -> DeleteFeed:
    """The feed of one table: the log and the upstream table are read on `read_on` (MySQL: the log and the
    table in `log_database`), the keys are deleted on `write_on` (dialect `write`, tables in `write_scope`),
    and the feed's watermark is kept in `store` (the phase's tracking)."""
    database, table = Ident(log_database), Ident(config.name)
    return DeleteFeed(
        branch=BRANCH, read_on=read_on, write_on=write_on, table=config.name,
        object_type=config.deleted_object_type,
        state=store.feed_statements(phase),
        log=mysql.render("deleted_objects", database=database),
        existing=mysql.render("existing_keys", database=database, table=table, key=key),
        delete=write.render("reconcile_delete", table=table, key=key, **write_scope),
        batch=BATCH, read_keys=mysql.key_list, write_keys=write.key_list,
        key_column=str(key), record=store.deletes_statement(),
    )
