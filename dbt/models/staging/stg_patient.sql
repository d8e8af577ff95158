{{ config(
    unique_key='pat_num',
    indexes=[{'columns': ['pat_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('patient') }}",
               "{{ etl_apply_deletes('patient', {'PatNum': 'pat_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'patient'), booleans=['PlannedIsDone', 'Premed', 'HasSuperBilling', 'HasSignedTil']) }}
from {{ source('opendental', 'patient') }}
where {{ etl_incremental_filter('patient') }}
