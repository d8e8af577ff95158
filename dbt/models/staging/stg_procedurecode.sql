{{ config(
    unique_key='code_num',
    indexes=[{'columns': ['code_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('procedurecode') }}",
               "{{ etl_apply_deletes('procedurecode', {'CodeNum': 'code_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'procedurecode'), booleans=[
      'NoBillIns', 'IsProsth', 'IsHygiene', 'IsTaxed', 'IsCanadianLab',
      'PreExisting', 'IsMultiVisit', 'IsRadiology', 'AreaAlsoToothRange']) }}
from {{ source('opendental', 'procedurecode') }}
where {{ etl_incremental_filter('procedurecode') }}
