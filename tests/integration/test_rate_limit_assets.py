"""The rate-limit engine seen from Dagster: reschedule instead of sleeping, visible waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from fin_assets.definitions import build_definitions
from fin_assets.lib.assets.raw import RawBarsConfig
from resources.ratelimit.stores import SQLiteQuotaStore, quota_key
from resources.simulator.faults import FaultSpec
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.conftest import fin_env, materialization_metadata, run_range

HOUR = "2026-01-05-00:00"
MANAGED_LOGS = {
    "python_logs": {"managed_python_loggers": ["fin_assets.client"], "python_log_level": "INFO"}
}


@pytest.fixture
def logged_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides=MANAGED_LOGS) as instance:
        yield instance


def test_a_wait_beyond_the_budget_raises_retry_requested_with_the_servers_wait(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    with MarketSimulator(SimulatorConfig(port=0, fault_retry_after_s=500)) as sim:
        sim.set_faults({"rate_limited": FaultSpec(rate=1.0, count=1)})
        env = fin_env(sim, tmp_path, FIN_SYMBOLS="AAPL", FIN_MAX_WAIT_SECONDS="60")
        # The asset as the definitions bind it (its resources included), invoked directly.
        raw_bars = build_definitions(env).resolve_assets_def(dg.AssetKey(["raw", "bars"]))
        context = dg.build_asset_context(partition_key=HOUR, instance=instance)
        before = time.time()
        with pytest.raises(dg.RetryRequested) as info:
            raw_bars(context, config=RawBarsConfig())
        assert sim.stats()["requests"] == 1
        url = sim.url
    assert info.value.seconds_to_wait == 500
    # The step gave up its process, but every other process sharing the quota still waits.
    store = SQLiteQuotaStore(env["FIN_QUOTA_STORE"])
    until, reason = store.paused_until(quota_key("simulator", url, None))
    store.close()
    assert before + 499 <= until <= time.time() + 501
    assert "Retry-After from simulator" in reason


def test_waits_are_logged_to_the_run_and_recorded_as_metadata(
    tmp_path: Path, logged_instance: dg.DagsterInstance
) -> None:
    config = SimulatorConfig(port=0, fault_retry_after_s=1, quota_requests=50, quota_burst=3)
    with MarketSimulator(config) as sim:
        sim.set_faults({"rate_limited": FaultSpec(rate=1.0, count=1)})
        defs = build_definitions(fin_env(sim, tmp_path))  # quota learned from headers
        result = run_range(defs, "bars_hourly_job", HOUR, HOUR, instance=logged_instance)
        assert result.success
        assert sim.stats()["rejected_429"] == 1  # the injected one; pacing avoided the rest
    meta = materialization_metadata(result, ["raw", "bars"])
    assert meta["throttled_429"] == 1
    assert meta["retries"] == 1
    assert meta["requests"] == 6  # 5 symbols + the retried one
    assert meta["seconds_waited"] >= 1.0
    assert meta["requests_per_second"] > 0
    messages = [
        entry.user_message
        for entry in logged_instance.all_logs(result.run_id)
        if entry.user_message
    ]
    assert any(
        m.startswith("waiting 1.00 s: Retry-After from simulator after HTTP 429") for m in messages
    ), messages
    assert any("pacing to quota 50/1s burst 1 (RateLimit-Policy)" in m for m in messages), messages
