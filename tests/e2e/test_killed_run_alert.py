"""End to end with a real dagster-daemon: a run worker SIGKILLed mid-step (what the kernel's OOM
killer does) is reported as "killed", not as a failure, exactly once; and once the automatic
retry (run retries, dagster.yaml) has landed the same partition, exactly one recovery follows.

The run is launched through the queue, so the daemon's code server starts its worker and, when
the worker dies, records the signal; the alert sensor names run, partition and signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from fin_assets.dagster_internals.runs import WORKER_TAG
from fin_assets.lib.alert_cursor import SENSOR_NAME
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.e2e.webhook import WebhookReceiver
from tests.helpers import (
    dagster_home,
    descendants,
    run_cli,
    running_daemon,
    wait_for,
    wait_for_sensor_ticks,
)

pytestmark = pytest.mark.slow(40)

HOUR = "2026-01-05-03:00"
POLL_S = 0.5  # every probe asks the Dagster instance


@pytest.fixture
def instance_home(tmp_path: Path) -> Iterator[Path]:
    home = dagster_home(tmp_path / "home")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        yield home
    finally:
        del os.environ["DAGSTER_HOME"]


def test_a_sigkilled_run_worker_is_one_killed_alert_then_one_recovery(
    instance_home: Path, tmp_path: Path
) -> None:
    # Slow answers and small pages: the raw/bars step takes seconds, long enough to kill.
    config = SimulatorConfig(port=0, page_limit_max=20, latency_ms=700)
    with MarketSimulator(config) as sim, WebhookReceiver() as hook:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(instance_home),
            "FIN_API_BASE_URL": sim.url,
            "FIN_SYMBOLS": "AAPL,MSFT,NVDA",
            "FIN_DATA_DIR": str(tmp_path / "data"),
            "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
            "FIN_ALERT_WEBHOOK_URL": hook.url,
            "FIN_ALERT_FORMAT": "plain",
            "FIN_SENSOR_INTERVAL_SECONDS": "2",
        }
        with running_daemon(env, tmp_path / "daemon.log"):
            try:
                instance = dg.DagsterInstance.get()

                def alert_sensor_ticked() -> bool:
                    return any(
                        state.instigator_name == SENSOR_NAME
                        and getattr(state.instigator_data, "cursor", None)
                        for state in instance.all_instigator_state()
                    )

                # The alert sensor starts at the present: let it see the instance before the kill.
                wait_for(
                    "the alert sensor's first tick", alert_sensor_ticked, timeout=120, interval=1
                )
                launched = run_cli(
                    [
                        *("dagster", "job", "launch", "-m", "fin_assets.definitions"),
                        *("-j", "bars_hourly_job", "--tags", f'{{"dagster/partition": "{HOUR}"}}'),
                    ],
                    env=env,
                    timeout=120,
                )
                assert launched.returncode == 0, launched.stderr[-2000:]
                run = wait_for("the run", lambda: instance.get_runs(limit=1), timeout=30)[0]

                def worker_pid() -> int | None:
                    current = instance.get_run_by_id(run.run_id)
                    worker = current.tags.get(WORKER_TAG) if current else None
                    return int(worker.rsplit(":", 2)[1]) if worker else None

                pid = wait_for("the run worker", worker_pid, timeout=120, interval=POLL_S)
                wait_for(
                    "raw/bars to be fetching",
                    lambda: sim.stats()["requests_by_path"].get("/v1/bars", 0) >= 2,
                    timeout=120,
                    interval=0.1,
                )
                # The OOM killer's way: SIGKILL, no warning; the step processes go with the worker.
                for victim in [pid, *descendants(pid)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                sim.set_faults({}, latency_ms=0)

                key = f"killed:{run.run_id}"

                def about_the_run(kind: str) -> list[dict[str, object]]:
                    return [a for a in hook.alerts() if a["key"] == key and a["kind"] == kind]

                (killed,) = wait_for(
                    "the killed alert",
                    lambda: about_the_run("killed"),
                    timeout=120,
                    interval=POLL_S,
                )
                facts = killed["facts"]
                assert facts["run_id"] == run.run_id  # type: ignore[index]
                assert facts["partitions"] == HOUR  # type: ignore[index]
                assert facts["signal"] == "SIGKILL (9)"  # type: ignore[index]
                for said in (run.run_id[:8], HOUR, "SIGKILL"):
                    assert said in str(killed["title"])
                assert run.run_id in str(killed["detail"])

                def retried() -> dg.DagsterRun | None:
                    retries = instance.get_runs(
                        filters=dg.RunsFilter(tags={"dagster/parent_run_id": run.run_id})
                    )
                    return next(
                        (r for r in retries if r.status == dg.DagsterRunStatus.SUCCESS), None
                    )

                # The retry launches, fetches and builds its hour: minutes under a whole
                # `make test` on a slow host. (It once never came: the dead-run reaper failed it
                # over the worker tag copied from this run; runs.py:_inherited.)
                retry = wait_for("the automatic retry", retried, timeout=600, interval=POLL_S)
                assert retry.tags.get("dagster/partition") == HOUR
                (recovery,) = wait_for(
                    "the recovery", lambda: about_the_run("recovery"), timeout=180, interval=POLL_S
                )
                assert HOUR in str(recovery["title"])
                # Three more ticks of the alert sensor: nothing said twice.
                wait_for_sensor_ticks(instance, SENSOR_NAME, 3, timeout=60)
                assert len(about_the_run("killed")) == 1 and len(about_the_run("recovery")) == 1
                # Not also reported as an ordinary failure.
                assert not [a for a in hook.alerts() if a["key"] == f"run:{run.run_id}"]
            except BaseException:
                print("DAEMON", (tmp_path / "daemon.log").read_text()[-4000:])
                print("ALERTS", hook.alerts())
                raise
