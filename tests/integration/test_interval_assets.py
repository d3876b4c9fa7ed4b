"""The interval bars as assets: built in the core/bars step from the frame it holds, checked in
its check step (gaps in session time included), and rebuilt alone from core/bars when only they
are selected.

A NYSE source on the loopback simulator, Friday 2026-01-16: the session is 14:30-21:00 UTC, so
its hourly partitions 14:00 .. 20:00 hold bars, and the 14:00 partition's 5m windows start at
14:30 while its 1h bar (labelled 14:00 UTC, 9:00 ET, as Massive labels it) holds 14:30-14:59.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator
from resources.storage.parquet import ParquetWarehouse
from resources.tables.intervals import aggregate_bars
from tests.conftest import run_range
from tests.helpers import recorded_check_evaluations

SOURCE = "nyse"
DAY = "2026-01-16"
OPEN_HOUR, LAST_HOUR = f"{DAY}-14:00", f"{DAY}-20:00"
SYMBOLS = ("AAPL", "MSFT")
SOURCE_YAML = """type: fin_assets.lib.components.MarketDataSource
attributes:
  name: nyse
  provider: simulator
  calendar: XNYS
  symbols: [AAPL, MSFT]
  base_url: {url}
  partitions_start: "2026-01-01"
  intervals: [5m, 1h]
