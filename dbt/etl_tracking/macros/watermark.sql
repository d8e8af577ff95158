{#- Watermark values in the load phase's rules (etl/watermark.py, the one place they are decided), in SQL:
    usable:  not NULL, and a date or time on or after the floor, the var etl_watermark_floor (`etl
             transform` passes watermark.FLOOR; the default here is the same date): 0001-01-01 and
             1900-01-01 mean "no date"
    text:    integers in decimal; dates YYYY-MM-DD; timestamps 'YYYY-MM-DD HH:MM:SS', with '.ffffff'
             only when the microseconds are not zero. -#}
{% macro default__etl_watermark_kind(dtype) -%}
  {%- if dtype in ('smallint', 'integer', 'bigint', 'numeric') -%}{{- return('integer') -}}
  {%- elif dtype == 'timestamp without time zone' -%}{{- return('datetime') -}}
  {%- elif dtype == 'date' -%}{{- return('date') -}}
  {%- endif -%}
  {{- exceptions.raise_compiler_error("etl_tracking: a column of type " ~ dtype ~ " cannot carry a watermark"
      ~ " (expected an integer, date or timestamp column)") -}}
{%- endmacro %}

{% macro default__etl_watermark_usable(expr, dtype) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {%- if etl.watermark_kind(dtype) == 'integer' -%}{{ expr }} is not null
  {%- else -%}{{ expr }} >= date '{{ etl.watermark_floor() }}'
  {%- endif -%}
{%- endmacro %}

{#- The first date a watermark may hold: var etl_watermark_floor, checked to be a date (it is written into SQL). -#}
{% macro default__etl_watermark_floor() -%}
  {%- set floor = var('etl_watermark_floor', '1901-01-01') | string -%}
  {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', floor) -%}
    {{- exceptions.raise_compiler_error("etl_tracking: var etl_watermark_floor must be a date YYYY-MM-DD, got " ~ floor) -}}
  {%- endif -%}
  {{- return(floor) -}}
{%- endmacro %}

{% macro default__etl_watermark_text(expr, dtype) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {%- set kind = etl.watermark_kind(dtype) -%}
  {%- if kind == 'integer' -%}cast({{ expr }} as text)
  {%- elif kind == 'date' -%}to_char({{ expr }}, 'YYYY-MM-DD')
  {%- else -%}(select to_char(v, 'YYYY-MM-DD HH24:MI:SS') || case when v <> date_trunc('second', v) then to_char(v, '.US') else '' end from (select {{ expr }} as v) as w)
  {%- endif -%}
{%- endmacro %}
