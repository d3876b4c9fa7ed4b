"""A run killed with SIGKILL (as the OOM killer does) must not block the next one.

The README's backfill command, without a daemon: the first run is killed mid-fetch while its
raw/bars step holds the slot of pool ``provider_simulator`` (one slot, dagster.yaml). Started
once the dead run has been silent for ``DEAD_RUN_GRACE_S``, the same backfill must fail the
dead run, free its slot, and finish exact.
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
import pytest

from fin_assets.dagster_internals.runs import DEAD_RUN_GRACE_S, WORKER_TAG
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.helpers import BIN, PROJECT_ROOT, dagster_home, wait_for

pytestmark = pytest.mark.slow(30)

DAY = datetime(2026, 1, 5, tzinfo=UTC)
SYMBOLS = "AAPL,MSFT,NVDA"
RANGE = "2026-01-05-00:00...2026-01-06-23:00"


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

            # A dead worker's run is failed once nothing has been heard from it for the grace
            # (fin_assets/dagster_internals/runs.py): the next backfill starts after that, not at a
            # fixed delay.
            def silent_for_the_grace() -> bool:
                last = instance.get_records_for_run(killed.run_id, ascending=False, limit=1)
                heard = last.records[0].event_log_entry.timestamp
                return time.time() - heard > DEAD_RUN_GRACE_S

            wait_for(
                "the killed run to be silent for the grace",
                silent_for_the_grace,
                timeout=DEAD_RUN_GRACE_S + 60,
                interval=0.5,
            )
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
