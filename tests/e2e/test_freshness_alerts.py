"""Freshness and alerts end to end with a real dagster-daemon: nobody launches anything (issues
7 and 13, one story).

Two sources, ``steady`` and ``down``, are declared as two YAML files in a FIN_SOURCES_DIR, each on
its own simulator. Both simulators publish a day late and catch up at 120x, so a new hourly
window closes at each every 30 s (for 12 minutes, longer than the test), all in Dagster's past.
The new-data sensors fetch them, the automation sensor builds the daily tables once a whole day
has landed, the freshness daemon evaluates each source's policy, and the alert sensor posts to a
loopback webhook.

``down``'s simulator is stopped as soon as ``down`` has landed: the webhook must then page about
``down``'s hourly assets exactly once each, and about nothing of ``steady``, which keeps landing
new hours and stays fresh. ``down``'s simulator comes back on the same address: exactly one
recovery message each, and still nothing of ``steady``.

Each source has its own freshness window, as a deployment would: ``down``'s is Dagster's smallest
(1 minute) so its outage shows within the test; ``steady``'s is 2 minutes, room for a run on a
busy 2-core machine (every run starts five Python processes) without going stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from fin_assets.lib.alert_cursor import SENSOR_NAME
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.e2e.webhook import WebhookReceiver
from tests.helpers import (
    dagster_home,
    free_port,
    running_daemon,
    set_sensors,
    wait_for,
    wait_for_sensor_ticks,
)

pytestmark = pytest.mark.slow(150)

LAG_HOURS = 24
SPEED = 120  # a simulated hour every 30 s
POLL_S = 1.0  # probes ask the Dagster instance
# "The last closed hour (wall clock) has landed by :20": false for both sources by construction
# here, their providers being a day late. Every hourly run evaluates it and the alert sensor
# reports it for both, so it cannot tell a stopped provider from a running one: the freshness
# policies (time since the last landed hour) do. Its sensor is stopped; runs still evaluate it.
WALL_CLOCK_DEADLINE_CHECK = ":freshness_check"

SOURCE_YAML = """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: {name}
  provider: simulator
  symbols: [{symbol}]
  calendar: "24/7"
  base_url: "{url}"
  # Never a warning: null (a bug once refused it).
  freshness: {{fail_minutes: {fail_minutes}, warn_minutes: null}}
