"""What a dashboard or an on-call script reads from the real dagster-webserver: each asset's
freshness status and its checks' latest results, over GraphQL on loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from unittest import mock

import dagster as dg
import httpx
import pytest

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.conftest import fin_env, run_range
from tests.helpers import dagster_home, free_port, start_cli, stop_process, wait_for

QUERY = """
query {
  assetNodes(assetKeys: [{path: ["raw", "bars"]}, {path: ["core", "bars"]},
                         {path: ["core", "daily_bars"]}]) {
    assetKey { path }
    freshnessStatusInfo { freshnessStatus }
    assetChecksOrError {
      ... on AssetChecks {
        checks { name blocking executionForLatestMaterialization { status } }
      }
    }
  }
}
"""


def serving(url: str) -> bool:
    try:
        return httpx.get(f"{url}/server_info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow(20)
def test_freshness_status_and_check_results_over_graphql(tmp_path: Path) -> None:
    home = dagster_home(tmp_path / "home")
    with MarketSimulator(SimulatorConfig(port=0)) as sim:
        env = fin_env(sim, tmp_path / "data", FIN_SYMBOLS="AAPL")
        with (
            mock.patch.dict(os.environ, {"DAGSTER_HOME": str(home)}),
            dg.DagsterInstance.get() as instance,
        ):
            result = run_range(
                build_definitions(env),
                "bars_hourly_job",
                "2026-01-05-00:00",
                "2026-01-05-00:00",
                instance=instance,
            )
            assert result.success
        port = free_port()
        web = start_cli(
            [
                "dagster-webserver",
                "-m",
                "fin_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env={**os.environ, **env, "DAGSTER_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for("the webserver to come up", lambda: serving(url), timeout=120, interval=1)
            response = httpx.post(f"{url}/graphql", json={"query": QUERY}, timeout=60)
        finally:
            stop_process(web)
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    nodes = {"/".join(n["assetKey"]["path"]): n for n in body["data"]["assetNodes"]}
    assert set(nodes) == {"raw/bars", "core/bars", "core/daily_bars"}
    # Every asset has a freshness policy, so every one reports a status.
    for node in nodes.values():
        assert node["freshnessStatusInfo"]["freshnessStatus"] in {
            "HEALTHY",
            "WARNING",
            "DEGRADED",
            "UNKNOWN",
            "NOT_APPLICABLE",
        }
    # The hourly asset's partition freshness check ran with the materialization.
    checks = {c["name"]: c for c in nodes["core/bars"]["assetChecksOrError"]["checks"]}
    assert "freshness_check" in checks
    status = checks["freshness_check"]["executionForLatestMaterialization"]["status"]
    assert status in {"SUCCEEDED", "FAILED"}
