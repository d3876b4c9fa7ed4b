"""The exporter on the production instance: the Dagster instance and the quota store in
PostgreSQL, read the same way as the embedded ones."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest

from fin_assets.tools.metrics import InstanceMetrics
from resources.metrics.catalog import Sample
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.postgres import PostgresQuotaStore
from resources.ratelimit.stores import quota_key
from tests.postgres.conftest import postgres_instance_env


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def test_the_exporter_reads_a_postgres_instance_and_quota_store(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, setting in postgres_instance_env(fresh_database, tmp_path / "home").items():
        monkeypatch.setenv(name, setting)
    key = quota_key("binance", "https://api.binance.com", None)
    store = PostgresQuotaStore(fresh_database)
    pacer = SharedPacer(store, key, policy=QuotaPolicy(6000, 60, 20), adaptive=False)
    pacer.reserve(2)
    pacer.pause_for(120, reason="HTTP 418")
    store.close()
    with dg.DagsterInstance.get() as instance:
        raw = dg.AssetKey(["raw", "crypto", "bars"])
        for partition in ("2026-01-05-00:00", "2026-01-05-01:00"):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    raw,
                    partition=partition,
                    metadata={
                        "first_partition": "2026-01-05-00:00",
                        "last_partition": "2026-01-05-01:00",
                        "source": "crypto",
                        "provider": "binance",
                        "requests": 4,
                        "throttled_429": 2,
                        "banned_418": 1,
                    },
                )
            )
        run = dg.DagsterRun(job_name="crypto__bars_hourly_job", run_id=str(uuid.uuid4()))
        instance.add_run(run)
        instance.report_engine_event(
            f"Run execution process for {run.run_id} was terminated by signal 9 (SIGKILL).", run
        )
        instance.report_run_failed(run)
        metrics = InstanceMetrics(instance, quota_store=fresh_database)
        samples = metrics.read()
        assert metrics.errors == {}
        assert value(samples, "fin_assets_api_requests_total", source="crypto") == 4
        assert value(samples, "fin_assets_api_throttled_total", reason="banned") == 1
        assert value(samples, "fin_assets_api_throttled_total", reason="rate_limited") == 1
        assert value(samples, "fin_assets_runs_failed_last_hour", reason="killed") == 1
        pause = value(samples, "fin_assets_quota_pause_remaining_seconds", provider="binance")
        assert 100 < pause <= 120
        metrics.close()
