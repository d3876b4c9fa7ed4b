"""What a dashboard or an on-call script reads from the real dagster-webserver: each asset's
freshness status and its checks' latest results, over GraphQL on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import dagster as dg
import httpx

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.conftest import fin_env, run_range

PROJECT_ROOT = Path(__file__).resolve().parents[2]
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_freshness_status_and_check_results_over_graphql(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
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
        web = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-webserver"),
                "-m",
                "fin_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env, "DAGSTER_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the webserver did not come up"
                time.sleep(1)
            response = httpx.post(f"{url}/graphql", json={"query": QUERY}, timeout=60)
        finally:
            web.terminate()
            web.wait(timeout=30)
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
