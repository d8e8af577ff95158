"""`etl render PHASE TABLE`: the plan and every statement the phase would run, with its bind names.

Read-only: it reflects the live schemas and reads the tracking state, and changes nothing.
"""

from __future__ import annotations

from etl.config import EtlConfig
from etl.db import mysql_connect, pg_connect
from etl.execute import RAW_TEXT_CONV
from etl.render import Ident, Statement, render
from etl.settings import Settings


def statements_for(settings: Settings, plan) -> list[Statement]:
    """The statements of one phase run of `plan`, in the order they run."""
    columns = tuple(c.name for c in plan.columns)
    update_columns = tuple(c for c in columns if c not in plan.key)
    if plan.phase == "copy":
        if settings.same_mysql_server():
            reads = [render("mysql/copy_insert_select", plan=plan, columns=columns, update_columns=update_columns,
                            target=plan.table, replica_db=Ident(settings.replica_url.database),
                            source_db=Ident(settings.source_url.database))]
        else:
            database = Ident(settings.source_url.database)
            reads = _blocks(plan, "mysql/copy_select", database=database)
            if plan.strategy == "full":  # straight into the new (or shadow) table
                reads.append(render("mysql/copy_load_infile", table=plan.table, columns=columns))
            else:
                stage = Ident("_etl_copy_stage")
                reads += [render("mysql/copy_stage_create", stage=stage, table=plan.table),
                          render("mysql/copy_load_infile", table=stage, columns=columns),
                          render("mysql/copy_stage_upsert", table=plan.table, stage=stage, columns=columns,
                                 update_columns=update_columns)]
        return reads + [render("mysql/copy_status_upsert"), render("mysql/run_history_insert")]
    schema = Ident(settings.raw_schema)
    stage = Ident("_etl_stage")
    reads = _blocks(plan, "mysql/load_select")
    if plan.strategy == "full":
        writes = [render("postgres/truncate", schema=schema, table=plan.table),
                  render("postgres/copy_from_stdin", schema=schema, table=plan.table, columns=columns)]
    else:
        writes = [render("postgres/create_stage", stage=stage, schema=schema, table=plan.table),
                  render("postgres/copy_from_stdin", schema=None, table=stage, columns=columns),
                  render("postgres/load_upsert", schema=schema, table=plan.table, stage=stage, columns=columns,
                         key=plan.key, update_columns=update_columns)]
    return reads + writes + [render("postgres/load_status_upsert", schema=schema),
                             render("postgres/run_history_insert", schema=schema)]


def _blocks(plan, template: str, **context) -> list[Statement]:
    """A block read (execute.read_blocks): the first block's boundary and block, then a following one's."""
    database = context.get("database")
    return [render("mysql/read_boundary", plan=plan, database=database, after_key=False),
            render(template, plan=plan, after_key=False, upto_key=True, **context),
            render("mysql/read_boundary", plan=plan, database=database, after_key=True),
            render(template, plan=plan, after_key=True, upto_key=True, **context)]


def render_table(settings: Settings, config: EtlConfig, phase: str, table: str, *, strategy: str | None = None) -> str:
    table_config = config.select([table])[0]
    if phase == "copy":
        from etl.phases.copy import prepare
        source = mysql_connect(settings.source_url, role="source", conv=RAW_TEXT_CONV)
        replica = mysql_connect(settings.replica_url, role="replica", conv=RAW_TEXT_CONV)
        try:
            plan = prepare(settings, source, replica, table_config, strategy=strategy)[0]
        finally:
            source.close()
            replica.close()
    else:
        from etl.phases.load import prepare
        replica = mysql_connect(settings.replica_url, role="replica", conv=RAW_TEXT_CONV)
        pg = pg_connect(settings.analytics_url)
        try:
            plan = prepare(settings, replica, pg, table_config, strategy=strategy)[0]
        finally:
            replica.close()
            pg.close()
    parts = [f"-- {line}" for line in plan.describe().splitlines()]
    for statement in statements_for(settings, plan):
        binds = ", ".join(f":{b}" for b in sorted(statement.binds)) or "none"
        parts.append(f"\n-- {statement.name}  (binds: {binds})\n{statement.text.rstrip()};")
    return "\n".join(parts)
