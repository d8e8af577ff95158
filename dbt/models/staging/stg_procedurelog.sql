{{ config(
    unique_key='proc_num',
    indexes=[{'columns': ['proc_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('procedurelog') }}",
               "{{ etl_apply_deletes('procedurelog', {'ProcNum': 'proc_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'procedurelog'), booleans=['IsPrincDiag', 'HideGraphics', 'IsLocked', 'IsDateProsthEst', 'IsCpoe']) }}
from {{ source('opendental', 'procedurelog') }}
where {{ etl_incremental_filter('procedurelog') }}
