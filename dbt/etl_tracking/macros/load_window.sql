{#- The window of loads a model takes from raw.<table>, as {"after": id or none, "through": id or none}:
    - after:   the last load the transform has taken (raw.etl_transform_status.last_load_id); none = never
    - through: the last run committed that changed raw.<table>: the largest run-history id of a load of
               the table, or of a run that deleted keys from it (raw.etl_deleted_keys); none = never
    Rows with after < _etl_load_id <= through are exactly the rows loaded since the last transform: the
    load marker is a run-history id, strictly increasing from one load of a table to the next, and every
    load of the table up to `through` has committed.

    `etl transform` reads every table's window once when the run starts and passes them all as the var
    `etl_load_windows` (so models reading several tables see one consistent cut); a plain `dbt run` reads
    the window of each table when its model is compiled. -#}
{% macro etl_load_window(source_table) -%}
  {{- return(adapter.dispatch('etl_load_window', 'etl_tracking')(source_table)) -}}
{%- endmacro %}

{% macro default__etl_load_window(source_table) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {%- set table = etl.checked_name(source_table, 'source_table') -%}
  {%- set given = var('etl_load_windows', {}) -%}
  {%- if table in given -%}
    {%- set w = given[table] -%}
    {{- return({'after': w.get('after'), 'through': w.get('through')}) -}}
  {%- endif -%}
  {%- if not execute -%}
    {{- return({'after': none, 'through': none}) -}}
  {%- endif -%}
  {%- set query -%}
    select
      (select last_load_id from {{ etl.tracking_relation('etl_transform_status') }}
        where table_name = {{ etl.name_literal(table) }}) as after_id,
      greatest(
        (select max(id) from {{ etl.tracking_relation('etl_run_history') }}
          where phase = 'load' and table_name = {{ etl.name_literal(table) }}),
        (select max(load_id) from {{ etl.tracking_relation('etl_deleted_keys') }}
          where table_name = {{ etl.name_literal(table) }})) as through_id
  {%- endset -%}
  {%- set row = run_query(query).rows[0] -%}
  {{- return({'after': row[0], 'through': row[1]}) -}}
{%- endmacro %}
