"""What deploy/ ships for metrics: Prometheus config and rules that promtool accepts (and whose
unit tests pass), a Grafana dashboard whose every query names a metric the exporter serves,
and a systemd unit for the exporter wired to the port Prometheus scrapes."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from fin_assets.tools.metrics import DEFAULT_PORT
from resources.metrics.catalog import SPECS
from tests.helpers import required_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "fin-assets.json"
UNIT = ROOT / "deploy" / "systemd" / "fin-assets-metrics.service"
METRIC = re.compile(r"\b(fin_assets_[a-z0-9_]+|up)\b")
SERVED = set(SPECS) | {"up"}  # up: Prometheus' own, per scrape target


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [required_tool("promtool", "prometheus"), *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "fin-assets.rules.yml"),
        ("test", "rules", "fin-assets.rules.test.yml"),
    ],
    ids=" ".join,
)
def test_promtool_accepts_the_shipped_files(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load((PROMETHEUS / "fin-assets.rules.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_the_issue_asks_for_read_served_metrics() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    assert {
        "FinAssetsSourceStale",
        "FinAssetsDaemonHeartbeatMissing",
        "FinAssetsWebhookFailing",
    } <= set(by_name)
    for name, rule in by_name.items():
        named = set(METRIC.findall(str(rule["expr"])))
        assert named and named <= SERVED, f"{name} reads {sorted(named - SERVED)}"
        assert rule["labels"]["severity"] in ("page", "ticket")  # type: ignore[index]


def dashboard_panels() -> list[dict[str, object]]:
    return json.loads(DASHBOARD.read_text())["panels"]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h"))  # type: ignore[index]
        assert grid["x"] + grid["w"] <= 24  # type: ignore[index,operator]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets)  # type: ignore[union-attr]


def test_every_dashboard_query_names_a_served_metric() -> None:
    named: set[str] = set()
    for panel in dashboard_panels():
        for target in panel.get("targets", []):  # type: ignore[attr-defined]
            in_query = set(METRIC.findall(target["expr"]))
            assert in_query, f"{panel['title']}: {target['expr']}"
            assert in_query <= SERVED, f"{panel['title']} reads {sorted(in_query - SERVED)}"
            named |= in_query
    # The issue's panels: freshness lag, quota use, 429s, rows landed.
    assert {
        "fin_assets_asset_lag_seconds",
        "fin_assets_quota_limit",
        "fin_assets_api_requests_total",
        "fin_assets_api_throttled_total",
        "fin_assets_asset_rows_total",
    } <= named


def test_the_exporter_unit_runs_the_exporter_on_the_scraped_port() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    service = parser["Service"]
    assert "/.venv/bin/fin-assets metrics" in service["ExecStart"]
    assert "--host 127.0.0.1" in service["ExecStart"]
    port = int(re.search(r"--port (\d+)", service["ExecStart"]).group(1))  # type: ignore[union-attr]
    assert port == DEFAULT_PORT
    assert service["Restart"] == "always"
    assert service["EnvironmentFile"] == "/etc/fin-assets/fin-assets.env"
    assert service["MemoryMax"].endswith("M") and "MemoryHigh" not in service
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "fin-assets"]
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]


def test_the_readme_metrics_table_is_the_catalog() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    row = re.compile(r"^\| `(fin_assets_[a-z0-9_]+)` \| (counter|gauge) \| (.+?) \| .+ \|$")
    table = {}
    for line in section.splitlines():
        match = row.match(line)
        if match:
            labels = tuple(re.findall(r"`([a-z_]+)`", match.group(3)))
            table[match.group(1)] = (match.group(2), labels)
    assert table == {name: (spec.kind, spec.labels) for name, spec in SPECS.items()}
