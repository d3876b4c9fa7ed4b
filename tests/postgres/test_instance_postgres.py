"""The production instance (deploy/postgres/dagster.yaml) on a real PostgreSQL: runs, events,
schedule state and ticks land there, and two runs of one partition leave one consistent copy."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from unittest import mock

import dagster as dg
import psycopg2
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import TickData, TickStatus

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.postgres import PostgresWarehouse
from tests.conftest import fin_env, run_range
from tests.helpers import materialize_command, run_cli, start_cli
from tests.postgres.conftest import postgres_instance_env

HOUR = "2026-01-05-03:00"


def count(url: str, query: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query)
        return int(cur.fetchone()[0])


def test_runs_events_schedules_and_ticks_are_stored_in_postgres(
    fresh_database: str, tmp_path: Path
) -> None:
    env = postgres_instance_env(fresh_database, tmp_path / "home")
    with (
        mock.patch.dict(os.environ, env),
        MarketSimulator(SimulatorConfig(port=0)) as sim,
        dg.DagsterInstance.get() as instance,
    ):
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        defs = build_definitions(fin_env(sim, tmp_path / "data", FIN_SYMBOLS="AAPL"))
        result = run_range(defs, "bars_hourly_job", HOUR, HOUR, instance=instance)
        assert result.success
        tick = instance.create_tick(
            TickData(
                instigator_origin_id="bars_hourly_schedule-origin",
                instigator_name="bars_hourly_schedule",
                instigator_type=InstigatorType.SCHEDULE,
                status=TickStatus.SUCCESS,
                timestamp=time.time(),
                run_ids=[result.run_id],
                selector_id="bars_hourly_schedule-selector",
            )
        )
        ticks = instance.get_ticks("bars_hourly_schedule-origin", "bars_hourly_schedule-selector")
        assert [t.tick_id for t in ticks] == [tick.tick_id]
        assert ticks[0].run_ids == [result.run_id]
    # Straight from PostgreSQL, not through Dagster's cache.
    assert count(fresh_database, "SELECT count(*) FROM runs") == 1
    assert (
        count(
            fresh_database,
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
        )
        == 2
    )  # raw/bars and core/bars
    assert count(fresh_database, "SELECT count(*) FROM job_ticks") == 1


def test_schedule_state_from_the_cli_is_stored_in_postgres(
    fresh_database: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **postgres_instance_env(fresh_database, tmp_path / "home"),
        "FIN_DATA_DIR": str(tmp_path / "data"),
    }
    started = run_cli(
        # The default deployment's declared sources: crypto's hourly schedule.
        [
            *("dagster", "schedule", "start", "crypto__bars_hourly_schedule"),
            *("-m", "fin_assets.definitions"),
        ],
        env=env,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    assert (
        count(
            fresh_database,
            "SELECT count(*) FROM instigators WHERE status = 'RUNNING'",
        )
        == 1
    )


@pytest.mark.slow(15)
def test_two_concurrent_runs_of_one_partition_leave_one_consistent_copy(
    fresh_database: str, pg_url: str, tmp_path: Path
) -> None:
    """Two `dagster asset materialize` processes on the same hour, same instance, same
    PostgreSQL warehouse: afterwards exactly one complete copy, no duplicates."""
    home_env = postgres_instance_env(fresh_database, tmp_path / "home")
    with MarketSimulator(SimulatorConfig(port=0, latency_ms=100)) as sim:
        env = {
            **os.environ,
            **home_env,
            **fin_env(sim, tmp_path / "data", FIN_SYMBOLS="AAPL,MSFT"),
            "FIN_WAREHOUSE_URL": pg_url,
            # The race is between the two runs' writes, wherever their steps run: in the run's
            # own process, each run is one Python process instead of four.
            "FIN_EXECUTOR": "in_process",
        }
        cmd = materialize_command("raw/bars,core/bars", "--partition", HOUR)
        # One run of another hour first: Dagster stores the job's snapshot with a check-then-
        # insert, and two runs creating it at the same instant on a new database can collide on
        # its primary key (a Dagster race, not the one under test: the two writes of HOUR).
        warm_up = run_cli(
            materialize_command("raw/bars,core/bars", "--partition", "2026-01-05-02:00"),
            env=env,
            timeout=300,
        )
        assert warm_up.returncode == 0, warm_up.stderr[-1500:]
        procs = [
            start_cli(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        errors = [p.communicate(timeout=300)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [e[-1500:] for e in errors]
    frame = PostgresWarehouse(pg_url).read_partition("core_bars", HOUR)
    assert frame is not None
    assert frame.height == 2 * 60
    assert frame.select("symbol", "ts").is_duplicated().sum() == 0
    assert (
        count(
            pg_url,
            "SELECT count(*) FROM core_bars WHERE partition_start = '2026-01-05T03:00:00+00'",
        )
        == 120
    )


@pytest.fixture(autouse=True)
def _no_leftover_dagster_home_env() -> None:
    assert "DAGSTER_PG_DB" not in os.environ
