-- Loaded in full (full_table): a row deleted at the source leaves raw, and leaves here too.
{{ config(
    unique_key='def_num',
    indexes=[{'columns': ['def_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('definition') }}",
               "{{ etl_apply_deletes('definition', {'DefNum': 'def_num'}) }}",
               "{{ etl_delete_missing('definition', {'DefNum': 'def_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'definition'), booleans=['IsHidden']) }}
from {{ source('opendental', 'definition') }}
where {{ etl_incremental_filter('definition') }}
