{{ config(
    unique_key='commlog_num',
    indexes=[{'columns': ['commlog_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('commlog') }}",
               "{{ etl_apply_deletes('commlog', {'CommlogNum': 'commlog_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'commlog'), booleans=['SigIsTopaz']) }}
from {{ source('opendental', 'commlog') }}
where {{ etl_incremental_filter('commlog') }}
