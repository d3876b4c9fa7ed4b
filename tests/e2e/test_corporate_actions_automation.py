"""An action announced after the bars were built: automation re-runs the adjusted series, with a
real dagster-daemon, and raw and unadjusted data stay as they were (issue 22).

One equities source (AAPL, AMZN on XNYS) over the simulator. Its bars and daily bars of three
sessions are built first, as the schedules would; the daemon runs the automation sensor. A
fetch of the corporate actions (the daily schedule's job) lets automation build the typed table
and the adjusted series. Then the provider publishes two actions it did not list before — a
dividend of AAPL inside the built sessions, a 2-for-1 split of AMZN after them — and the next
fetch must make automation rebuild the adjusted series with them, while the raw snapshots of
bars, core bars and daily bars are byte for byte what they were.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.conftest import RANGE_END_TAG, RANGE_START_TAG, step_failure_messages
from tests.helpers import (
    dagster_home,
    running_daemon,
    set_sensors,
    wait_for,
    wait_for_sensor_ticks,
)

pytestmark = pytest.mark.slow(100)

SYMBOLS = ("AAPL", "AMZN")
SOURCE_YAML = """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: eq
  provider: simulator
  symbols: [AAPL, AMZN]
  calendar: XNYS
  base_url: "{url}"
  partitions_start: "2026-01-12"
  max_quiet_minutes: 2
"""
ADJUSTED = dg.AssetKey(["core", "eq", "adjusted_daily_bars"])
SESSION_HOURS = ("2026-01-13-14:00", "2026-01-15-20:00")


@pytest.fixture
def simulator() -> Iterator[MarketSimulator]:
    with MarketSimulator(SimulatorConfig(port=0, calendars=dict.fromkeys(SYMBOLS, "XNYS"))) as sim:
        yield sim


def deployment(tmp_path: Path, url: str) -> dict[str, str]:
    (tmp_path / "sources" / "eq").mkdir(parents=True)
    (tmp_path / "sources" / "eq" / "defs.yaml").write_text(SOURCE_YAML.format(url=url))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FIN_")}
    return {
        **inherited,
        "DAGSTER_HOME": str(dagster_home(tmp_path / "home")),
        "FIN_SOURCES_DIR": str(tmp_path / "sources"),
        "FIN_DATA_DIR": str(tmp_path / "data"),
        "FIN_WAREHOUSE_URL": str(tmp_path / "lake"),
        "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
        "FIN_AUTOMATION_INTERVAL_SECONDS": "2",
        # Automation's runs execute their steps in their own process: one Python process per
        # run instead of one per step (the executor's own stories: test_dead_runs,
        # test_crash_recovery, test_celery).
        "FIN_EXECUTOR": "in_process",
    }


def materialize(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    select: str,
    first: str = "",
    last: str = "",
) -> None:
    """What ``dagster asset materialize --select select [--partition-range first...last]`` does,
    run in this process: the story is the daemon's, and each command would start a Python
    process per step (run_cli's cost, paid by the stories that are about the CLI)."""
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey.from_user_string(key) for key in select.split(",")],
        tags={RANGE_START_TAG: first, RANGE_END_TAG: last} if first else None,
        raise_on_error=False,
    )
    assert result.success, step_failure_messages(result)


def digests(root: Path, patterns: tuple[str, ...]) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for pattern in patterns
        for path in sorted(root.glob(pattern))
        if path.is_file()
    }


def materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dg.EventLogRecord]:
    return list(
        instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=10).records
    )


def test_an_action_announced_after_the_bars_rebuilds_the_adjusted_series_only(
    simulator: MarketSimulator, tmp_path: Path
) -> None:
    env = deployment(tmp_path, simulator.url)
    defs = build_definitions(env)  # the code location, as the daemon's code server loads it
    # As the schedules would have: three sessions of bars, then their daily bars.
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        materialize(defs, instance, "raw/eq/bars,core/eq/bars", *SESSION_HOURS)
        materialize(defs, instance, "core/eq/daily_bars", "2026-01-13", "2026-01-15")
    untouched = ("data/raw/**/bars_1m*/**/*", "data/manifests/eq__raw_bars/*", "lake/eq__core_*/*")
    before = digests(tmp_path, untouched)
    assert len(before) > 20
    set_sensors(env, stop=["eq__partition_freshness_checks_sensor"], timeout=120)
    with (
        running_daemon(env, tmp_path / "daemon.log"),
        dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
    ):
        wait_for_sensor_ticks(instance, "automation_sensor", 1, timeout=180)
        # The daily fetch of the actions (eq__corporate_actions_schedule's job).
        materialize(defs, instance, "raw/eq/corporate_actions")
        first = wait_for(
            "automation to build the adjusted series",
            lambda: materializations(instance, ADJUSTED),
            timeout=180,
            interval=1.0,
        )
        adjusted_before = pl.read_parquet(tmp_path / "lake" / "eq__core_adj_daily.parquet")
        # Published after the fact: a dividend inside the built sessions, a split after them.
        simulator.announce(
            {
                "dividends": [
                    {"ticker": "AAPL", "ex_dividend_date": "2026-01-15", "cash_amount": 2.5}
                ],
                "splits": [
                    {
                        "ticker": "AMZN",
                        "execution_date": "2026-01-22",
                        "split_from": 1,
                        "split_to": 2,
                    }
                ],
            }
        )
        materialize(defs, instance, "raw/eq/corporate_actions")
        records = wait_for(
            "automation to rebuild the adjusted series",
            lambda: (r := materializations(instance, ADJUSTED)) and len(r) > len(first) and r,
            timeout=180,
            interval=1.0,
        )
        run = instance.get_run_by_id(records[0].run_id)
        assert run is not None and run.tags.get("dagster/sensor_name") == "automation_sensor"

    adjusted = pl.read_parquet(tmp_path / "lake" / "eq__core_adj_daily.parquet")
    daily = pl.read_parquet(sorted((tmp_path / "lake" / "eq__core_daily_bars").glob("*.parquet")))
    joined = adjusted.join(adjusted_before, on=["symbol", "date"], suffix="_before")
    amzn = joined.filter(pl.col("symbol") == "AMZN")
    # Every AMZN day is on the basis after the new 2-for-1 split: half the price, twice the shares.
    assert amzn.height == 3
    for row in amzn.to_dicts():
        assert row["split_factor"] == pytest.approx(row["split_factor_before"] / 2, rel=1e-12)
        assert row["close"] == pytest.approx(row["close_before"] / 2, rel=1e-12)
        assert row["volume"] == pytest.approx(row["volume_before"] * 2, rel=1e-12)
    # AAPL's days before the new dividend's ex-date carry its ratio, 1 - 2.5 / the close before.
    aapl = joined.filter(pl.col("symbol") == "AAPL").sort("date")
    close_before = daily.filter(
        (pl.col("symbol") == "AAPL") & (pl.col("date") == date(2026, 1, 14))
    ).get_column("close")[0]
    ratio = 1 - 2.5 / close_before
    for row in aapl.to_dicts():
        expected = ratio if row["date"] < date(2026, 1, 15) else 1.0
        assert row["adj_close"] == pytest.approx(row["adj_close_before"] * expected, rel=1e-9), row
    # Nothing raw or unadjusted was touched: not a byte.
    assert digests(tmp_path, untouched) == before
