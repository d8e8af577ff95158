{#- etl_apply_deletes(source_table, keys): post-hook of an incremental model over raw.<source_table>
    (read through etl_incremental_filter). Incremental models only ever add and update; this deletes from
    the model the keys the ETL deleted from raw (`etl reconcile`, the deletedobject feed) in the window of
    runs the model just took, (after, through], as recorded in raw.etl_deleted_keys. A key that is back in
    raw (loaded again) is kept. A first build or --full-refresh reads raw as it is and deletes nothing.
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
delete from {{ this }} as t
using (
  select distinct d.key_value
  from {{ etl.tracking_relation('etl_deleted_keys') }} as d
  where d.table_name = {{ etl.name_literal(table) }}
    and d.load_id > {{ window.after | int }} and d.load_id <= {{ window.through | int }}
) as gone
where t.{{ adapter.quote(etl.checked_name(model_column, 'keys')) }} = gone.key_value
  and not exists (select 1 from {{ etl.raw_relation(table) }} as r where r.{{ raw_key }} = gone.key_value)
{%- endmacro %}
