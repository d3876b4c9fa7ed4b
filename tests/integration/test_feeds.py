"""Snapshots are keyed by provider and endpoint (issue 21): two sources of one provider on two
endpoints serving different prices each get their own endpoint's bars, row by row; a third
source on the first endpoint shares its snapshots (no request, and its metadata says so); and a
data directory written before endpoints were part of the key keeps working, for its own
endpoint only."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fin_assets.definitions import build_definitions
from resources.raw.snapshots import SnapshotStore
from resources.simulator.adapter import SimulatorAdapter
from resources.simulator.data import generate_bars
from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.parquet import ParquetWarehouse
from tests.conftest import materialization_metadata, run_range, step_failure_messages
from tests.helpers import simulator_feed

FIRST, LAST = "2026-01-05-00:00", "2026-01-05-01:00"
DAY = datetime(2026, 1, 5, tzinfo=UTC)
SYMBOLS = ["AAPL", "NVDA"]
OTHER_SEED = 7

SOURCE = """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: {name}
  provider: simulator
  symbols: [AAPL, NVDA]
  calendar: "24/7"
  base_url: "{base_url}"
"""


def expected(seed: int) -> pl.DataFrame:
    """The provider's own bars for the two hours, parsed as the pipeline parses them."""
    adapter = SimulatorAdapter()
    frames = []
    for symbol in SYMBOLS:
        bars = generate_bars(symbol, DAY, DAY + timedelta(hours=2), seed=seed)
        body = json.dumps({"window": {}, "bars": bars, "next_cursor": None}).encode()
        frames.append(adapter.parse_bars(body, symbol=symbol).frame)
    return pl.concat(frames).sort("symbol", "ts")


def table(data: Path, source: str) -> pl.DataFrame:
    frame = ParquetWarehouse(data / "warehouse").scan(f"{source}__core_bars", [FIRST, LAST])
    collected = frame.collect()
    return collected.select(expected(0).columns).sort("symbol", "ts")


def definitions(tmp_path: Path, data: Path, sources: dict[str, str]) -> dg.Definitions:
    root = tmp_path / "sources"
    shutil.rmtree(root, ignore_errors=True)
    for name, base_url in sources.items():
        (root / name).mkdir(parents=True)
        (root / name / "defs.yaml").write_text(SOURCE.format(name=name, base_url=base_url))
    return build_definitions(
        {
            "FIN_SOURCES_DIR": str(root),
            "FIN_DATA_DIR": str(data),
            "FIN_QUOTA_STORE": str(data / "quota.sqlite"),
        }
    )


def run(defs: dg.Definitions, source: str, instance: dg.DagsterInstance) -> dict[str, object]:
    result = run_range(defs, f"{source}__bars_hourly_job", FIRST, LAST, instance=instance)
    assert result.success, step_failure_messages(result)
    return materialization_metadata(result, ["raw", source, "bars"])


@pytest.fixture
def other() -> MarketSimulator:
    with MarketSimulator(SimulatorConfig(port=0, seed=OTHER_SEED)) as sim:
        yield sim


def test_each_source_reads_its_own_endpoint_and_sources_on_one_endpoint_share(
    sim: MarketSimulator, other: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    data = tmp_path / "data"
    assert not expected(0).equals(expected(OTHER_SEED))  # the two endpoints' prices differ
    defs = definitions(tmp_path, data, {"home": sim.url, "away": other.url, "again": sim.url})
    home = run(defs, "home", instance)
    away = run(defs, "away", instance)
    assert home["requests"] > 0 and away["requests"] > 0  # nothing of home's reused by away
    assert_frame_equal(table(data, "home"), expected(0), check_exact=True)
    assert_frame_equal(table(data, "away"), expected(OTHER_SEED), check_exact=True)

    # A third source on home's endpoint reuses home's snapshots, and says where they are kept.
    before = sim.stats()["requests"]
    again = run(defs, "again", instance)
    assert sim.stats()["requests"] == before and again["requests"] == 0
    assert again["snapshots_reused"] == home["snapshots_written"]
    assert again["snapshot_feed"] == home["snapshot_feed"] == simulator_feed(sim.url).directory
    assert away["snapshot_feed"] == simulator_feed(other.url).directory
    assert_frame_equal(table(data, "again"), expected(0), check_exact=True)


def test_a_data_directory_from_before_endpoint_keys_is_read_for_its_own_endpoint_only(
    sim: MarketSimulator, other: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    data = tmp_path / "data"
    defs = definitions(tmp_path, data, {"home": sim.url})
    run(defs, "home", instance)
    # The layout before this change: raw/<provider>/..., and manifests naming those paths.
    new = simulator_feed(sim.url).directory
    os.replace(data / "raw" / new, data / "raw" / "simulator")
    for manifest in (data / "manifests").rglob("*.json"):
        manifest.write_text(manifest.read_text().replace(f"raw/{new}/", "raw/simulator/"))
    os.remove(data / "quota.sqlite")

    # core/bars rebuilds from the old manifests; raw/bars of the same endpoint reuses the old
    # snapshots; a source on another endpoint fetches its own.
    requests = sim.stats()["requests"]
    defs = definitions(tmp_path, data, {"home": sim.url, "away": other.url})
    home = run(defs, "home", instance)
    assert home["requests"] == 0 and sim.stats()["requests"] == requests
    assert home["snapshots_reused"] > 0
    away = run(defs, "away", instance)
    assert away["requests"] > 0 and away["snapshots_reused"] == 0
    assert_frame_equal(table(data, "home"), expected(0), check_exact=True)
    assert_frame_equal(table(data, "away"), expected(OTHER_SEED), check_exact=True)
    store = SnapshotStore(data)
    old = store.list(feed="simulator", dataset="bars_1m", symbol="AAPL")
    assert old and all(ref.path.startswith("raw/simulator/") for ref in old)
