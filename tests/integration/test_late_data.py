"""A window the provider has not published yet is tried again later, never landed half-empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.conftest import fin_env, run_range, step_failure_messages

HOUR_KEY = "%Y-%m-%d-%H:00"


def last_closed_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def test_a_provider_that_catches_up_lands_the_hour_after_a_retry(tmp_path: Path) -> None:
    hour = last_closed_hour()
    # The provider's clock starts 1 h 40 min behind ours and catches up within about 12 s: the
    # first attempt finds the hour unpublished, a later one finds it complete. (It was 4 s, and
    # on a loaded machine loading the definitions alone took longer: the hour was already out.)
    lag_s = 6000.0
    config = SimulatorConfig(port=0, clock_lag_s=lag_s, clock_speed=1 + lag_s / 12)
    with MarketSimulator(config) as sim, dg.instance_for_test() as instance:
        env = fin_env(
            sim,
            tmp_path / "data",
            FIN_SYMBOLS="AAPL",
            FIN_LATE_DATA_RETRIES="30",
            FIN_LATE_DATA_RETRY_SECONDS="1",
        )
        key = hour.strftime(HOUR_KEY)
        result = run_range(build_definitions(env), "bars_hourly_job", key, key, instance=instance)
        assert result.success, step_failure_messages(result)
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert retries, "the first attempt must have found the hour unpublished"
    bars = pl.read_parquet(tmp_path / "data" / "warehouse" / "core_bars" / "*.parquet")
    assert bars.height == 60
    assert bars["ts"].min() == hour


def test_a_provider_that_stays_behind_fails_naming_its_watermark_after_the_retries(
    tmp_path: Path,
) -> None:
    hour = last_closed_hour()
    config = SimulatorConfig(port=0, now=hour + timedelta(minutes=20))
    with MarketSimulator(config) as sim, dg.instance_for_test() as instance:
        env = fin_env(
            sim,
            tmp_path / "data",
            FIN_SYMBOLS="AAPL,MSFT",
            FIN_LATE_DATA_RETRIES="2",
            FIN_LATE_DATA_RETRY_SECONDS="1",
        )
        key = hour.strftime(HOUR_KEY)
        result = run_range(build_definitions(env), "bars_hourly_job", key, key, instance=instance)
        assert not result.success
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert len(retries) == 2
        (message,) = step_failure_messages(result)
        watermark = (hour + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%MZ")
        assert f"simulator has published bars only up to {watermark}" in message, message
        assert f"partition(s) {key} are not complete" in message, message
        # Nothing landed as if it were complete.
        materialized = instance.get_materialized_partitions(dg.AssetKey(["raw", "bars"]))
        assert key not in materialized
    assert not (tmp_path / "data" / "warehouse" / "core_bars").exists()
