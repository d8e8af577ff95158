{{ config(
    unique_key='split_num',
    indexes=[{'columns': ['split_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('paysplit') }}",
               "{{ etl_apply_deletes('paysplit', {'SplitNum': 'split_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'paysplit'), booleans=['IsDiscount']) }}
from {{ source('opendental', 'paysplit') }}
where {{ etl_incremental_filter('paysplit') }}
