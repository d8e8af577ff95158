"""etl/plan.py make_plan: strategy decisions and their reasons, watermark bounds, read order, binds."""

from __future__ import annotations

import datetime as dt

import pytest

from etl.config import TableConfig
from etl.errors import ConfigError, SchemaError
from etl.plan import Bound, Horizon, StoredState, make_plan
from etl.render import Ident
from etl.schema import Column, TableSchema

TS_UPPER = dt.datetime(2025, 6, 1, 12, 0, 0)
DT_UPPER = dt.datetime(2025, 6, 1, 14, 0, 0)
DATE_UPPER = dt.date(2025, 6, 1)
HORIZON = Horizon(timestamp_upper=TS_UPPER, datetime_upper=DT_UPPER, date_upper=DATE_UPPER,
                  integer_max={"PatNum": 5000, "AptNum": 7000})


def col(name: str, column_type: str) -> Column:
    data_type = column_type.split("(")[0].split(" ")[0]
    text = data_type in ("varchar", "char", "text")
    return Column(name=Ident(name), data_type=data_type, column_type=column_type, nullable=True, default=None,
                  extra="", charset="utf8mb4" if text else None, collation="utf8mb4_general_ci" if text else None,
                  precision=None, scale=None, char_length=255 if data_type == "varchar" else None)


PATIENT = TableSchema(schema="opendental", name=Ident("patient"), engine="MyISAM", estimated_rows=0, columns=(
    col("PatNum", "bigint(20)"),
    col("LName", "varchar(100)"),
    col("Birthdate", "date"),
    col("DateTStamp", "timestamp"),
    col("SecDateTEdit", "datetime"),
    col("Balance", "double"),
), primary_key=(Ident("PatNum"),))

APPOINTMENT = TableSchema(schema="opendental", name=Ident("appointment"), engine="MyISAM", estimated_rows=0,
                          columns=(col("AptNum", "bigint(20)"), col("DateTStamp", "timestamp"),
                                   col("AptDateTime", "datetime"), col("Note", "text")),
                          primary_key=(Ident("AptNum"),))


def config(name="patient", key=("PatNum",), incremental=("PatNum", "DateTStamp"), primary="DateTStamp",
           strategy="incremental", batch_size=1000) -> TableConfig:
    return TableConfig(name=name, primary_key=key, incremental_columns=incremental, primary_incremental_column=primary,
                       extraction_strategy=strategy, batch_size=batch_size)


def fallback_config(incremental=("AptNum", "DateTStamp", "AptDateTime")) -> TableConfig:
    return config(name="appointment", key=("AptNum",), incremental=incremental, primary=None)


STORED = StoredState(status="success", primary_column_name="DateTStamp", last_primary_value="2025-05-01 10:00:00.5")
FALLBACK_STORED = StoredState(status="success", column_values={
    "AptNum": "600", "DateTStamp": "2025-05-01 10:00:00", "AptDateTime": "2025-05-02 08:30:00"})


# --------------------------------------------------------------------------------------------------
# Strategy decisions


def test_stored_watermark_gives_primary() -> None:
    plan = make_plan("copy", config(), PATIENT, STORED, HORIZON)
    assert (plan.strategy, plan.reason) == ("primary", "stored watermark")
    assert plan.primary == Bound(Ident("DateTStamp"), "datetime", dt.datetime(2025, 5, 1, 10, 0, 0, 500000),
                                 TS_UPPER, False)
    assert plan.fallback == () and plan.warnings == ()
    assert plan.batch_size == 1000 and plan.table == "patient" and plan.key == ("PatNum",)


def test_full_table_is_full() -> None:
    plan = make_plan("copy", config(strategy="full_table"), PATIENT, STORED, HORIZON)
    assert (plan.strategy, plan.reason) == ("full", "extraction_strategy full_table")


def test_force_full() -> None:
    plan = make_plan("copy", config(), PATIENT, STORED, HORIZON, force_full=True)
    assert (plan.strategy, plan.reason) == ("full", "--full requested")


def test_a_column_added_upstream_refreshes_a_populated_target_with_its_reason_in_the_notes() -> None:
    plan = make_plan("copy", config(), PATIENT, STORED, HORIZON, refresh="column UnitQty added at the source")
    assert (plan.strategy, plan.reason) == ("full", "column UnitQty added at the source")
    assert "full refresh: column UnitQty added at the source" in plan.warnings
    forced = make_plan("copy", config(), PATIENT, STORED, HORIZON, force_full=True, refresh="column X added")
    assert forced.reason == "--full requested" and "full refresh: column X added" in forced.warnings
    assert make_plan("copy", config(), PATIENT, STORED, HORIZON).strategy == "primary"


