"""A window the provider has not published yet is tried again later, never landed half-empty."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.conftest import fin_env, run_range, step_failure_messages
from tests.helpers import (
    dagster_home,
    materialize_command,
    run_started_in,
    start_cli,
    step_processes,
    stop_process,
    tree_cpu_s,
    wait_for,
)

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


# The late-data wait of the CPU test: long enough to measure, short enough for the suite.
WAIT_S = 12


@pytest.mark.slow(25)
def test_waiting_for_a_lagging_provider_costs_no_cpu_and_holds_no_slot(tmp_path: Path) -> None:
    """The README's backfill command on an hour the provider has not finished publishing: the
    step asks to be tried again in WAIT_S, and while it waits the command and its step
    processes cost under 5 % of a core (Dagster's multiprocess executor spun a whole core:
    592 s of CPU in 600 s) and hold no pool slot; the run then fails naming the watermark."""
    hour = last_closed_hour()
    config = SimulatorConfig(port=0, now=hour + timedelta(minutes=20))
    home = dagster_home(tmp_path / "dagster_home")
    key = hour.strftime(HOUR_KEY)
    with MarketSimulator(config) as sim, (tmp_path / "cli.log").open("w") as log:
        env = {
            **os.environ,
            **fin_env(sim, tmp_path / "data", FIN_SYMBOLS="AAPL"),
            "DAGSTER_HOME": str(home),
            "FIN_LATE_DATA_RETRIES": "1",
            "FIN_LATE_DATA_RETRY_SECONDS": str(WAIT_S),
        }
        cli = start_cli(
            materialize_command("raw/bars,core/bars", "--partition", key),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def started_or_ended() -> bool:  # one that ended is reported with its output below
                return run_started_in(home) or cli.poll() is not None

            wait_for("the run to start", started_or_ended, timeout=120, interval=0.5)
            with dg.DagsterInstance.from_config(str(home)) as instance:

                def waiting_for_retry() -> dg.EventLogRecord | None:
                    """The step's request to be tried again, once its process has exited."""
                    if cli.poll() is not None:
                        log.flush()
                        tail = (tmp_path / "cli.log").read_text()[-3000:]
                        raise AssertionError(f"the command ended before its retry:\n{tail}")
                    (run,) = instance.get_runs()
                    records = instance.get_records_for_run(
                        run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
                    ).records
                    return records[0] if records and not step_processes(cli.pid) else None

                retry = wait_for(
                    "the step to wait for its retry", waiting_for_retry, timeout=120, interval=0.5
                )
                run_id = retry.event_log_entry.run_id
                # The window: from here to a second before the retry is due (its start-up,
                # importing Dagster again, is work, not waiting).
                due = retry.event_log_entry.timestamp + WAIT_S
                began, cpu_before = time.time(), tree_cpu_s(cli.pid)
                time.sleep(max(0.0, due - 1.0 - time.time()))
                waited, cpu = time.time() - began, tree_cpu_s(cli.pid) - cpu_before
                holders = instance.event_log_storage.get_concurrency_run_ids()
                assert cli.poll() is None, "the command ended before its retry"
                assert waited > WAIT_S / 2, f"only {waited:.1f} s of the wait measured"
                assert cpu < 0.05 * waited, (
                    f"{cpu:.2f} s of CPU in {waited:.1f} s of waiting ({cpu / waited:.0%} of a "
                    "core)"
                )
                # Waiting for the provider, the step holds no slot of its provider's pool.
                assert run_id not in holders

                assert cli.wait(timeout=120) != 0
                run = instance.get_run_by_id(run_id)
                assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
                failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
                messages = [f.dagster_event.step_failure_data.error.message for f in failures]
                watermark = (hour + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%MZ")
                assert any(f"published bars only up to {watermark}" in m for m in messages), (
                    messages
                )
                # Nothing landed as if it were complete.
                assert key not in instance.get_materialized_partitions(dg.AssetKey(["raw", "bars"]))
                assert instance.event_log_storage.get_concurrency_run_ids() == set()
        finally:
            stop_process(cli)
    assert not (tmp_path / "data" / "warehouse" / "core_bars").exists()
