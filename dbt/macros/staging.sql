{#- The select list of a staging model over raw.<table>, from the table's live columns:
    - names in snake_case (opendental_snake_case), the load marker columns kept as they are
    - OpenDental's sentinel dates (var opendental_sentinel_dates: 0001-01-01, 1900-01-01) -> NULL, for
      dates and for timestamps on those days
    - empty strings -> NULL
    - the columns named in `booleans` (the table's documented flags; an explicit list, never guessed from
      the data) -> boolean: 0 is false, anything else true
    A flag that is not an integer column is a compile error naming it; a flag the table does not have is
    left out (older OpenDental versions lack newer columns; a unit test checks every name against the
    demo catalog, so a typo does not pass unnoticed). -#}
{% macro opendental_staging_columns(relation, booleans=[]) -%}
  {%- if not execute -%}{{- return('null as parsing_only') -}}{%- endif -%}
  {%- set columns = adapter.get_columns_in_relation(relation) -%}
  {%- if not columns -%}
    {{- exceptions.raise_compiler_error(model.name ~ ": " ~ relation ~ " does not exist or has no columns: run `etl load` first") -}}
  {%- endif -%}
  {%- set by_name = {} -%}
  {%- for c in columns -%}{%- do by_name.update({c.name: c}) -%}{%- endfor -%}
  {%- for flag in booleans -%}
    {%- if flag in by_name and by_name[flag].dtype | lower not in ('smallint', 'integer', 'bigint') -%}
      {{- exceptions.raise_compiler_error(model.name ~ ": booleans: column " ~ flag ~ " of " ~ relation ~ " is "
          ~ by_name[flag].dtype ~ ", not an integer flag") -}}
    {%- endif -%}
  {%- endfor -%}
  {%- set sentinels = [] -%}
  {%- for d in var('opendental_sentinel_dates') -%}{%- do sentinels.append("date '" ~ modules.datetime.date.fromisoformat(d) ~ "'") -%}{%- endfor -%}
  {%- set seen = {} -%}
  {%- for c in columns -%}
    {%- set q = adapter.quote(c.name) -%}
    {%- set dtype = c.dtype | lower -%}
    {%- set name = c.name if c.name.startswith('_etl_') else opendental_snake_case(c.name) -%}
    {%- if name in seen -%}
      {{- exceptions.raise_compiler_error(model.name ~ ": columns " ~ seen[name] ~ " and " ~ c.name ~ " both become " ~ name) -}}
    {%- endif -%}
    {%- do seen.update({name: c.name}) -%}
    {%- if c.name.startswith('_etl_') -%}
      {%- set expr = q -%}
    {%- elif c.name in booleans -%}
      {%- set expr = '(' ~ q ~ ' <> 0)' -%}
    {%- elif dtype == 'date' -%}
      {%- set expr = 'case when ' ~ q ~ ' in (' ~ sentinels | join(', ') ~ ') then null else ' ~ q ~ ' end' -%}
    {%- elif dtype.startswith('timestamp') -%}
      {%- set expr = 'case when cast(' ~ q ~ ' as date) in (' ~ sentinels | join(', ') ~ ') then null else ' ~ q ~ ' end' -%}
    {%- elif dtype in ('character varying', 'text', 'character') -%}
      {%- set expr = "cast(nullif(" ~ q ~ ", '') as " ~ c.data_type ~ ")" -%}
    {%- else -%}
      {%- set expr = q -%}
    {%- endif %}
    {{ expr }} as {{ adapter.quote(name) }}{{ ',' if not loop.last }}
  {%- endfor -%}
{%- endmacro %}

{#- OpenDental's PascalCase to snake_case: DateTStamp -> date_t_stamp, DEANum -> dea_num,
    Bal_0_30 -> bal_0_30, Mode_ -> mode. -#}
{% macro opendental_snake_case(name) -%}
  {%- set s = modules.re.sub('([A-Z]+)([A-Z][a-z])', '\\1_\\2', name) -%}
  {%- set s = modules.re.sub('([a-z0-9])([A-Z])', '\\1_\\2', s) -%}
  {{- return(modules.re.sub('_+', '_', s).strip('_').lower()) -}}
{%- endmacro %}