def test_missing_target_is_full() -> None:
    plan = make_plan("load", config(), PATIENT, STORED, HORIZON, target_exists=False)
    assert (plan.strategy, plan.reason) == ("full", "target table does not exist yet")


@pytest.mark.parametrize("state", [
    StoredState(),
    StoredState(status="pending", primary_column_name="DateTStamp"),
    StoredState(status="failed", primary_column_name="DateTStamp", last_primary_value=""),
])
def test_no_stored_watermark_is_full(state: StoredState) -> None:
    plan = make_plan("copy", config(), PATIENT, state, HORIZON)
    assert (plan.strategy, plan.reason) == ("full", "no watermark recorded yet")
    assert plan.primary.lower is None


def test_changed_primary_column_is_full_and_the_old_watermark_is_not_reused() -> None:
    state = StoredState(status="success", primary_column_name="SecDateTEdit", last_primary_value="2025-05-01 10:00:00")
    plan = make_plan("copy", config(), PATIENT, state, HORIZON)
    assert plan.strategy == "full"
    assert plan.reason == ("stored primary column 'SecDateTEdit' differs from the configured 'DateTStamp'; "
                           "not reusing its watermark")
    assert plan.primary.column == "DateTStamp" and plan.primary.lower is None
    # even when primary is forced, the other column's value never becomes the lower bound
    forced = make_plan("copy", config(), PATIENT, state, HORIZON, strategy_override="primary")
    assert forced.strategy == "primary" and forced.primary.lower is None
    assert forced.window_params() == {"w0_hi": TS_UPPER}


def test_changed_primary_column_of_another_kind_is_not_parsed() -> None:
    """An integer watermark stored for PatNum is not read as a timestamp (nor raises) for DateTStamp."""
    state = StoredState(status="success", primary_column_name="PatNum", last_primary_value="4200")
    plan = make_plan("copy", config(), PATIENT, state, HORIZON)
    assert plan.strategy == "full" and plan.primary.lower is None


def test_fallback_when_primary_is_none_and_every_column_has_a_watermark() -> None:
    plan = make_plan("copy", fallback_config(), APPOINTMENT, FALLBACK_STORED, HORIZON)
    assert (plan.strategy, plan.reason) == ("fallback", "stored watermark")
    assert plan.primary is None
    assert plan.fallback == (
        Bound(Ident("AptNum"), "integer", 600, 7000, True),
        Bound(Ident("DateTStamp"), "datetime", dt.datetime(2025, 5, 1, 10), TS_UPPER, False),
        Bound(Ident("AptDateTime"), "datetime", dt.datetime(2025, 5, 2, 8, 30), DT_UPPER, False),
    )
    assert plan.bounds == plan.fallback


def test_fallback_with_one_column_watermark_missing_is_full() -> None:
    state = StoredState(status="success", column_values={"AptNum": "600", "AptDateTime": "2025-05-02 08:30:00"})
    plan = make_plan("copy", fallback_config(), APPOINTMENT, state, HORIZON)
    assert (plan.strategy, plan.reason) == ("full", "no watermark recorded yet for DateTStamp")


def test_fallback_after_a_primary_column_was_stored_is_full() -> None:
    state = StoredState(status="success", primary_column_name="DateTStamp", last_primary_value="2025-05-01 10:00:00",
                        column_values=FALLBACK_STORED.column_values)
    plan = make_plan("copy", fallback_config(), APPOINTMENT, state, HORIZON)
    assert (plan.strategy, plan.reason) == ("full", "stored primary column 'DateTStamp' is no longer configured")


def test_missing_incremental_column_is_warned_and_skipped() -> None:
    plan = make_plan("copy", fallback_config(("AptNum", "Gone", "DateTStamp")), APPOINTMENT, FALLBACK_STORED, HORIZON)
    assert plan.warnings == ("incremental column 'Gone' does not exist in appointment; skipped",)
    assert [b.column for b in plan.fallback] == ["AptNum", "DateTStamp"]
    assert plan.strategy == "fallback"


def test_non_orderable_incremental_column_is_warned_and_skipped() -> None:
    plan = make_plan("copy", fallback_config(("AptNum", "Note")), APPOINTMENT, FALLBACK_STORED, HORIZON)
    assert plan.warnings == ("incremental column 'Note' of appointment has type text, which cannot carry a "
                             "watermark; skipped",)
    assert [b.column for b in plan.fallback] == ["AptNum"]


