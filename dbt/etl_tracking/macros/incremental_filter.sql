{#- etl_incremental_filter(source_table, relation_alias=none): the WHERE predicate of a model over
    raw.<source_table>, on the load marker, never on a source timestamp, so a row loaded late whose
    timestamp is older than anything transformed before is still taken.

    Incremental run:            after < "_etl_load_id" <= through
    First build / full refresh: "_etl_load_id" <= through
    Nothing loaded yet:         false
    The upper bound is always there: a model never reads past what the load phase had committed.

    The predicate carries a comment with the window it used; etl_record_transform (the post-hook) reads
    it back from the compiled model, so what is recorded is exactly what was read. -#}
{% macro etl_incremental_filter(source_table, relation_alias=none) -%}
  {{- return(adapter.dispatch('etl_incremental_filter', 'etl_tracking')(source_table, relation_alias)) -}}
{%- endmacro %}

{% macro default__etl_incremental_filter(source_table, relation_alias) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {%- set table = etl.checked_name(source_table, 'source_table') -%}
  {%- set window = etl.load_window(table) -%}
  {%- set after = none if not is_incremental() else window.after -%}
  {%- set through = window.through -%}
  {%- set column = (adapter.quote(etl.checked_name(relation_alias, 'relation_alias')) ~ '.' if relation_alias else '')
                   ~ adapter.quote('_etl_load_id') -%}
  {%- set parts = [] -%}
  {%- if through is none -%}
    {%- do parts.append('false') -%}
  {%- else -%}
    {%- if after is not none -%}{%- do parts.append(column ~ ' > ' ~ (after | int)) -%}{%- endif -%}
    {%- do parts.append(column ~ ' <= ' ~ (through | int)) -%}
  {%- endif -%}
  {{- etl.window_marker(table, after, through) }} ({{ parts | join(' and ') }})
{%- endmacro %}

{#- The comment both macros agree on: /* etl_load_window(<table>) after=<id|none> through=<id|none> */ -#}
{% macro default__etl_window_marker(table, after, through) -%}
  /* etl_load_window({{ table }}) after={{ 'none' if after is none else (after | int) }} through={{ 'none' if through is none else (through | int) }} */
{%- endmacro %}

{% macro default__etl_read_window_marker(table, compiled_sql) -%}
  {%- set pattern = 'etl_load_window\\(' ~ table ~ '\\) after=(none|[0-9]+) through=(none|[0-9]+)' -%}
  {%- set found = modules.re.findall(pattern, compiled_sql or '') -%}
  {%- if not found -%}
    {{- return(none) -}}
  {%- endif -%}
  {%- if (found | unique | list | length) > 1 -%}
    {{- exceptions.raise_compiler_error("etl_tracking: model " ~ model.name ~ " reads raw." ~ table ~ " with different load windows") -}}
  {%- endif -%}
  {%- set after, through = found[0] -%}
  {{- return({'after': none if after == 'none' else (after | int), 'through': none if through == 'none' else (through | int)}) -}}
{%- endmacro %}
