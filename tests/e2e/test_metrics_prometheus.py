"""End to end: a real Prometheus scrapes `fin-assets metrics` while the README's backfill command
runs into a 429 storm, and reads through its own HTTP API what a dashboard and the rules read.

The backfill (`dagster asset materialize --partition-range`, no daemon) fetches six hours
that ended three hours ago from the simulator, whose `rate_limited` fault answers part of the
requests with 429. Then nothing more runs: the source is stopped. Prometheus must see the
exporter's 429 counter equal the simulator's own count of 429s sent, the source's lag growing
with the clock, and the shipped FinAssetsSourceStale rule firing (its threshold is the source's
freshness window, 1 minute here; its `for:` is shortened to 0 s in this test's copy of the
rules, the only change to them).
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from resources.simulator.faults import FaultSpec
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.e2e.prometheus import PrometheusServer
from tests.helpers import (
    PROJECT_ROOT,
    dagster_home,
    free_port,
    materialize_command,
    run_cli,
    start_cli,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.slow(55)

RULES = PROJECT_ROOT / "deploy" / "prometheus" / "fin-assets.rules.yml"
JOB = "fin-assets"  # the job name of deploy/prometheus/prometheus.yml (the rules use it)
STORM = 6  # 429s the simulator sends


def rules_without_waiting(directory: Path) -> Path:
    """The shipped rules, every `for:` 0 s so a test need not wait minutes."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    path = directory / "fin-assets.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


def metrics_answer(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return b"fin_assets_api_requests_total" in response.read()
    except OSError:
        return False


def test_prometheus_sees_the_429_storm_the_growing_lag_and_the_stale_rule(tmp_path: Path) -> None:
    newest_closed = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=1
    )
    last = newest_closed - timedelta(hours=2)  # the source stops two windows before now
    first = last - timedelta(hours=5)
    partition_range = f"{first:%Y-%m-%d-%H:%M}...{last:%Y-%m-%d-%H:%M}"
    home = dagster_home(tmp_path / "home")
    config = SimulatorConfig(
        port=0,
        page_limit_max=180,  # three hours a page: four pages for two symbols
        # The first STORM requests are answered 429: five attempts of the first page, then
        # the step is rescheduled (its 429s kept in an observation), and its retry meets the
        # last one.
        faults={"rate_limited": FaultSpec(rate=1.0, count=STORM)},
        fault_retry_after_s=1,
    )
    exporter_port = free_port()
    with MarketSimulator(config) as sim:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "FIN_API_BASE_URL": sim.url,
            "FIN_SYMBOLS": "AAPL,MSFT",
            "FIN_DATA_DIR": str(tmp_path / "data"),
            "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
            "FIN_FRESHNESS_HOURLY_FAIL_MINUTES": "1",
            "FIN_METRICS_CACHE_SECONDS": "1",
            # The backfill's steps in its own process: what Prometheus reads is the same, and
            # the run starts one Python process instead of four on a busy 2-core host.
            "FIN_EXECUTOR": "in_process",
        }
        log = (tmp_path / "exporter.log").open("w")
        exporter = start_cli(
            ["fin-assets", "metrics", "--port", str(exporter_port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                "the exporter", lambda: metrics_answer(exporter_port), timeout=90, interval=0.5
            )
            with PrometheusServer(
                tmp_path / "prometheus",
                job=JOB,
                targets=[f"127.0.0.1:{exporter_port}"],
                rule_files=[rules_without_waiting(tmp_path)],
            ) as prometheus:
                wait_for("the scrape target up", prometheus.targets_up, timeout=30, interval=0.5)

                backfill = run_cli(
                    materialize_command("raw/bars,core/bars", "--partition-range", partition_range),
                    env=env,
                    timeout=300,
                )
                assert backfill.returncode == 0, backfill.stderr[-3000:]
                sent_429 = sim.stats()["rejected_429"]
                assert sent_429 == sim.stats()["faults_injected"]["rate_limited"] == STORM

                # 1. The 429 counter, through Prometheus, is the simulator's own count.
                counted = 'sum(fin_assets_api_throttled_total{reason="rate_limited"})'
                wait_for(
                    f"Prometheus to count {sent_429} 429s",
                    lambda: prometheus.value(counted) == sent_429,
                    timeout=60,
                    interval=0.5,
                )
                # Five of them in an attempt that was rescheduled, not materialized.
                rescheduled = 'fin_assets_step_attempts_total{outcome="rescheduled"}'
                assert prometheus.value(rescheduled) == 1
                requests = prometheus.value("sum(fin_assets_api_requests_total)")
                assert requests == sim.stats()["requests_by_path"]["/v1/bars"]
                rows = prometheus.value('fin_assets_asset_rows_total{asset="core/bars"}')
                assert rows == 6 * 60 * 2  # six hours of two symbols

                # 2. The stopped source's lag grows with the clock.
                lag = 'fin_assets_asset_lag_seconds{source="default", asset="raw/bars"}'
                before = wait_for("the lag", lambda: prometheus.value(lag), timeout=30)
                assert before >= 3600  # the window after the last one fetched closed >= 1 h ago
                after = wait_for(
                    "the lag to grow by 3 s",
                    lambda: (v := prometheus.value(lag)) and v - before >= 3 and v,
                    timeout=30,
                    interval=0.5,
                )
                assert after - before >= 3

                # 3. The shipped stale-source rule fires for it.
                def firing() -> list[dict[str, object]]:
                    return [
                        a
                        for a in prometheus.alerts()
                        if a["labels"]["alertname"] == "FinAssetsSourceStale"
                        and a["state"] == "firing"
                    ]

                (alert,) = wait_for("FinAssetsSourceStale", firing, timeout=60, interval=0.5)
                assert alert["labels"]["source"] == "default"
                assert "is stale" in alert["annotations"]["summary"]
        finally:
            stop_process(exporter)
            log.close()