def test_no_usable_incremental_column_is_full() -> None:
    plan = make_plan("copy", fallback_config(("Note", "Gone")), APPOINTMENT, FALLBACK_STORED, HORIZON)
    assert (plan.strategy, plan.reason) == ("full", "no usable incremental column")
    assert len(plan.warnings) == 2 and plan.bounds == ()


def test_non_orderable_primary_column_is_warned() -> None:
    plan = make_plan("copy", config(primary="LName", incremental=("PatNum",)), PATIENT,
                     StoredState(status="success", column_values={"PatNum": "10"}), HORIZON)
    assert plan.warnings == ("incremental column 'LName' of patient has type varchar(100), which cannot carry a "
                             "watermark; skipped",)
    assert plan.primary is None


def test_missing_key_column_raises_naming_table_and_column() -> None:
    with pytest.raises(SchemaError, match=r"^column 'Id' does not exist in table opendental\.patient$"):
        make_plan("copy", config(key=("Id",)), PATIENT, STORED, HORIZON)


def test_strategy_override() -> None:
    assert make_plan("copy", config(), PATIENT, STORED, HORIZON, strategy_override="full").strategy == "full"
    plan = make_plan("copy", config(), PATIENT, StoredState(), HORIZON, strategy_override="primary")
    assert (plan.strategy, plan.reason) == ("primary", "--strategy requested")
    same = make_plan("copy", config(), PATIENT, STORED, HORIZON, strategy_override="primary")
    assert (same.strategy, same.reason) == ("primary", "stored watermark")
    with pytest.raises(ConfigError, match=r"^table appointment: --strategy primary needs a primary incremental column$"):
        make_plan("copy", fallback_config(), APPOINTMENT, FALLBACK_STORED, HORIZON, strategy_override="primary")
    with pytest.raises(ConfigError, match=r"^table patient: --strategy fallback needs primary_incremental_column none$"):
        make_plan("copy", config(), PATIENT, STORED, HORIZON, strategy_override="fallback")


def test_garbage_stored_watermark_raises() -> None:
    state = StoredState(status="success", primary_column_name="DateTStamp", last_primary_value="soon")
    with pytest.raises(SchemaError, match=r"^stored watermark 'soon' is not a valid datetime$"):
        make_plan("copy", config(), PATIENT, state, HORIZON)


# --------------------------------------------------------------------------------------------------
# Bounds


def _bound(column: str, horizon: Horizon = HORIZON, phase: str = "copy") -> Bound:
    incremental = ("PatNum", "Birthdate", "DateTStamp", "SecDateTEdit")
    plan = make_plan(phase, config(primary=None, incremental=incremental), PATIENT, StoredState(), horizon)
    return next(b for b in plan.fallback if b.column == column)


def test_timestamp_columns_get_the_utc_upper_bound_exclusive() -> None:
    bound = _bound("DateTStamp")
    assert (bound.kind, bound.upper, bound.upper_inclusive) == ("datetime", TS_UPPER, False)


def test_datetime_columns_get_the_server_zone_upper_bound_exclusive() -> None:
    bound = _bound("SecDateTEdit")
    assert (bound.kind, bound.upper, bound.upper_inclusive) == ("datetime", DT_UPPER, False)


def test_date_columns_get_the_date_upper_bound_exclusive() -> None:
    bound = _bound("Birthdate")
    assert (bound.kind, bound.upper, bound.upper_inclusive) == ("date", DATE_UPPER, False)


def test_integer_columns_get_their_maximum_inclusive() -> None:
    bound = _bound("PatNum")
    assert (bound.kind, bound.upper, bound.upper_inclusive) == ("integer", 5000, True)


def test_integer_column_without_a_maximum_has_no_upper_bound() -> None:
    bound = _bound("PatNum", Horizon(timestamp_upper=TS_UPPER, datetime_upper=DT_UPPER, date_upper=DATE_UPPER))
    assert bound.upper is None and not bound.upper_set


def test_horizon_inclusive_overrides_every_kind() -> None:
    """Load phase: the copy phase's committed watermark is the upper bound, inclusive."""
    copied = {"PatNum": 4321, "DateTStamp": dt.datetime(2025, 5, 31, 23, 0, 0, 123),
              "SecDateTEdit": dt.datetime(2025, 5, 30), "Birthdate": dt.date(2025, 5, 29)}
    horizon = Horizon(timestamp_upper=TS_UPPER, datetime_upper=DT_UPPER, date_upper=DATE_UPPER,
                      integer_max={"PatNum": 5000}, inclusive=copied)
    for name, value in copied.items():
        bound = _bound(name, horizon, phase="load")
        assert (bound.upper, bound.upper_inclusive) == (value, True), name


