{#- etl_apply_deletes(source_table, keys): post-hook of an incremental model over raw.<source_table>
    (read through etl_incremental_filter). Incremental models only ever add and update; this deletes from
    the model the keys the ETL deleted from raw (`etl reconcile`, the deletedobject feed) in the window of
    runs the model just took, (after, through], as recorded in raw.etl_deleted_keys. A key that is back in
    raw (loaded again) is kept. When a full load replaced raw's rows in that window (`--full`, full_table),
    every key raw no longer has is deleted (that load does not list what it dropped). A first build or --full-refresh reads raw as it is and deletes nothing.
    `keys` maps the raw key column to the model's column: {'PatNum': 'pat_num'}. Runs inside the model's
    transaction, next to etl_record_transform. -#}
{% macro etl_apply_deletes(source_table, keys) -%}
  {{- return(adapter.dispatch('etl_apply_deletes', 'etl_tracking')(source_table, keys)) -}}
{%- endmacro %}

{% macro default__etl_apply_deletes(source_table, keys) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {%- set table = etl.checked_name(source_table, 'source_table') -%}
  {%- if keys is not mapping or (keys | length) != 1 -%}
    {{- exceptions.raise_compiler_error("etl_tracking: etl_apply_deletes('" ~ table ~ "', keys) needs keys as a"
        ~ " mapping of the raw key column to the model's column, e.g. {'PatNum': 'pat_num'}") -}}
  {%- endif -%}
  {%- if not execute -%}{{- return('') -}}{%- endif -%}
  {%- set window = etl.read_window_marker(table, model.compiled_code) -%}
  {%- if window is none -%}
    {{- exceptions.raise_compiler_error("etl_tracking: model " ~ model.name ~ " applies the deletes of raw." ~ table
        ~ " (etl_apply_deletes) but does not read it through etl_incremental_filter('" ~ table ~ "')") -}}
  {%- endif -%}
  {%- if window.after is none or window.through is none -%}{{- return('') -}}{%- endif -%}
  {%- set raw_column, model_column = (keys.items() | list)[0] -%}
  {%- set raw_key = adapter.quote(etl.checked_name(raw_column, 'keys')) -%}
  {#- A full load in the window (`etl load --full`, a full_table refresh, a changed primary column...)
      replaced raw's rows without recording which keys it dropped: then every key raw lacks goes. -#}
  {%- set reloaded_query -%}
    select exists (select 1 from {{ etl.tracking_relation('etl_run_history') }}
      where phase = 'load' and table_name = {{ etl.name_literal(table) }} and strategy = 'full'
        and status = 'success' and id > {{ window.after | int }} and id <= {{ window.through | int }})
  {%- endset -%}
  {%- if run_query(reloaded_query).rows[0][0] -%}
delete from {{ this }} as t
where not exists (select 1 from {{ etl.raw_relation(table) }} as r
                  where r.{{ raw_key }} = t.{{ adapter.quote(etl.checked_name(model_column, 'keys')) }})
  {%- else -%}
delete from {{ this }} as t
using (
  select distinct d.key_value
  from {{ etl.tracking_relation('etl_deleted_keys') }} as d
  where d.table_name = {{ etl.name_literal(table) }}
    and d.load_id > {{ window.after | int }} and d.load_id <= {{ window.through | int }}
) as gone
where t.{{ adapter.quote(etl.checked_name(model_column, 'keys')) }} = gone.key_value
  and not exists (select 1 from {{ etl.raw_relation(table) }} as r where r.{{ raw_key }} = gone.key_value)
  {%- endif -%}
{%- endmacro %}
