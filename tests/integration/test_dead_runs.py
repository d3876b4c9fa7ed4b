"""A run killed with SIGKILL (as the OOM killer does) must not block the next one.

The README's backfill command, without a daemon: the first run is killed mid-fetch while its
raw/bars step holds the slot of pool ``provider_simulator`` (one slot, dagster.yaml). Started
60 s later, the same backfill must fail the dead run, free its slot, and finish exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from fin_assets.runs import WORKER_TAG
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.helpers import BIN, PROJECT_ROOT, dagster_home, wait_for

DAY = datetime(2026, 1, 5, tzinfo=UTC)
SYMBOLS = "AAPL,MSFT,NVDA"
RANGE = "2026-01-05-00:00...2026-01-06-23:00"
RESTART_AFTER_S = 60


def backfill_command() -> list[str]:
    return [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "fin_assets.definitions",
        "--select",
        "raw/bars,core/bars",
        "--partition-range",
        RANGE,
    ]


def test_a_backfill_started_after_a_sigkilled_one_finishes_exact(tmp_path: Path) -> None:
    home = dagster_home(tmp_path / "dagster_home")
    config = SimulatorConfig(port=0, page_limit_max=60, latency_ms=400)
    with MarketSimulator(config) as sim:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "FIN_API_BASE_URL": sim.url,
            "FIN_SYMBOLS": SYMBOLS,
            "FIN_DATA_DIR": str(tmp_path / "data"),
        }
        # Its own session: SIGKILL reaches the run worker and its step processes, as a kill of
        # the service's cgroup does.
        first = subprocess.Popen(
            backfill_command(),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for(
                "the first backfill to be fetching",
                lambda: sim.stats()["requests_by_path"].get("/v1/bars", 0) >= 5,
                timeout=120,
                interval=0.2,
            )
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)

        with dg.DagsterInstance.from_config(str(home)) as instance:
            (killed,) = instance.get_runs()
            assert killed.status == dg.DagsterRunStatus.STARTED  # as it was left: the bug
            assert WORKER_TAG in killed.tags
            holders = instance.event_log_storage.get_concurrency_run_ids()
            assert killed.run_id in holders  # and its pool slot still taken

        time.sleep(RESTART_AFTER_S)
        sim.set_faults({}, latency_ms=0)
        second = subprocess.run(
            backfill_command(),
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 0, second.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = {run.run_id: run for run in instance.get_runs()}
        assert runs[killed.run_id].status == dg.DagsterRunStatus.FAILURE
        failure = instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "worker of this run" in (failure[-1].dagster_event.message or "")
        assert instance.event_log_storage.get_concurrency_run_ids() == set()

    bars = pl.scan_parquet(tmp_path / "data" / "warehouse" / "core_bars" / "*.parquet").collect()
    assert bars.height == 2 * 24 * 60 * 3
    assert bars.select("symbol", "ts").is_duplicated().sum() == 0
    assert bars["ts"].min() == DAY
    assert bars["ts"].max() == DAY + timedelta(days=2) - timedelta(minutes=1)