def test_bound_admits() -> None:
    exclusive = Bound(Ident("DateTStamp"), "datetime", None, TS_UPPER, False)
    assert exclusive.admits(TS_UPPER - dt.timedelta(microseconds=1))
    assert not exclusive.admits(TS_UPPER)
    assert not exclusive.admits(TS_UPPER + dt.timedelta(seconds=1))
    assert not exclusive.admits(dt.datetime(1, 1, 1))
    assert not exclusive.admits(dt.datetime(1900, 1, 1))
    assert not exclusive.admits("0000-00-00 00:00:00")
    assert not exclusive.admits(None)
    inclusive = Bound(Ident("PatNum"), "integer", 10, 5000, True)
    assert inclusive.admits(5000) and inclusive.admits(1) and not inclusive.admits(5001)
    assert not inclusive.admits(True)
    open_ended = Bound(Ident("PatNum"), "integer", None, None)
    assert open_ended.admits(10**12)
    assert not open_ended.admits(None)


# --------------------------------------------------------------------------------------------------
# Order, lead columns, binds


def test_primary_order_puts_the_watermark_column_before_the_key() -> None:
    plan = make_plan("copy", config(), PATIENT, STORED, HORIZON)
    assert plan.order == ("DateTStamp", "PatNum")
    assert plan.lead == ("DateTStamp", "PatNum")
    assert plan.lead_kinds == ("datetime", "integer")


def test_primary_on_the_key_column_is_not_repeated() -> None:
    state = StoredState(status="success", primary_column_name="PatNum", last_primary_value="10")
    plan = make_plan("copy", config(primary="PatNum"), PATIENT, state, HORIZON)
    assert plan.order == ("PatNum",) and plan.lead == ("PatNum",)


def test_full_and_fallback_order_by_the_key_and_lead_with_the_watermark_columns() -> None:
    full = make_plan("copy", config(strategy="full_table"), PATIENT, STORED, HORIZON)
    assert full.order == ("PatNum",) and full.lead == ("PatNum", "DateTStamp")
    fallback = make_plan("copy", fallback_config(), APPOINTMENT, FALLBACK_STORED, HORIZON)
    assert fallback.order == ("AptNum",)
    assert fallback.lead == ("AptNum", "DateTStamp", "AptDateTime")
    assert fallback.lead_kinds == ("integer", "datetime", "datetime")


def test_text_key_lead_kind() -> None:
    schema = TableSchema(schema="s", name=Ident("t"), engine=None, estimated_rows=0,
                         columns=(col("Code", "varchar(10)"), col("DateTStamp", "timestamp")),
                         primary_key=(Ident("Code"),))
    state = StoredState(status="success", primary_column_name="DateTStamp", last_primary_value="2025-01-01 00:00:00")
    plan = make_plan("copy", config(name="t", key=("Code",), incremental=("DateTStamp",)), schema, state, HORIZON)
    assert plan.order == ("DateTStamp", "Code") and plan.lead_kinds == ("datetime", "text")


def test_window_params_names() -> None:
    primary = make_plan("copy", config(), PATIENT, STORED, HORIZON)
    assert primary.window_params() == {"w0_lo": dt.datetime(2025, 5, 1, 10, 0, 0, 500000), "w0_hi": TS_UPPER}
    fallback = make_plan("copy", fallback_config(), APPOINTMENT, FALLBACK_STORED, HORIZON)
    assert fallback.window_params() == {
        "w0_lo": 600, "w0_hi": 7000,
        "w1_lo": dt.datetime(2025, 5, 1, 10), "w1_hi": TS_UPPER,
        "w2_lo": dt.datetime(2025, 5, 2, 8, 30), "w2_hi": DT_UPPER,
    }
    full = make_plan("copy", config(strategy="full_table"), PATIENT, STORED, HORIZON)
    assert full.window_params() == {}


def test_window_params_leave_out_missing_bounds() -> None:
    horizon = Horizon(timestamp_upper=TS_UPPER)  # no integer maximum: AptNum has no upper bound
    plan = make_plan("copy", fallback_config(("AptNum", "DateTStamp")), APPOINTMENT, FALLBACK_STORED, horizon)
    assert set(plan.window_params()) == {"w0_lo", "w1_lo", "w1_hi"}


