"""Crash recovery with the real services on the PostgreSQL instance: a code server, a
dagster-daemon, a run launched through the queue; its run worker is SIGKILLed mid-step (what
an OOM kill does). Run monitoring must mark the run failed, run retries must start it again,
and the partition must end materialized — with nobody touching anything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.parquet import ParquetWarehouse
from tests.conftest import fin_env
from tests.helpers import descendants, free_port, run_cli, start_cli, stop_process, wait_for
from tests.postgres.conftest import postgres_instance_env

pytestmark = pytest.mark.slow(40)

HOUR = "2026-01-05-03:00"
POLL_S = 0.5  # every probe here asks the Dagster instance


@pytest.fixture
def services(fresh_database: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """Simulator (slow answers, so the step is long enough to kill), code server, daemon."""
    home_env = postgres_instance_env(fresh_database, tmp_path / "home")
    # The production file, with the monitoring poll shortened so the test is quick.
    config_path = tmp_path / "home" / "dagster.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 2
    config["run_monitoring"]["free_slots_after_run_end_seconds"] = 5
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "grpc_server": {
                            "host": "127.0.0.1",
                            "port": port,
                            "location_name": "fin_assets",
                        }
                    }
                ]
            }
        )
    )
    with MarketSimulator(SimulatorConfig(port=0, latency_ms=1500)) as sim:
        env = {
            **os.environ,
            **home_env,
            **fin_env(sim, tmp_path / "data", FIN_SYMBOLS="AAPL,MSFT,NVDA"),
        }
        logs = tmp_path / "logs"
        logs.mkdir()
        code_log, daemon_log = (logs / "code.log").open("w"), (logs / "daemon.log").open("w")
        procs = [
            start_cli(
                [
                    "dagster",
                    "code-server",
                    "start",
                    "-m",
                    "fin_assets.definitions",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                env=env,
                stdout=code_log,
                stderr=subprocess.STDOUT,
            )
        ]
        try:
            wait_for("the code server", lambda: _listening(port), timeout=90, interval=POLL_S)
            procs.append(
                start_cli(
                    ["dagster-daemon", "run", "-w", str(workspace)],
                    env=env,
                    stdout=daemon_log,
                    stderr=subprocess.STDOUT,
                )
            )
            yield env, workspace
        finally:
            for proc in reversed(procs):  # the daemon first, then the code server it uses
                stop_process(proc)
            code_log.close()
            daemon_log.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_run_worker_killed_mid_step_is_failed_retried_and_the_partition_lands(
    services: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, workspace = services
    launched = run_cli(
        [
            "dagster",
            "job",
            "launch",
            "-w",
            str(workspace),
            "-j",
            "bars_hourly_job",
            "--tags",
            '{"dagster/partition": "' + HOUR + '"}',
        ],
        env=env,
        timeout=120,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    os.environ.update({k: v for k, v in env.items() if k.startswith(("DAGSTER_",))})
    try:
        instance = dg.DagsterInstance.get()
        # The launched run, not one the daemon's sensors start meanwhile (a freshness check's).
        first = wait_for(
            "the run",
            lambda: instance.get_runs(filters=dg.RunsFilter(job_name="bars_hourly_job"), limit=1),
            timeout=30,
            interval=POLL_S,
        )[0]

        def step_started_pid() -> int | None:
            pid = None
            started = False
            for entry in instance.all_logs(first.run_id):
                message = entry.user_message or ""
                found = re.search(r"executor: parent process \(pid: (\d+)\)", message)
                if found:
                    pid = int(found.group(1))
                if entry.step_key == "raw__bars" and "STEP_START" in str(entry.dagster_event_type):
                    started = True
            return pid if started else None

        try:
            pid = wait_for(
                "raw/bars to start in the run worker", step_started_pid, timeout=90, interval=POLL_S
            )
        except AssertionError:
            for entry in instance.all_logs(first.run_id):
                print("EVENT", entry.dagster_event_type, entry.step_key, entry.user_message[:200])
            print("DAEMON", (tmp_path / "logs" / "daemon.log").read_text()[-3000:])
            print("CODE", (tmp_path / "logs" / "code.log").read_text()[-3000:])
            raise
        time.sleep(1.0)  # mid-step: 3 symbols x 1.5 s per request
        # What an OOM kill of the worker's cgroup does: the run worker and its step processes.
        for victim in [pid, *descendants(pid)]:
            os.kill(victim, signal.SIGKILL)

        failed = wait_for(
            "run monitoring to mark the run failed",
            lambda: (
                (r := instance.get_run_by_id(first.run_id))
                and r.status == dg.DagsterRunStatus.FAILURE
                and r
            ),
            timeout=120,
            interval=POLL_S,
        )
        assert failed.status == dg.DagsterRunStatus.FAILURE

        def retried_success() -> dg.DagsterRun | None:
            for run in instance.get_runs(
                filters=dg.RunsFilter(tags={"dagster/parent_run_id": first.run_id})
            ):
                if run.status == dg.DagsterRunStatus.SUCCESS:
                    return run
            return None

        try:
            retry = wait_for(
                "the automatic retry to succeed", retried_success, timeout=150, interval=POLL_S
            )
        except AssertionError:
            for run in instance.get_runs(limit=5):
                print("RUN", run.run_id[:8], run.status, dict(run.tags))
            log = (tmp_path / "logs" / "daemon.log").read_text()
            print("DAEMON", "\n".join(x for x in log.splitlines() if "Monitoring" not in x)[-4000:])
            raise
        assert retry.tags.get("dagster/partition") == HOUR
        materialized = instance.get_materialized_partitions(dg.AssetKey(["core", "bars"]))
        assert HOUR in materialized
    finally:
        for key in [k for k in os.environ if k.startswith("DAGSTER_")]:
            del os.environ[key]
    frame = ParquetWarehouse(tmp_path / "data" / "warehouse").read_partition("core_bars", HOUR)
    assert frame is not None and frame.height == 3 * 60
