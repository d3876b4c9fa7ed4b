"""End to end with a real dagster-daemon: nobody launches anything.

The simulator plays a provider that publishes a day late and catches up at 120x, so a new
hourly window closes there every 30 s for 12 minutes (longer than the test), all of them in
Dagster's past. The new-data sensor fetches
them, the automation sensor builds the daily tables once a whole day has landed, the freshness
daemon evaluates 2-minute policies, and the alert sensor posts to a loopback webhook. Stopping
the simulator must produce exactly one failure alert per stale asset; bringing it back, exactly
one recovery message each.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from fin_assets.lib.alert_cursor import SENSOR_NAME
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.e2e.webhook import WebhookReceiver
from tests.helpers import (
    dagster_home,
    free_port,
    run_cli,
    start_cli,
    stop_process,
    wait_for,
    wait_for_sensor_ticks,
)

pytestmark = pytest.mark.slow(195)

STALE = ("freshness:raw/bars", "freshness:core/bars")
POLL_S = 1.0  # probes ask the Dagster instance; a new window closes only every 30 s anyway


def simulator(port: int, anchor: float) -> MarketSimulator:
    return MarketSimulator(
        SimulatorConfig(port=port, clock_lag_s=24 * 3600, clock_speed=120, clock_anchor=anchor)
    ).start()


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    home = dagster_home(tmp_path / "home")
    yield (
        {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "FIN_DATA_DIR": str(tmp_path / "data"),
            "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
            "FIN_SYMBOLS": "AAPL",
            "FIN_SENSOR_INTERVAL_SECONDS": "3",
            "FIN_AUTOMATION_INTERVAL_SECONDS": "5",
            # From the last hour of three days ago: the day before yesterday is always complete
            # in the first catch-up run, even when the sensor first looks after the next hour
            # has begun (48 + hour, read at 12:59, missed 00:00 of that day when the sensor
            # looked at 13:00), and only one hour older is fetched (or checked).
            "FIN_NEW_DATA_LOOKBACK_HOURS": str(49 + datetime.now(UTC).hour),
            "FIN_FRESHNESS_HOURLY_FAIL_MINUTES": "2",
            "FIN_FRESHNESS_HOURLY_WARN_MINUTES": "0",
            "FIN_ALERT_FORMAT": "plain",
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
        },
        home,
    )


def test_alerts_reach_the_webhook_once_on_failure_and_once_on_recovery(
    pipeline: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    base_env, home = pipeline
    port, anchor = free_port(), time.time()
    sim = simulator(port, anchor)
    log = (tmp_path / "daemon.log").open("w")
    with WebhookReceiver() as hook:
        env = {
            **base_env,
            "FIN_API_BASE_URL": f"http://127.0.0.1:{port}",
            "FIN_ALERT_WEBHOOK_URL": hook.url,
        }
        started = run_cli(
            ["dagster", "sensor", "start", "new_bars_sensor", "-m", "fin_assets.definitions"],
            env=env,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr[-2000:]
        daemon = start_cli(
            ["dagster-daemon", "run", "-m", "fin_assets.definitions"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        os.environ["DAGSTER_HOME"] = str(home)
        try:
            instance = dg.DagsterInstance.get()

            def materialized(key: list[str], partition: str | None = None) -> bool:
                parts = instance.get_materialized_partitions(dg.AssetKey(key))
                return partition in parts if partition else bool(parts)

            # 1. The latest closed windows land with no manual launch.
            wait_for(
                "raw/bars from the sensor",
                lambda: materialized(["core", "bars"]),
                timeout=180,
                interval=POLL_S,
            )
            sensor_runs = instance.get_runs(
                filters=dg.RunsFilter(tags={"dagster/sensor_name": "new_bars_sensor"})
            )
            assert sensor_runs
            # 2. The daily tables follow (two days ago is always complete in the lookback).
            day = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
            wait_for(
                f"core/daily_bars {day} by automation",
                lambda: materialized(["core", "daily_bars"], day),
                timeout=600,  # the first run fetches and checks two days hour by hour (busy host)
                interval=POLL_S,
            )
            wait_for(
                f"core/daily_returns {day} by automation",
                lambda: materialized(["core", "daily_returns"], day),
                timeout=120,
                interval=POLL_S,
            )

            # 3. The provider goes away: exactly one failure alert per stale asset. (Counted
            # from the outage on: a loaded machine may have flapped before it.)
            sim.stop()
            before = len(hook.alerts())

            def failures() -> list[dict[str, object]]:
                return [
                    a
                    for a in hook.alerts()[before:]
                    if a["kind"] == "failure" and a["key"] in STALE
                ]

            wait_for(
                "failure alerts",
                lambda: len({a["key"] for a in failures()}) == 2,
                timeout=240,
                interval=POLL_S,
            )
            # Several more ticks of the alert sensor: still no duplicate.
            wait_for_sensor_ticks(instance, SENSOR_NAME, 4, timeout=90)
            assert sorted(a["key"] for a in failures()) == sorted(STALE)
            assert all("is stale" in str(a["title"]) for a in failures())

            # 4. It comes back, data lands, exactly one recovery message per asset.
            sim = simulator(port, anchor)

            def recoveries() -> list[dict[str, object]]:
                return [
                    a
                    for a in hook.alerts()[before:]
                    if a["kind"] == "recovery" and a["key"] in STALE
                ]

            wait_for(
                "recovery alerts",
                lambda: len({a["key"] for a in recoveries()}) == 2,
                timeout=240,
                interval=POLL_S,
            )
            wait_for_sensor_ticks(instance, SENSOR_NAME, 4, timeout=90)
            assert sorted(a["key"] for a in recoveries()) == sorted(STALE)
            assert sorted(a["key"] for a in failures()) == sorted(STALE)  # none added
        finally:
            del os.environ["DAGSTER_HOME"]
            stop_process(daemon)
            log.close()
            with contextlib.suppress(RuntimeError, ValueError):
                sim.stop()
