{#- etl_record_transform(source_table): post-hook of a model that reads raw.<source_table> through
    etl_incremental_filter. It runs inside the model's transaction, so the tracking row commits (or not)
    together with the data it describes, and upserts raw.etl_transform_status:

      last_load_id          the `through` of the window read (kept when nothing was loaded yet)
      rows_transformed      rows of raw.<table> inside the window (what the model read)
      primary_column_name   the table's primary incremental column, as the load phase tracks it
      last_primary_value    the largest usable value of that column among the rows transformed so far
                            (an incremental run keeps the larger of the stored and the new one; a first
                            build or full refresh starts over), in the load phase's canonical text
      transformation_status 'success' (`etl transform` overwrites it with 'failed' when dbt reports the
                            model or one of its tests failed, restoring the previous window)
      last_transformed      now() -#}
{% macro etl_record_transform(source_table) -%}
  {{- return(adapter.dispatch('etl_record_transform', 'etl_tracking')(source_table)) -}}
{%- endmacro %}

{% macro default__etl_record_transform(source_table) -%}
  {%- if not execute -%}{{- return('') -}}{%- endif -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {%- set table = etl.checked_name(source_table, 'source_table') -%}
  {%- set window = etl.read_window_marker(table, model.compiled_code) -%}
  {%- if window is none -%}
    {{- exceptions.raise_compiler_error("etl_tracking: model " ~ model.name ~ " records its transform of raw." ~ table
        ~ " (etl_record_transform) but does not read it through etl_incremental_filter('" ~ table ~ "')") -}}
  {%- endif -%}
  {%- set status = etl.tracking_relation('etl_transform_status') -%}
  {%- set raw = etl.raw_relation(table) -%}
  {%- set primary = etl.primary_column(table) -%}
  {%- set marker = adapter.quote('_etl_load_id') -%}
  {%- set full = window.after is none -%}
  {%- set predicate -%}
    {%- if window.through is none -%} false
    {%- else -%}{{ marker }} <= {{ window.through }}{% if not full %} and {{ marker }} > {{ window.after }}{% endif %}
    {%- endif -%}
  {%- endset -%}
insert into {{ status }} as s
  (table_name, last_transformed, last_primary_value, primary_column_name, rows_transformed,
   transformation_status, last_load_id, _loaded_at, _updated_at)
select {{ etl.name_literal(table) }}, now(),
  {% if primary is none -%} null
  {%- elif full -%} {{ etl.watermark_text('b.batch_max', primary.dtype) }}
  {%- else -%} {{ etl.watermark_text('greatest(b.batch_max, cast(p.last_primary_value as ' ~ primary.dtype ~ '))', primary.dtype) }}
  {%- endif %},
  {{ etl.name_literal(primary.name) if primary is not none else 'null' }},
  b.rows_transformed, 'success', {{ window.through if window.through is not none else 'null' }}, now(), now()
from (
  select count(*) as rows_transformed
    {%- if primary is not none %},
    max({{ adapter.quote(primary.name) }}) filter (where {{ etl.watermark_usable(adapter.quote(primary.name), primary.dtype) }}) as batch_max
    {%- endif %}
  from {{ raw }}
  where {{ predicate }}
) as b
{%- if primary is not none and not full %}
left join {{ status }} as p
  on p.table_name = {{ etl.name_literal(table) }} and p.primary_column_name = {{ etl.name_literal(primary.name) }}
{%- endif %}
on conflict (table_name) do update set
  last_transformed = excluded.last_transformed,
  last_primary_value = excluded.last_primary_value,
  primary_column_name = excluded.primary_column_name,
  rows_transformed = excluded.rows_transformed,
  transformation_status = excluded.transformation_status,
  last_load_id = coalesce(excluded.last_load_id, s.last_load_id),
  _loaded_at = excluded._loaded_at,
  _updated_at = excluded._updated_at
{%- endmacro %}

{#- The table's primary incremental column as the load phase tracks it (raw.etl_load_status), with its
    type in raw.<table>: {"name": ..., "dtype": ...}, or none (no single column: the OR fallback). -#}
{% macro default__etl_primary_column(table) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {%- set query -%}
    select primary_column_name from {{ etl.tracking_relation('etl_load_status') }}
    where table_name = {{ etl.name_literal(table) }}
  {%- endset -%}
  {%- set rows = run_query(query).rows -%}
  {%- set name = rows[0][0] if rows else none -%}
  {%- if name is none -%}{{- return(none) -}}{%- endif -%}
  {%- for column in adapter.get_columns_in_relation(etl.raw_relation(table)) -%}
    {%- if column.name == name -%}
      {{- return({'name': etl.checked_name(name, 'primary_column_name'), 'dtype': column.dtype | lower}) -}}
    {%- endif -%}
  {%- endfor -%}
  {{- exceptions.raise_compiler_error("etl_tracking: the primary incremental column " ~ name ~ " of " ~ table
      ~ " (raw.etl_load_status) does not exist in " ~ etl.raw_relation(table)) -}}
{%- endmacro %}