def test_describe() -> None:
    plan = make_plan("copy", fallback_config(("AptNum", "Gone")), APPOINTMENT, FALLBACK_STORED, HORIZON)
    assert plan.describe().splitlines() == [
        "copy appointment: strategy fallback (stored watermark)",
        "  AptNum >= 600 and <= 7000",
        "  warning: incremental column 'Gone' does not exist in appointment; skipped",
    ]
    unbounded = make_plan("copy", config(), PATIENT, StoredState(), Horizon())
    assert unbounded.describe().splitlines()[1] == "  DateTStamp >= -inf and < +inf"


def test_plan_is_pure() -> None:
    first = make_plan("copy", config(), PATIENT, STORED, HORIZON)
    assert make_plan("copy", config(), PATIENT, STORED, HORIZON) == first


def test_missing_primary_column_is_warned_and_not_planned_as_primary() -> None:
    plan = make_plan("copy", config(primary="Gone", incremental=("PatNum",)), PATIENT,
                     StoredState(status="success", primary_column_name="Gone", last_primary_value="1"), HORIZON)
    assert plan.warnings == ("incremental column 'Gone' does not exist in patient; skipped",)
    assert plan.primary is None and plan.strategy == "full"


def test_admission_params_bind_the_watermark_floor_and_the_upper_bound() -> None:
    from etl import watermark

    primary = make_plan("copy", config(), PATIENT, STORED, HORIZON)
    assert primary.admission_params() == {"m0_floor": dt.datetime(watermark.FLOOR.year, 1, 1), "m0_hi": TS_UPPER}
    fallback = make_plan("copy", fallback_config(), APPOINTMENT, FALLBACK_STORED, HORIZON)
    assert fallback.admission_params() == {  # integers have no floor
        "m0_hi": 7000, "m1_floor": dt.datetime(1901, 1, 1), "m1_hi": TS_UPPER,
        "m2_floor": dt.datetime(1901, 1, 1), "m2_hi": DT_UPPER}


# --------------------------------------------------------------------------------------------------
# Resuming past a crowded watermark second (watermark_resume), with fake counts and keys


class Target:
    """What the replica counts at a watermark value, and the last key the phase's target holds there."""

    def __init__(self, count: int, last_key: tuple | None):
        self.count, self.last_key, self.asked = count, last_key, []

    def count_at(self, value):
        self.asked.append(("count", value))
        return self.count

    def last_key_at(self, value):
        self.asked.append(("key", value))
        return self.last_key


def _resume(plan, target: Target):
    from etl.plan import watermark_resume

    return watermark_resume(plan, target.count_at, target.last_key_at)


def test_a_crowded_second_resumes_past_the_targets_last_key_typed() -> None:
    from etl.plan import RESCAN_LIMIT

    plan = make_plan("copy", config(), PATIENT, STORED, HORIZON)
    target = Target(RESCAN_LIMIT + 1, ("4242",))
    assert _resume(plan, target) == (plan.primary.lower, 4242)  # the key read as text, typed as an integer
    assert target.asked == [("count", plan.primary.lower), ("key", plan.primary.lower)]


def test_a_second_of_at_most_the_limit_is_read_again() -> None:
    from etl.plan import RESCAN_LIMIT

    plan = make_plan("copy", config(), PATIENT, STORED, HORIZON)
    target = Target(RESCAN_LIMIT, (4242,))
    assert _resume(plan, target) is None and target.asked == [("count", plan.primary.lower)]


def test_no_key_at_that_second_in_the_target_reads_it_again() -> None:
    plan = make_plan("copy", config(), PATIENT, STORED, HORIZON)
    assert _resume(plan, Target(10**6, None)) is None


@pytest.mark.parametrize("make", [
    lambda: make_plan("copy", config(), PATIENT, STORED, HORIZON, force_full=True),            # full
    lambda: make_plan("copy", fallback_config(), APPOINTMENT, FALLBACK_STORED, HORIZON),      # fallback
    lambda: make_plan("copy", config(), PATIENT, StoredState(), HORIZON,                      # no watermark yet
                      strategy_override="primary"),
    lambda: make_plan("copy", config(primary="PatNum"), PATIENT,                              # the key itself
                      StoredState(status="success", primary_column_name="PatNum", last_primary_value="10"), HORIZON),
])
def test_only_a_primary_date_or_time_watermark_that_is_not_the_key_can_resume(make) -> None:
    target = Target(10**6, (1,))
    assert _resume(make(), target) is None and target.asked == []  # nothing even asked
