"""Sources declared in YAML: a third one is a new file and no Python; a bad one fails to load
naming its file, field and reason."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator
from tests.conftest import RANGE_END_TAG, RANGE_START_TAG
from tests.helpers import BIN, PROJECT_ROOT

THIRD = """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: london
  provider: simulator
  symbols: [VOD.L, BP.L]
  calendar: XLON
  base_url: "{base_url}"
"""


def sources_dir(tmp_path: Path, extra: dict[str, str]) -> Path:
    """The project's declared sources plus ``extra`` ({folder: defs.yaml text})."""
    root = tmp_path / "sources"
    shutil.copytree(
        PROJECT_ROOT / "fin_assets" / "defs",
        root,
        ignore=shutil.ignore_patterns("*.py", "__pycache__"),
    )
    for name, text in extra.items():
        (root / name).mkdir()
        (root / name / "defs.yaml").write_text(text)
    return root


def test_a_third_source_is_one_yaml_file(sim: MarketSimulator, tmp_path: Path) -> None:
    env = {
        "FIN_SOURCES_DIR": str(sources_dir(tmp_path, {"london": THIRD.format(base_url=sim.url)})),
        "FIN_DATA_DIR": str(tmp_path / "data"),
        "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
    }
    defs = build_definitions(env)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw/london/bars", "core/london/bars", "core/london/daily_returns"} <= keys
    assert {"raw/us_equities/bars", "raw/crypto/bars"} <= keys
    # 2026-01-05 09:00-09:59 London (UTC in winter): a session hour of XLON.
    job = defs.resolve_job_def("london__bars_hourly_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={RANGE_START_TAG: "2026-01-05-09:00", RANGE_END_TAG: "2026-01-05-09:00"},
            raise_on_error=False,
        )
        assert result.success
    bars = pl.read_parquet(tmp_path / "data" / "warehouse" / "london__core_bars" / "*.parquet")
    assert set(bars["symbol"]) == {"VOD.L", "BP.L"}
    assert 2 * 60 - 2 * 2 <= bars.height <= 2 * 60  # a few quiet minutes at most


@pytest.mark.parametrize(
    ("attributes", "field", "reason"),
    [
        (
            "provider: nyse\n  symbols: [AAPL]",
            "provider",
            "'nyse' is not one of ['binance', 'polygon', 'simulator']",
        ),
        ("provider: simulator\n  symbols: [AAPL, 'not a symbol']", "symbols", "invalid symbol"),
        (
            "provider: simulator\n  symbols: [AAPL]\n  calendar: XNYZ",
            "calendar",
            "unknown calendar 'XNYZ'",
        ),
        (
            "provider: polygon\n  symbols: [AAPL]\n  api_key_env: sk_live_0123456789abcdef",
            "api_key_env",
            "not the NAME of an environment variable (e.g. POLYGON_API_KEY): never the key",
        ),
    ],
)
def test_a_bad_source_file_fails_to_load_naming_file_field_and_reason(
    tmp_path: Path, attributes: str, field: str, reason: str
) -> None:
    text = (
        "type: fin_assets.lib.components.MarketDataSource\n"
        f"attributes:\n  name: broken\n  {attributes}\n"
    )
    env = {
        "FIN_SOURCES_DIR": str(sources_dir(tmp_path, {"broken": text})),
        "FIN_DATA_DIR": str(tmp_path / "data"),
    }
    with pytest.raises(Exception) as error:  # noqa: PT011 - Dagster's or ours, checked below
        build_definitions(env)
    chain = []
    cause: BaseException | None = error.value
    while cause is not None:
        chain.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    message = "\n".join(chain)
    assert "broken/defs.yaml" in message, message
    assert field in message, message
    assert reason in message, message
    assert "sk_live" not in message  # a key written where its variable's name belongs


def test_dg_check_yaml_refuses_what_the_load_refuses(tmp_path: Path) -> None:
    """`dg check yaml` validates a file against the component's schema: a calendar the load
    refuses (XASX crosses midnight UTC), a name too long for its tables, an infinite quota and
    a file:// base URL each fail it, naming file, line and field. (Each bad value's load
    message: tests/unit/test_refused_at_load.py.)"""
    # A project of one source file: the component type is the project's own (installed).
    (tmp_path / "pyproject.toml").write_text((PROJECT_ROOT / "pyproject.toml").read_text())
    source = tmp_path / "fin_assets" / "defs" / "asx"
    source.mkdir(parents=True)
    (source / "defs.yaml").write_text(
        "type: fin_assets.lib.components.MarketDataSource\n"
        "attributes:\n"
        f"  name: {'a' * 44}\n"
        "  provider: simulator\n"
        "  symbols: [BHP]\n"
        "  calendar: XASX\n"
        "  quota: {requests: .inf, window_seconds: 1}\n"
        "  base_url: file:///srv/bars\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIN_", "DAGSTER_"))}
    proc = subprocess.run(
        [str(BIN / "dg"), "check", "yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    where = f"{source / 'defs.yaml'}"
    kind = "fin_assets.lib.components.MarketDataSource"
    for line, problem in [
        (3, f"attributes.name '{'a' * 44}' is too long"),
        (6, "attributes.calendar 'XASX' is not one of ['24/7', '24/5', 'AIXK'"),
        (7, "attributes.quota {'requests': inf, 'window_seconds': 1} is not valid under any"),
        (8, "attributes.base_url 'file:///srv/bars' does not match"),
    ]:
        assert f"{where}:{line} - {kind} {problem}" in proc.stdout, proc.stdout
