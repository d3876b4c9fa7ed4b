"""Sources declared in YAML: a third one is a new file and no Python; a bad one fails to load
naming its file, field and reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator
from tests.conftest import RANGE_END_TAG, RANGE_START_TAG
from tests.helpers import PROJECT_ROOT

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
            "should be 'binance', 'polygon' or 'simulator'",
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
            "String should match pattern",
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
