{{ config(
    unique_key='apt_num',
    indexes=[{'columns': ['apt_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('appointment') }}",
               "{{ etl_apply_deletes('appointment', {'AptNum': 'apt_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'appointment'), booleans=['TimeLocked', 'IsNewPatient', 'IsHygiene']) }}
from {{ source('opendental', 'appointment') }}
where {{ etl_incremental_filter('appointment') }}
