{#- etl_delete_missing(source_table, keys): post-hook that deletes the model's rows whose key no longer
    exists in raw.<source_table>. Incremental models only ever add and update; use this on models over
    tables the load phase refreshes in full (extraction_strategy full_table), where a row deleted at the
    source disappears from raw. `keys` maps each raw key column to the model's column:
    {'DefNum': 'def_num'}. -#}
{% macro etl_delete_missing(source_table, keys) -%}
  {{- return(adapter.dispatch('etl_delete_missing', 'etl_tracking')(source_table, keys)) -}}
{%- endmacro %}

{% macro default__etl_delete_missing(source_table, keys) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {%- if keys is not mapping or not keys -%}
    {{- exceptions.raise_compiler_error("etl_tracking: etl_delete_missing('" ~ source_table ~ "', keys) needs keys as a"
        ~ " mapping of raw key column to model column, e.g. {'DefNum': 'def_num'}") -}}
  {%- endif -%}
delete from {{ this }} as t
where not exists (
  select 1 from {{ etl.raw_relation(source_table) }} as r
  where {% for raw_column, model_column in keys.items() -%}
    {{ 'and ' if not loop.first }}r.{{ adapter.quote(etl.checked_name(raw_column, 'keys')) }} = t.{{ adapter.quote(etl.checked_name(model_column, 'keys')) }}
  {% endfor -%}
)
{%- endmacro %}
