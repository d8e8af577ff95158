{#- Where the ETL keeps its tables: the raw schema of the database dbt runs on. Every name used here is
    checked to be a plain identifier first, then quoted by the adapter. -#}

{% macro etl_raw_schema() -%}
  {{- return(etl_checked_name(var('etl_raw_schema', env_var('ETL_RAW_SCHEMA', 'raw')), 'var etl_raw_schema')) -}}
{%- endmacro %}

{#- raw.<table>: the table the load phase writes, with its load marker "_etl_load_id". -#}
{% macro etl_raw_relation(source_table) -%}
  {{- return(api.Relation.create(database=target.database, schema=etl_raw_schema(),
                                 identifier=etl_checked_name(source_table, 'source_table'), type='table')) -}}
{%- endmacro %}

{#- raw.etl_transform_status, raw.etl_run_history, raw.etl_load_status (owned by the ETL's migrations). -#}
{% macro etl_tracking_relation(name) -%}
  {{- return(api.Relation.create(database=target.database, schema=etl_raw_schema(), identifier=name,
                                 type='table')) -}}
{%- endmacro %}

{#- A table or column name as tables.yml allows it (letters, digits, _ and $), else a compile error that
    names the argument. -#}
{% macro etl_checked_name(value, what) -%}
  {%- if value is not string or not modules.re.match('^[A-Za-z_][A-Za-z0-9_$]{0,62}$', value) -%}
    {{- exceptions.raise_compiler_error("etl_tracking: " ~ what ~ " must be a plain table or column name, got " ~ (value | string)) -}}
  {%- endif -%}
  {{- return(value) -}}
{%- endmacro %}

{#- A checked name as a SQL string literal. -#}
{% macro etl_name_literal(value) -%}
  {{- return("'" ~ etl_checked_name(value, 'name') ~ "'") -}}
{%- endmacro %}