"""
SESSION = (datetime(2026, 1, 16, 14, 30, tzinfo=UTC), datetime(2026, 1, 16, 21, tzinfo=UTC))
CORE = dg.AssetKey(["core", SOURCE, "bars"])
FIVE = dg.AssetKey(["core", SOURCE, "bars_5m"])
HOUR = dg.AssetKey(["core", SOURCE, "bars_1h"])


@pytest.fixture
def defs(sim: MarketSimulator, tmp_path: Path) -> dg.Definitions:
    (tmp_path / "sources" / SOURCE).mkdir(parents=True)
    (tmp_path / "sources" / SOURCE / "defs.yaml").write_text(SOURCE_YAML.format(url=sim.url))
    return build_definitions(
        {
            "FIN_SOURCES_DIR": str(tmp_path / "sources"),
            "FIN_DATA_DIR": str(tmp_path / "data"),
            "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
        }
    )


def table(tmp_path: Path, base: str) -> pl.DataFrame:
    wh = ParquetWarehouse(tmp_path / "data" / "warehouse")
    keys = wh.partition_keys(f"{SOURCE}__{base}")
    return wh.scan(f"{SOURCE}__{base}", keys).collect().sort("symbol", "ts")


def materialized(instance: dg.DagsterInstance, run_id: str) -> dict[dg.AssetKey, list[str]]:
    """Partitions materialized by the run, per asset."""
    found: dict[dg.AssetKey, list[str]] = {}
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records:
        event = record.event_log_entry.dagster_event
        assert event is not None and event.asset_key is not None
        found.setdefault(event.asset_key, []).append(str(event.partition))
    return found


def test_interval_bars_are_built_checked_and_rebuilt_with_core_bars(
    defs: dg.Definitions, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    landed = run_range(defs, "nyse__bars_hourly_job", OPEN_HOUR, LAST_HOUR, instance=instance)
    assert landed.success
    hours = [f"{DAY}-{h}:00" for h in range(14, 21)]
    # One step built the three tables: a materialization per asset and hour, no step of their own.
    assert {key: sorted(p) for key, p in materialized(instance, landed.run_id).items()} == {
        dg.AssetKey(["raw", SOURCE, "bars"]): hours,
        CORE: hours,
        FIVE: hours,
        HOUR: hours,
    }
    steps = {e.step_key for e in landed.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert not any("bars_5m" in str(step) or "bars_1h" in str(step) for step in steps), steps

    minutes = table(tmp_path, "core_bars")
    five, hourly = table(tmp_path, "core_bars_5m"), table(tmp_path, "core_bars_1h")
    assert set(five["symbol"]) == set(SYMBOLS)
    # The 6.5-hour session: 78 windows of 5 minutes and 7 hour bars per symbol.
    assert five.height == 78 * 2 and hourly.height == 7 * 2
    assert hourly["ts"].dt.strftime("%H:%M").unique().sort().to_list() == [
        f"{h}:00" for h in range(14, 21)
    ]
    # The hour bars are the session minutes' own aggregation, in the same step (the simulator
    # also serves the hour before the open, as Massive serves pre-market minutes; core/bars
    # keeps them, session bars leave them out).
    assert minutes["ts"].min() == SESSION[0] - timedelta(minutes=30)
    assert_frame_equal(hourly, aggregate_bars(minutes, minutes=60, sessions=[SESSION]))
    assert hourly.filter(pl.col("ts").dt.hour() == 14)["bar_count"].to_list() == [30, 30]

    # Every interval check ran once over the run's hours, gaps in session time included, and
    # passed: one evaluation per check and run, pointing at the run's last hour.
    evaluations = [
        e
        for e in recorded_check_evaluations(instance, landed.run_id)
        if e.asset_key in (FIVE, HOUR) and e.check_name != "freshness_check"
    ]
    names = {"ohlc_invariants", "unique_symbol_ts", "positive_prices", "missing_bars"}
    assert sorted((e.asset_key.to_user_string(), e.check_name) for e in evaluations) == sorted(
        (key.to_user_string(), name) for key in (FIVE, HOUR) for name in names
    )
    for evaluation in evaluations:
        assert evaluation.passed, evaluation.description
        meta = {k: v.value for k, v in evaluation.metadata.items()}
        assert (meta["first_partition"], meta["last_partition"]) == (OPEN_HOUR, LAST_HOUR)
        assert meta["rows_checked"] > 0
        target = evaluation.target_materialization_data
        assert target is not None and target.run_id == landed.run_id
    gaps = {e.asset_key: e for e in evaluations if e.check_name == "missing_bars"}
    assert gaps[FIVE].metadata["rows_checked"].value == 78 * 2

    # A bad writer drops two 5m windows of AAPL at 15:00 UTC: the gap check names them.
    wh = ParquetWarehouse(tmp_path / "data" / "warehouse")
    hour = f"{DAY}-15:00"
    frame = wh.read_partition(f"{SOURCE}__core_bars_5m", hour)
    assert frame is not None
    dropped = (pl.col("symbol") == "AAPL") & pl.col("ts").dt.minute().is_in([10, 15])
    wh.replace_partition(f"{SOURCE}__core_bars_5m", hour, frame.filter(~dropped))
    checked = run_range(defs, "nyse__core_bars_checks_job", hour, hour, instance=instance)
    assert checked.success  # a gap is a warning, never a failed run
    gap = {
        e.check_name: e
        for e in recorded_check_evaluations(instance, checked.run_id)
        if e.asset_key == FIVE
    }["missing_bars"]
    assert not gap.passed and gap.severity == dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in gap.metadata.items()}
    assert meta["failing_symbols"] == {"AAPL": 2}
    assert meta["examples"] == [
        {
            "symbol": "AAPL",
            "at": "2026-01-16T15:10Z",
            "detail": "2 5m window(s) without a bar, through 2026-01-16T15:15Z",
        }
    ]

    # Only the 1h table selected: rebuilt from core/bars in the warehouse, core/bars untouched.
    for path in (tmp_path / "data" / "warehouse" / f"{SOURCE}__core_bars_1h").iterdir():
        path.unlink()
    job = dg.define_asset_job("hourly_only", selection=dg.AssetSelection.assets(HOUR))
    only = (
        dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        .resolve_job_def("hourly_only")
        .execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": OPEN_HOUR,
                "dagster/asset_partition_range_end": LAST_HOUR,
            },
            raise_on_error=False,
        )
    )
    assert only.success
    assert set(materialized(instance, only.run_id)) == {HOUR}
    assert_frame_equal(table(tmp_path, "core_bars_1h"), hourly)
