{{ config(
    unique_key='claim_proc_num',
    indexes=[{'columns': ['claim_proc_num'], 'unique': True}],
    post_hook=["{{ etl_record_transform('claimproc') }}",
               "{{ etl_apply_deletes('claimproc', {'ClaimProcNum': 'claim_proc_num'}) }}"],
) }}

select
  {{ opendental_staging_columns(source('opendental', 'claimproc'), booleans=['NoBillIns', 'IsTransfer', 'IsOverpay']) }}
from {{ source('opendental', 'claimproc') }}
where {{ etl_incremental_filter('claimproc') }}
