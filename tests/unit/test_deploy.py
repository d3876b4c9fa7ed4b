"""The deployment files: systemd units that systemd itself accepts, sized and wired as the
README promises, and an instance config Dagster accepts."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import yaml

from tests.helpers import required_tool

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(SYSTEMD / name)
    return parser


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # Point the units at this checkout's venv so verify can check the commands exist.
    for path in [*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.timer")]:
        (tmp_path / path.name).write_text(path.read_text().replace("/opt/fin-assets", str(ROOT)))
    result = subprocess.run(
        [
            required_tool("systemd-analyze", "systemd"),
            "verify",
            "--man=no",
            *sorted(str(p) for p in tmp_path.iterdir()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_services_are_separate_bounded_and_restart_as_they_should() -> None:
    code, daemon, web = (
        unit(f"fin-assets-{name}.service") for name in ("code", "daemon", "webserver")
    )
    assert daemon["Service"]["Restart"] == "always"
    assert "-h 127.0.0.1" in web["Service"]["ExecStart"]
    assert code["Service"]["OOMPolicy"] == "continue"  # one OOM-killed run must not stop it
    for service in (code, daemon, web):
        assert service["Service"]["MemoryMax"].endswith("M")
        assert "MemoryHigh" not in service["Service"]  # it throttles instead of killing
        assert service["Service"]["EnvironmentFile"] == "/etc/fin-assets/fin-assets.env"
    assert "deploy/workspace.yaml" in daemon["Service"]["ExecStart"]
    timer = unit("fin-assets-liveness.timer")
    assert timer["Timer"]["OnUnitActiveSec"] == "5min"
    assert "liveness-check" in unit("fin-assets-liveness.service")["Service"]["ExecStart"]


def test_production_instance_config_is_valid_for_dagster() -> None:
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    config = yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    result = validate_config(dagster_instance_config_schema(), config)
    assert result.success, [e.message for e in result.errors]
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        assert config[storage]["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["event_log_storage"]["class"] == "FinAssetsPostgresEventLogStorage"
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in limits
