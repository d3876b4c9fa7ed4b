"""Data-quality checks through Dagster: real runs against the loopback simulator, defects
written into the warehouse the way a bad writer (another tool, a restored backup, a hand edit)
would leave them, and declarative automation holding a day back while one of its hours fails a
blocking check.

The simulator's fault switches corrupt the transport (429s, 5xx, truncated or drifted bodies),
not the prices, and core/bars refuses bad OHLC, non-positive prices and duplicates at write time,
so corrupt rows can only reach the warehouse from outside the pipeline: that is what these
fixtures write, and what the checks are for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from fin_assets.lib.automation import daily_automation_condition
from resources.simulator.adapter import SimulatorAdapter
from resources.simulator.data import generate_bars
from resources.simulator.server import MarketSimulator
from resources.storage.parquet import ParquetWarehouse
from resources.tables.daily import aggregate_daily, daily_returns
from tests.conftest import fin_env, run_range, step_failure_messages
from tests.helpers import recorded_check_evaluations

DAY = "2026-01-05"
HOURS = [f"{DAY}-{h:02d}:00" for h in range(24)]
T3 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
BARS = dg.AssetKey(["core", "bars"])
DAILY_BARS = dg.AssetKey(["core", "daily_bars"])
DAILY_RETURNS = dg.AssetKey(["core", "daily_returns"])
BLOCKING = {"ohlc_invariants", "unique_symbol_ts", "positive_prices"}
WARN_ONLY = {"missing_minutes", "price_jumps", "frozen_prices"}
DAILY_CHECKS = {"ohlc_invariants", "unique_symbol_date", "positive_prices", "finite_returns"}


def quality_defs(
    env: dict[str, str], *, daily_condition: dg.AutomationCondition | None = None
) -> dg.Definitions:
    """The code location (definitions.py wires the quality checks and their jobs), optionally
    with another automation condition on the daily assets."""
    defs = build_definitions(env)
    if daily_condition is not None:
        defs = defs.map_resolved_asset_specs(
            func=lambda spec: spec.replace_attributes(automation_condition=daily_condition),
            selection=dg.AssetSelection.assets(DAILY_BARS, DAILY_RETURNS),
        )
    return defs


def evaluations(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, asset_key: dg.AssetKey = BARS
) -> dict[tuple[str, str | None], dg.AssetCheckEvaluation]:
    """The quality checks' evaluations (not the freshness checks') of one asset, as the
    instance recorded them for the run (the checks write them in batches, which the in-process
    result does not list)."""
    names = BLOCKING | WARN_ONLY if asset_key == BARS else DAILY_CHECKS
    return {
        (e.check_name, e.partition): e
        for e in recorded_check_evaluations(instance, result.run_id)
        if e.asset_key == asset_key and e.check_name in names
    }


def at(minute: int) -> datetime:
    return T3 + timedelta(minutes=minute)


def iso(minute: int) -> str:
    return at(minute).strftime("%Y-%m-%dT%H:%MZ")


def hit(symbol: str, first: int, last: int | None = None) -> pl.Expr:
    last = first if last is None else last
    return (pl.col("symbol") == symbol) & pl.col("ts").is_between(at(first), at(last))


def set_values(frame: pl.DataFrame, where: pl.Expr, **values: float) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(where).then(pl.lit(v, pl.Float64)).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


def high_below_low(frame: pl.DataFrame) -> pl.DataFrame:
    row = frame.filter(hit("AAPL", 14)).row(0, named=True)
    return set_values(frame, hit("AAPL", 14), high=row["low"] - 0.5)


def duplicated_rows(frame: pl.DataFrame) -> pl.DataFrame:
    copy = frame.filter(hit("MSFT", 20))
    return pl.concat([frame, copy, copy])


def non_positive(frame: pl.DataFrame) -> pl.DataFrame:
    return set_values(set_values(frame, hit("GOOG", 40), low=0.0), hit("NVDA", 41), volume=-3.0)


def dropped_minutes(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(~hit("AMZN", 10, 19))


def bad_prints(frame: pl.DataFrame) -> pl.DataFrame:
    """A quarter of an hour of MSFT prices 5% off: a jump in at 03:30 and back out at 03:45."""
    return frame.with_columns(
        pl.when(hit("MSFT", 30, 44)).then(pl.col(c) * 1.05).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close")
    )


def stale_feed(frame: pl.DataFrame) -> pl.DataFrame:
    first = frame.filter(hit("NVDA", 10)).row(0, named=True)
    return frame.with_columns(
        pl.when(hit("NVDA", 11, 29)).then(pl.lit(first[c])).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close", "volume")
    )


DEFECTS = [
    # defect, check, failing rows, symbols with counts, first offending (symbol, time)
    pytest.param(high_below_low, "ohlc_invariants", 1, {"AAPL": 1}, ("AAPL", iso(14)), id="ohlc"),
    pytest.param(duplicated_rows, "unique_symbol_ts", 2, {"MSFT": 2}, ("MSFT", iso(20)), id="dup"),
    pytest.param(
        non_positive, "positive_prices", 2, {"GOOG": 1, "NVDA": 1}, ("GOOG", iso(40)), id="price"
    ),
    pytest.param(dropped_minutes, "missing_minutes", 10, {"AMZN": 10}, ("AMZN", iso(10)), id="gap"),
    pytest.param(bad_prints, "price_jumps", 2, {"MSFT": 2}, ("MSFT", iso(30)), id="jump"),
    pytest.param(stale_feed, "frozen_prices", 19, {"NVDA": 19}, ("NVDA", iso(11)), id="frozen"),
]


@pytest.mark.parametrize(("defect", "check", "rows", "symbols", "first"), DEFECTS)
def test_each_defect_fails_its_check_naming_symbols_and_timestamps(
    sim: MarketSimulator,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    defect: Callable[[pl.DataFrame], pl.DataFrame],
    check: str,
    rows: int,
    symbols: dict[str, int],
    first: tuple[str, str],
) -> None:
    defs = quality_defs(fin_env(sim, tmp_path))
    landed = run_range(defs, "bars_hourly_job", HOURS[2], HOURS[4], instance=instance)
    assert landed.success
    clean = evaluations(instance, landed)
    assert len(clean) == 3 * 6 and all(e.passed for e in clean.values())

    wh = ParquetWarehouse(tmp_path / "warehouse")
    frame = wh.read_partition("core_bars", HOURS[3])
    assert frame is not None
    wh.replace_partition("core_bars", HOURS[3], defect(frame))

    result = run_range(defs, "core_bars_checks_job", HOURS[2], HOURS[4], instance=instance)
    found = evaluations(instance, result)
    assert len(found) == 3 * 6  # one evaluation per check and hour of the range
    failed = found[(check, HOURS[3])]
    assert not failed.passed
    blocking = check in BLOCKING
    assert failed.blocking is blocking
    assert failed.severity == (
        dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    )
    meta = {k: v.value for k, v in failed.metadata.items()}
    assert meta["partition"] == HOURS[3]
    assert meta["failing_rows"] == rows
    assert meta["failing_symbols"] == symbols
    examples = meta["examples"]
    assert isinstance(examples, list)
    assert (examples[0]["symbol"], examples[0]["at"]) == first
    assert meta["first_at"] == first[1]
    assert failed.description is not None
    assert first[0] in failed.description and first[1] in failed.description
    # It points at the materialization it judged, which is what automation compares against.
    assert failed.target_materialization_data is not None
    assert failed.target_materialization_data.run_id == landed.run_id
    # The neighbouring hours (read as context for jumps and frozen runs) still pass.
    assert found[(check, HOURS[2])].passed and found[(check, HOURS[4])].passed

    if blocking:
        assert not result.success
        messages = step_failure_messages(result)
        assert len(messages) == 1 and "blocking asset check failed" in messages[0]
        assert check in messages[0]
    else:
        # A warning is recorded and alerted on, but never fails the run.
        assert result.success


def test_checks_of_an_hour_not_in_the_warehouse_fail_and_say_so(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = quality_defs(fin_env(sim, tmp_path))
    result = run_range(defs, "core_bars_checks_job", HOURS[5], HOURS[5], instance=instance)
    assert not result.success
    found = evaluations(instance, result)
    assert {name for name, _ in found} == BLOCKING | WARN_ONLY
    for evaluation in found.values():
        assert not evaluation.passed
        assert evaluation.description is not None
        assert "not in the warehouse" in evaluation.description
        assert evaluation.target_materialization_data is None


def day_tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    adapter = SimulatorAdapter()  # the simulator's bars, mapped as core/bars maps them
    bars = pl.concat(
        adapter.parse_bars(
            json.dumps({"bars": generate_bars(s, start, start + timedelta(days=1))}).encode(),
            symbol=s,
        ).frame
        for s in ("AAPL", "MSFT", "NVDA")
    )
    return aggregate_daily(bars, day=start), daily_returns(bars, day=start)


def test_daily_checks_name_the_symbol_and_date_of_corrupt_rows(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = quality_defs(fin_env(sim, tmp_path))
    daily, returns = day_tables()
    wh = ParquetWarehouse(tmp_path / "warehouse")
    wh.replace_partition("core_daily_bars", DAY, daily)
    wh.replace_partition("core_daily_returns", DAY, returns)
    clean = run_range(defs, "daily_checks_job", DAY, DAY, instance=instance)
    assert clean.success
    passed = {
        **evaluations(instance, clean, DAILY_BARS),
        **evaluations(instance, clean, DAILY_RETURNS),
    }
    assert {name for name, _ in passed} == DAILY_CHECKS
    assert all(e.passed for e in passed.values())

    msft = pl.col("symbol") == "MSFT"
    wh.replace_partition(
        "core_daily_bars",
        DAY,
        pl.concat([daily, daily.filter(msft)]).with_columns(
            pl.when(pl.col("symbol") == "NVDA").then(0.0).otherwise(pl.col("low")).alias("low")
        ),
    )
    wh.replace_partition(
        "core_daily_returns",
        DAY,
        returns.with_columns(
            pl.when(msft).then(math.inf).otherwise(pl.col("return_oc")).alias("return_oc")
        ),
    )
    result = run_range(defs, "daily_checks_job", DAY, DAY, instance=instance)
    assert not result.success
    bars_found = evaluations(instance, result, DAILY_BARS)
    returns_found = evaluations(instance, result, DAILY_RETURNS)
    assert bars_found[("ohlc_invariants", DAY)].passed
    for evaluation, symbols, detail in (
        (bars_found[("unique_symbol_date", DAY)], {"MSFT": 1}, "2 rows with this key"),
        (bars_found[("positive_prices", DAY)], {"NVDA": 1}, "low=0.0"),
        (returns_found[("finite_returns", DAY)], {"MSFT": 1}, "return_oc=inf"),
    ):
        assert not evaluation.passed
        assert evaluation.blocking and evaluation.severity == dg.AssetCheckSeverity.ERROR
        meta = {k: v.value for k, v in evaluation.metadata.items()}
        assert meta["failing_symbols"] == symbols
        assert meta["examples"] == [{"symbol": next(iter(symbols)), "at": DAY, "detail": detail}]
    assert date.fromisoformat(DAY) == daily["date"][0]


def requested_days(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: object
) -> tuple[dict[dg.AssetKey, set[str]], object]:
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    days = {key: set(result.get_requested_partitions(key)) for key in (DAILY_BARS, DAILY_RETURNS)}
    return days, result.cursor


def test_a_failed_blocking_check_on_one_hour_keeps_its_day_from_being_requested(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    env = fin_env(sim, tmp_path)
    defs = quality_defs(env, daily_condition=daily_automation_condition())
    # Dagster's own condition, for comparison (see blocking_checks_passed_in_every_dep_partition).
    builtin = quality_defs(
        env,
        daily_condition=dg.AutomationCondition.eager().without(
            dg.AutomationCondition.in_latest_time_window()
        )
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    )
    nothing = {DAILY_BARS: set(), DAILY_RETURNS: set()}
    the_day = {DAILY_BARS: {DAY}, DAILY_RETURNS: {DAY}}
    days, cursor = requested_days(defs, instance, None)
    assert days == nothing
    _, builtin_cursor = requested_days(builtin, instance, None)

    landed = run_range(defs, "bars_hourly_job", HOURS[0], HOURS[-1], instance=instance)
    assert landed.success
    wh = ParquetWarehouse(tmp_path / "warehouse")
    frame = wh.read_partition("core_bars", HOURS[3])
    assert frame is not None
    wh.replace_partition("core_bars", HOURS[3], duplicated_rows(frame))
    checked = run_range(defs, "core_bars_checks_job", HOURS[3], HOURS[3], instance=instance)
    assert not checked.success
    assert not evaluations(instance, checked)[("unique_symbol_ts", HOURS[3])].passed

    # 23 hours passed, one failed: the day waits.
    days, cursor = requested_days(defs, instance, cursor)
    assert days == nothing
    # all_deps_blocking_checks_passed() maps passing hours down to their day, so any one
    # passing hour lets the day through: it does not hold a daily asset back.
    builtin_days, _ = requested_days(builtin, instance, builtin_cursor)
    assert builtin_days == the_day

    # Rebuilding the hour from its snapshots (no request) brings clean data; its checks pass.
    requests = sim.stats()["requests"]
    fixed = run_range(defs, "bars_hourly_job", HOURS[3], HOURS[3], instance=instance)
    assert fixed.success
    assert sim.stats()["requests"] == requests
    assert all(e.passed for e in evaluations(instance, fixed).values())
    days, cursor = requested_days(defs, instance, cursor)
    assert days == the_day
