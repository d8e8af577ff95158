{{ config(
    unique_key='pay_num',
    indexes=[{'columns': ['pay_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('payment') }}",
               "{{ etl_apply_deletes('payment', {'PayNum': 'pay_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'payment'), booleans=['IsSplit', 'IsRecurringCC', 'IsCcCompleted']) }}
from {{ source('opendental', 'payment') }}
where {{ etl_incremental_filter('payment') }}
