{#- A model's `schema` config is the schema's whole name (staging, marts), not a suffix of the target's
    schema: the analytics database reads the same for every developer pointing at it. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
