{#- A model's `schema` config is the schema's whole name (staging, marts), not a suffix of the target's
    schema: the analytics database reads the same for every developer pointing at it.
    ETL_DBT_SCHEMA_SUFFIX (empty unless set; `etl --clinic NAME` sets it from clinics.yml) is appended to
    every schema, so clinics sharing one analytics database build into staging_<clinic> and never share
    a model. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- set suffix = env_var('ETL_DBT_SCHEMA_SUFFIX', '') | trim -%}
  {%- if suffix and not modules.re.fullmatch('[A-Za-z0-9_]{1,30}', suffix) -%}
    {{- exceptions.raise_compiler_error("setting ETL_DBT_SCHEMA_SUFFIX: expected letters, digits and _ (up to 30), got '" ~ suffix ~ "'") -}}
  {%- endif -%}
  {%- if custom_schema_name is none -%}{{ target.schema ~ suffix }}{%- else -%}{{ (custom_schema_name | trim) ~ suffix }}{%- endif -%}
{%- endmacro %}
