-- Loaded in full (full_table): a row deleted at the source leaves raw, and leaves here too.
{{ config(
    unique_key='prov_num',
    indexes=[{'columns': ['prov_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('provider') }}",
               "{{ etl_apply_deletes('provider', {'ProvNum': 'prov_num'}) }}",
               "{{ etl_delete_missing('provider', {'ProvNum': 'prov_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'provider'), booleans=[
      'IsSecondary', 'IsHidden', 'UsingTIN', 'SigOnFile', 'IsCDAnet',
      'IsNotPerson', 'IsInstructor', 'IsHiddenReport']) }}
from {{ source('opendental', 'provider') }}
where {{ etl_incremental_filter('provider') }}
