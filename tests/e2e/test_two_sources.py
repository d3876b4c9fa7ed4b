"""Two sources in one deployment, one provider stopped, with a real dagster-daemon (issue 13).

Two sources, ``steady`` and ``down``, are declared as two YAML files in a FIN_SOURCES_DIR, each
on its own simulator. Both simulators publish a day late and catch up at 120x, so a new hourly
window closes at each every 30 s (for 12 minutes, longer than the test), all in Dagster's past,
and both new-data sensors run. ``down``'s simulator is stopped as soon as ``down`` has landed an
hour: the webhook must then page about ``down`` only (its hourly assets go stale), while
``steady`` keeps landing new hours, stays fresh and is never mentioned.

Each source has its own freshness window, as a deployment would: ``down``'s is Dagster's
smallest (1 minute) so its outage shows within the test; ``steady``'s is 2 minutes, room for a
run on a busy 2-core machine (every run starts five Python processes) without going stale.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from fin_assets.lib.alert_cursor import SENSOR_NAME
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.e2e.webhook import WebhookReceiver
from tests.helpers import (
    dagster_home,
    running_daemon,
    set_sensors,
    wait_for,
    wait_for_sensor_ticks,
)

pytestmark = pytest.mark.slow(100)

LAG_HOURS = 24
SPEED = 120  # a simulated hour every 30 s
POLL_S = 1.0  # probes ask the Dagster instance
# "The last closed hour (wall clock) has landed by :20": false for both sources by construction
# here, their providers being a day late. Every hourly run evaluates it and the alert sensor
# reports it for both, so it cannot tell a stopped provider from a running one: the freshness
# policies (time since the last landed hour) do.
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
    sim: MarketSimulator

    def key(self, layer: str) -> dg.AssetKey:
        return dg.AssetKey([layer, self.name, "bars"])

    def named_in(self, alert: dict[str, Any]) -> bool:
        """Whether an alert is about this source: its assets, checks or jobs."""
        text = json.dumps(alert)
        return f"/{self.name}/" in text or f"{self.name}__" in text


def simulator() -> MarketSimulator:
    return MarketSimulator(
        SimulatorConfig(port=0, clock_lag_s=LAG_HOURS * 3600, clock_speed=SPEED)
    ).start()


@pytest.fixture
def sources() -> Iterator[tuple[Source, Source]]:
    steady = Source("steady", "BTCUSD", 2, simulator())
    down = Source("down", "ETHUSD", 1, simulator())
    try:
        yield steady, down
    finally:
        for source in (steady, down):
            with contextlib.suppress(RuntimeError, ValueError):
                source.sim.stop()


def deployment(tmp_path: Path, sources: tuple[Source, ...], webhook: str) -> dict[str, str]:
    """The environment of a deployment of ``sources`` (one defs.yaml each) and shared settings."""
    root = tmp_path / "sources"
    for source in sources:
        (root / source.name).mkdir(parents=True)
        (root / source.name / "defs.yaml").write_text(
            SOURCE_YAML.format(
                name=source.name,
                symbol=source.symbol,
                url=source.sim.url,
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
        # The first tick asks for the hour that just closed at the (day-late) provider only.
        "FIN_NEW_DATA_LOOKBACK_HOURS": str(LAG_HOURS + 1),
        "FIN_ALERT_WEBHOOK_URL": webhook,
        "FIN_ALERT_FORMAT": "plain",
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
    }


def test_a_stopped_provider_pages_about_its_source_only_and_the_other_keeps_landing(
    sources: tuple[Source, Source], tmp_path: Path
) -> None:
    with WebhookReceiver() as hook:
        env = deployment(tmp_path, sources, hook.url)
        set_sensors(
            env,
            start=[f"{s.name}__new_bars_sensor" for s in sources],
            # Not under test, and each costs runs or CPU a busy machine lacks: the wall-clock
            # deadline checks' sensors (see WALL_CLOCK_DEADLINE_CHECK) and the daily tables'
            # automation (no whole day lands in this test).
            stop=[
                *(f"{s.name}__partition_freshness_checks_sensor" for s in sources),
                "automation_sensor",
            ],
            timeout=120,
        )
        with (
            running_daemon(env, tmp_path / "daemon.log"),
            dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
        ):
            outage_pages_only_its_source(instance, hook, *sources)


def outage_pages_only_its_source(
    instance: dg.DagsterInstance, hook: WebhookReceiver, steady: Source, down: Source
) -> None:
    def landed(source: Source) -> set[str]:
        return instance.get_materialized_partitions(source.key("core"))

    # 1. Both sources land hours with no manual launch; down's provider goes away as soon as
    # it has landed one (stale counts from there), while steady has barely started.
    wait_for(
        "core/down/bars from its sensor",
        lambda: landed(down),
        timeout=180,
        interval=POLL_S,
    )
    down.sim.stop()
    steady_before = landed(steady)
    before = len(hook.alerts())
    expected = {f"freshness:{down.key(layer).to_user_string()}" for layer in ("raw", "core")}

    def stale_alerts() -> list[dict[str, Any]]:
        return [
            a
            for a in hook.alerts()[before:]
            if a["kind"] == "failure" and a["key"].startswith("freshness:")
        ]

    # 2. The pager names down's hourly assets, once each.
    wait_for(
        f"failure alerts {sorted(expected)}",
        lambda: {a["key"] for a in stale_alerts()} >= expected,
        timeout=down.fail_minutes * 60 + 90,
        interval=POLL_S,
    )
    # 3. Meanwhile steady keeps landing the hours its provider closes.
    wait_for(
        "two hours of core/steady/bars landed after down stopped",
        lambda: len(landed(steady) - steady_before) >= 2,
        timeout=90,
        interval=POLL_S,
    )
    # Two more ticks of the alert sensor: still no duplicate, still nothing of steady's.
    wait_for_sensor_ticks(instance, SENSOR_NAME, 2, timeout=60)

    alerts = [a for a in hook.alerts() if WALL_CLOCK_DEADLINE_CHECK not in a["key"]]
    assert sorted(a["key"] for a in stale_alerts()) == sorted(expected)
    assert all("is stale" in a["title"] for a in stale_alerts())
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
    failed = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=f"{steady.name}__bars_hourly_job", statuses=[dg.DagsterRunStatus.FAILURE]
        )
    )
    assert failed == [], f"runs of steady failed: {[r.run_id for r in failed]}"
