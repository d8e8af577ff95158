{#- Helpers of the package. A macro of an installed package cannot call its siblings by their bare names
    from a user's model, and the bare names are all the shipped project (which reads these files through
    macro-paths) has; so every macro reaches its helpers through adapter.dispatch, which finds them in
    both setups:   {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}   etl.checked_name(...) -#}
{#- (dbt reads the macro names of dispatch calls statically: each is spelled out.) -#}
{% macro default__etl_helpers() -%}
  {{- return({
    'checked_name':       adapter.dispatch('etl_checked_name', 'etl_tracking'),
    'name_literal':       adapter.dispatch('etl_name_literal', 'etl_tracking'),
    'raw_schema':         adapter.dispatch('etl_raw_schema', 'etl_tracking'),
    'raw_relation':       adapter.dispatch('etl_raw_relation', 'etl_tracking'),
    'tracking_relation':  adapter.dispatch('etl_tracking_relation', 'etl_tracking'),
    'load_window':        adapter.dispatch('etl_load_window', 'etl_tracking'),
    'window_marker':      adapter.dispatch('etl_window_marker', 'etl_tracking'),
    'read_window_marker': adapter.dispatch('etl_read_window_marker', 'etl_tracking'),
    'primary_column':     adapter.dispatch('etl_primary_column', 'etl_tracking'),
    'watermark_kind':     adapter.dispatch('etl_watermark_kind', 'etl_tracking'),
    'watermark_usable':   adapter.dispatch('etl_watermark_usable', 'etl_tracking'),
    'watermark_floor':    adapter.dispatch('etl_watermark_floor', 'etl_tracking'),
    'watermark_text':     adapter.dispatch('etl_watermark_text', 'etl_tracking')
  }) -}}
{%- endmacro %}

{#- Where the ETL keeps its tables: the raw schema (var etl_raw_schema, else env ETL_RAW_SCHEMA, else raw) of
    the database dbt runs on. Every name is checked to be a plain identifier, then quoted by the adapter. -#}
{% macro default__etl_raw_schema() -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {{- return(etl.checked_name(var('etl_raw_schema', env_var('ETL_RAW_SCHEMA', 'raw')), 'var etl_raw_schema')) -}}
{%- endmacro %}

{#- raw.<table>: the table the load phase writes, with its load marker "_etl_load_id". -#}
{% macro default__etl_raw_relation(source_table) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {{- return(api.Relation.create(database=target.database, schema=etl.raw_schema(),
                                 identifier=etl.checked_name(source_table, 'source_table'), type='table')) -}}
{%- endmacro %}

{#- raw.etl_transform_status, raw.etl_run_history, raw.etl_load_status, raw.etl_deleted_keys (owned by the
    ETL's migrations). -#}
{% macro default__etl_tracking_relation(name) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {{- return(api.Relation.create(database=target.database, schema=etl.raw_schema(), identifier=name, type='table')) -}}
{%- endmacro %}

{#- A table or column name as tables.yml allows it (letters, digits, _ and $), else a compile error that
    names the argument. -#}
{% macro default__etl_checked_name(value, what) -%}
  {%- if value is not string or not modules.re.match('^[A-Za-z_][A-Za-z0-9_$]{0,62}$', value) -%}
    {{- exceptions.raise_compiler_error("etl_tracking: " ~ what ~ " must be a plain table or column name, got " ~ (value | string)) -}}
  {%- endif -%}
  {{- return(value) -}}
{%- endmacro %}

{#- A checked name as a SQL string literal. -#}
{% macro default__etl_name_literal(value) -%}
  {%- set etl = adapter.dispatch('etl_helpers', 'etl_tracking')() -%}
  {{- return("'" ~ etl.checked_name(value, 'name') ~ "'") -}}
{%- endmacro %}
