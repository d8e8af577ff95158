{{ config(
    unique_key='security_log_num',
    indexes=[{'columns': ['security_log_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('securitylog') }}",
               "{{ etl_apply_deletes('securitylog', {'SecurityLogNum': 'security_log_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'securitylog'), booleans=[]) }}
from {{ source('opendental', 'securitylog') }}
where {{ etl_incremental_filter('securitylog') }}
