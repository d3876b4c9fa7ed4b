"""A response that fails to parse is quarantined, never reused: the partition heals by itself.

Before, a drifted response was stored as a snapshot and read back as verbatim truth on every
later run, so the partition failed for good (even a ``refresh`` run only helped once).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fin_assets.definitions import build_definitions
from resources.errors import SchemaError
from resources.raw.ingest import build_manifest
from resources.raw.manifest import BARS_DATASET, save_manifest
from resources.raw.snapshots import SnapshotStore
from resources.simulator.adapter import SimulatorAdapter
from resources.simulator.data import generate_bars
from resources.simulator.faults import FaultSpec, drifted
from resources.simulator.server import MarketSimulator
from resources.storage.parquet import ParquetWarehouse
from resources.tables.core import build_core_bars
from resources.windows import PartitionWindow
from tests.conftest import fin_env, run_range, step_failure_messages
from tests.helpers import simulator_feed

DAY = datetime(2026, 1, 5, tzinfo=UTC)
FIRST, LAST = "2026-01-05-00:00", "2026-01-05-01:00"
REFRESH = {"ops": {"raw__bars": {"config": {"refresh": True}}}}


def expected(symbols: list[str], hours: int) -> pl.DataFrame:
    adapter = SimulatorAdapter()
    frames = []
    for symbol in symbols:
        bars = generate_bars(symbol, DAY, DAY + timedelta(hours=hours))
        body = json.dumps({"window": {}, "bars": bars, "next_cursor": None}).encode()
        frames.append(adapter.parse_bars(body, symbol=symbol).frame)
    return pl.concat(frames).sort("symbol", "ts")


def stored(data: Path, hours: int) -> pl.DataFrame:
    keys = [f"2026-01-05-{h:02d}:00" for h in range(hours)]
    frame = ParquetWarehouse(data / "warehouse").scan("core_bars", keys).collect()
    return frame.select(expected(["AAPL"], 0).columns).sort("symbol", "ts")


def test_a_drifted_response_is_quarantined_and_every_later_run_is_exact(
    sim: MarketSimulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = fin_env(sim, data, FIN_SYMBOLS="AAPL,NVDA")
    defs = build_definitions(env)
    want = expected(["AAPL", "NVDA"], 2)
    with dg.instance_for_test() as instance:
        sim.set_faults({"schema_drift": FaultSpec(rate=1.0, count=1)})
        bad = run_range(defs, "bars_hourly_job", FIRST, LAST, instance=instance)
        assert not bad.success
        (message,) = step_failure_messages(bad)
        assert "simulator: symbol AAPL" in message and "partitions 2026-01-05-00:00" in message
        match = re.search(r"the response is kept in (\S+?\.json)", message)
        assert match, message
        kept = Path(match.group(1))
        assert kept.is_relative_to(data / "quarantine")
        assert "close" in json.loads(kept.read_bytes())["bars"][0]  # the drifted bytes, verbatim
        store = SnapshotStore(data)
        listed = store.list(feed=simulator_feed(sim.url), dataset=BARS_DATASET, symbol="AAPL")
        assert all(not kept.name.startswith(r.path.rsplit("/", 1)[-1]) for r in listed)

        # The provider healthy again, no configuration changed: every run from now on is
        # exact, a refresh and the plain run after it included.
        sim.set_faults({})
        for run_config in (None, None, REFRESH, None):
            result = run_range(
                defs, "bars_hourly_job", FIRST, LAST, instance=instance, run_config=run_config
            )
            assert result.success, step_failure_messages(result)
            assert_frame_equal(stored(data, 2), want, check_exact=True)
        assert kept.exists()  # kept for a human to look at


def test_a_stored_snapshot_that_no_longer_parses_is_moved_out_and_fetched_again(
    sim: MarketSimulator, tmp_path: Path
) -> None:
    """A snapshot kept by an older version (before responses were checked at fetch time)."""
    data = tmp_path / "data"
    store = SnapshotStore(data)
    feed = simulator_feed(sim.url)
    hour = PartitionWindow(FIRST, DAY, DAY + timedelta(hours=1))
    bars = drifted(generate_bars("AAPL", hour.start, hour.end))
    body = json.dumps(
        {"window": {"start": "2026-01-05T00:00Z", "end": "2026-01-05T01:00Z"}, "bars": bars}
    ).encode()
    ref = store.write(
        feed=feed,
        dataset=BARS_DATASET,
        symbol="AAPL",
        start=hour.start,
        end=hour.end,
        body=body,
        meta={"fetched_at": DAY.isoformat()},
    )
    save_manifest(store, build_manifest(store, feed=feed, symbols=["AAPL"], partition=hour))
    with pytest.raises(SchemaError, match=r"field 'c' missing") as error:
        build_core_bars(store, ParquetWarehouse(data / "warehouse"), [hour])
    quarantined = store.quarantine_path(ref)
    assert f"moved to {quarantined}" in str(error.value)
    assert quarantined.read_bytes() == body
    assert store.list(feed=feed, dataset=BARS_DATASET, symbol="AAPL") == []

    env = fin_env(sim, data, FIN_SYMBOLS="AAPL")
    with dg.instance_for_test() as instance:
        result = run_range(
            build_definitions(env), "bars_hourly_job", FIRST, FIRST, instance=instance
        )
        assert result.success, step_failure_messages(result)
    assert_frame_equal(stored(data, 1), expected(["AAPL"], 1), check_exact=True)


def test_a_garbled_body_is_kept_and_the_window_heals(sim: MarketSimulator, tmp_path: Path) -> None:
    """Not JSON at all (cut short, then garbage): retried, then kept verbatim for a human, as
    the README promises for every unparseable response; nothing is stored as a snapshot."""
    data = tmp_path / "data"
    env = fin_env(sim, data, FIN_SYMBOLS="AAPL", FIN_MAX_ATTEMPTS="2")
    defs = build_definitions(env)
    with dg.instance_for_test() as instance:
        sim.set_faults({"malformed_json": FaultSpec(rate=1.0, count=2)})
        bad = run_range(defs, "bars_hourly_job", FIRST, FIRST, instance=instance)
        assert not bad.success
        (message,) = step_failure_messages(bad)
        assert "malformed JSON" in message, message
        match = re.search(r"the last response is kept in (\S+?\.json)", message)
        assert match, message
        kept = Path(match.group(1))
        assert kept.is_relative_to(data / "quarantine") and kept.stat().st_size > 0
        with pytest.raises(json.JSONDecodeError):
            json.loads(kept.read_bytes())
        sidecar = json.loads(kept.with_name(kept.name[: -len(".json")] + ".meta.json").read_text())
        assert "malformed JSON" in sidecar["quarantined"] and "apikey" not in sidecar["url"]
        assert list((data / "raw").rglob("*.json")) == []

        sim.set_faults({})
        good = run_range(defs, "bars_hourly_job", FIRST, FIRST, instance=instance)
        assert good.success, step_failure_messages(good)
    assert_frame_equal(stored(data, 1), expected(["AAPL"], 1), check_exact=True)


def test_the_quarantine_is_bounded_oldest_first(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, quarantine_max_bytes=10_000)
    feed = simulator_feed("http://127.0.0.1:8765")
    kept = []
    for hour in range(8):
        start = DAY + timedelta(hours=hour)
        kept.append(
            store.quarantine_body(
                feed=feed,
                dataset=BARS_DATASET,
                symbol="AAPL",
                start=start,
                end=start + timedelta(hours=1),
                body=bytes([hour]) * 3_000,
                meta={},
                reason="garbled",
            )
        )
    on_disk = sorted((tmp_path / "quarantine").rglob("*"))
    size = sum(p.stat().st_size for p in on_disk if p.is_file())
    assert size <= 10_000
    # The newest responses stay, each with its sidecar; the oldest went first.
    assert [p.exists() for p in kept] == [False] * 5 + [True] * 3
    assert all(p.with_name(p.name[: -len(".json")] + ".meta.json").exists() for p in kept[5:])
