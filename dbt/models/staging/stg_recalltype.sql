-- Loaded in full (full_table): a row deleted at the source leaves raw, and leaves here too.
{{ config(
    unique_key='recall_type_num',
    indexes=[{'columns': ['recall_type_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('recalltype') }}",
               "{{ etl_apply_deletes('recalltype', {'RecallTypeNum': 'recall_type_num'}) }}",
               "{{ etl_delete_missing('recalltype', {'RecallTypeNum': 'recall_type_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'recalltype'), booleans=['AppendToSpecial']) }}
from {{ source('opendental', 'recalltype') }}
where {{ etl_incremental_filter('recalltype') }}