"""


@dataclass
class Source:
    name: str
    symbol: str
    fail_minutes: int
    port: int
    anchor: float
    sim: MarketSimulator | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """The provider, on the same address and the same (catching-up) clock every time."""
        config = SimulatorConfig(
            port=self.port,
            clock_lag_s=LAG_HOURS * 3600,
            clock_speed=SPEED,
            clock_anchor=self.anchor,
        )
        self.sim = MarketSimulator(config).start()

    def stop(self) -> None:
        if self.sim is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                self.sim.stop()
            self.sim = None

    def key(self, layer: str, table: str = "bars") -> dg.AssetKey:
        return dg.AssetKey([layer, self.name, table])

    def named_in(self, alert: dict[str, Any]) -> bool:
        """Whether an alert is about this source: its assets, checks or jobs."""
        text = json.dumps(alert)
        return f"/{self.name}/" in text or f"{self.name}__" in text


@pytest.fixture
def sources() -> Iterator[tuple[Source, Source]]:
    anchor = time.time()
    steady = Source("steady", "BTCUSD", 2, free_port(), anchor)
    down = Source("down", "ETHUSD", 1, free_port(), anchor)
    try:
        for source in (steady, down):
            source.start()
        yield steady, down
    finally:
        for source in (steady, down):
            source.stop()


def deployment(tmp_path: Path, sources: tuple[Source, ...], webhook: str) -> dict[str, str]:
    """The environment of a deployment of ``sources`` (one defs.yaml each) and shared settings."""
    root = tmp_path / "sources"
    for source in sources:
        (root / source.name).mkdir(parents=True)
        (root / source.name / "defs.yaml").write_text(
            SOURCE_YAML.format(
                name=source.name,
                symbol=source.symbol,
                url=source.url,
                fail_minutes=source.fail_minutes,
            )
        )
    # Nothing of the caller's FIN_* configuration: FIN_SYMBOLS and friends would turn the
    # deployment into the one-source shorthand.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FIN_")}
    return {
        **inherited,
        "DAGSTER_HOME": str(dagster_home(tmp_path / "home")),
        "FIN_SOURCES_DIR": str(root),
        "FIN_DATA_DIR": str(tmp_path / "data"),
        "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
        "FIN_SENSOR_INTERVAL_SECONDS": "3",
        "FIN_AUTOMATION_INTERVAL_SECONDS": "5",
        # From the last hour of three days ago: the day before yesterday is always complete
        # in the first catch-up run, even when the sensor first looks after the next hour
        # has begun (48 + hour, read at 12:59, missed 00:00 of that day when the sensor
        # looked at 13:00).
        "FIN_NEW_DATA_LOOKBACK_HOURS": str(49 + datetime.now(UTC).hour),
        "FIN_ALERT_WEBHOOK_URL": webhook,
        "FIN_ALERT_FORMAT": "plain",
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
        # Every run's steps in its own process: a new hour closes every 30 s at each provider,
        # and with a process per step each run cost this story ~10 s of CPU, which a busy
        # 2-core host pays in lateness (the executor's own stories: test_dead_runs,
        # test_crash_recovery, test_celery). Seen applied below.
        "FIN_EXECUTOR": "in_process",
    }


def test_a_stopped_provider_pages_once_about_its_source_only_and_recovers_once(
    sources: tuple[Source, Source], tmp_path: Path
) -> None:
    with WebhookReceiver() as hook:
        env = deployment(tmp_path, sources, hook.url)
        set_sensors(
            env,
            start=[f"{s.name}__new_bars_sensor" for s in sources],
            # Not under test, and each costs runs a busy machine lacks: the wall-clock deadline
            # checks' sensors (see WALL_CLOCK_DEADLINE_CHECK).
            stop=[f"{s.name}__partition_freshness_checks_sensor" for s in sources],
            timeout=120,
        )
        with (
            running_daemon(env, tmp_path / "daemon.log"),
            dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
        ):
            try:
                outage_pages_once_about_its_source_only(instance, hook, *sources)
            except BaseException:
                print("DAEMON", (tmp_path / "daemon.log").read_text()[-4000:])
                print("ALERTS", hook.alerts())
                raise


def outage_pages_once_about_its_source_only(
    instance: dg.DagsterInstance, hook: WebhookReceiver, steady: Source, down: Source
) -> None:
    def landed(source: Source, table: str = "bars") -> set[str]:
        return instance.get_materialized_partitions(source.key("core", table))

    # 1. Both sources land their latest closed hours with no manual launch; down's provider
    # goes away as soon as it has landed (stale counts from there).
    wait_for("core/down/bars from its sensor", lambda: landed(down), timeout=180, interval=POLL_S)
    down.stop()
    steady_before = landed(steady)
    before = len(hook.alerts())
    expected = {f"freshness:{down.key(layer).to_user_string()}" for layer in ("raw", "core")}

    def about_down(kind: str) -> list[dict[str, Any]]:
        return [
            a
            for a in hook.alerts()[before:]
            if a["kind"] == kind and a["key"].startswith("freshness:")
        ]

    # 2. The pager names down's hourly assets, once each.
    wait_for(
        f"failure alerts {sorted(expected)}",
        lambda: {a["key"] for a in about_down("failure")} >= expected,
        timeout=down.fail_minutes * 60 + 120,
        interval=POLL_S,
    )
    # 3. Meanwhile steady keeps landing the hours its provider closes, and automation builds
    # its daily tables once a whole day has landed (two days ago always has, in the lookback).
    wait_for(
        "two hours of core/steady/bars landed after down stopped",
        lambda: len(landed(steady) - steady_before) >= 2,
        timeout=120,
        interval=POLL_S,
    )
    day = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    for table in ("daily_bars", "daily_returns"):
        wait_for(
            f"core/steady/{table} {day} by automation",
            lambda table=table: day in landed(steady, table),  # type: ignore[misc]
            timeout=300,  # the first run fetches and checks two days hour by hour (busy host)
            interval=POLL_S,
        )
    (sensor_run, *_) = instance.get_runs(
        filters=dg.RunsFilter(
            tags={"dagster/sensor_name": "steady__new_bars_sensor"},
            statuses=[dg.DagsterRunStatus.SUCCESS],
        )
    )
    engine = instance.all_logs(sensor_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    assert any("Executing steps in process" in (e.message or "") for e in engine)
    # More ticks of the alert sensor: still no duplicate, still nothing of steady's.
    wait_for_sensor_ticks(instance, SENSOR_NAME, 3, timeout=90)

    alerts = [a for a in hook.alerts() if WALL_CLOCK_DEADLINE_CHECK not in a["key"]]
    assert sorted(a["key"] for a in about_down("failure")) == sorted(expected)
    assert all("is stale" in a["title"] for a in about_down("failure"))
    assert [a for a in alerts if steady.named_in(a)] == []
    assert all(down.named_in(a) for a in alerts), alerts
    # Dagster's own verdict: steady fresh, down stale.
    states = instance.get_freshness_state_records(
        [source.key(layer) for source in (steady, down) for layer in ("raw", "core")]
    )
    assert {key.to_user_string(): r.freshness_state.value for key, r in states.items()} == {
        "raw/steady/bars": "PASS",
        "core/steady/bars": "PASS",
        "raw/down/bars": "FAIL",
        "core/down/bars": "FAIL",
    }

    # 4. down's provider comes back: its sensor catches up, and one recovery message each.
    down.start()
    wait_for(
        f"recovery alerts {sorted(expected)}",
        lambda: {a["key"] for a in about_down("recovery")} >= expected,
        timeout=240,
        interval=POLL_S,
    )
    wait_for_sensor_ticks(instance, SENSOR_NAME, 3, timeout=90)
    assert sorted(a["key"] for a in about_down("recovery")) == sorted(expected)
    assert sorted(a["key"] for a in about_down("failure")) == sorted(expected)  # none added
    alerts = [a for a in hook.alerts() if WALL_CLOCK_DEADLINE_CHECK not in a["key"]]
    assert [a for a in alerts if steady.named_in(a)] == []
    failed = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=f"{steady.name}__bars_hourly_job", statuses=[dg.DagsterRunStatus.FAILURE]
        )
    )
    assert failed == [], f"runs of steady failed: {[r.run_id for r in failed]}"
