"""A range run handles many partitions at once: the results must be those of one partition at a
time, while each snapshot is parsed once and each symbol's directory listed once per chunk."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import resources.tables.core as bars_module
from resources.raw.ingest import build_manifest, build_manifests
from resources.raw.manifest import BARS_DATASET
from resources.raw.snapshots import SnapshotRef, SnapshotStore
from resources.simulator.adapter import SimulatorAdapter
from resources.simulator.data import generate_bars
from resources.tables.core import BuildStats, SnapshotFrames, bars_from_manifest, newest_per_minute
from resources.windows import PartitionWindow
from tests.helpers import SIMULATOR_FEED
from tests.reference_bars import reference_bars_from_manifest

T0 = datetime(2026, 1, 5, tzinfo=UTC)
ADAPTER = SimulatorAdapter()
SYMBOLS = ("AAPL", "MSFT")


def page(symbol: str, start: datetime, end: datetime, *, shuffle: bool = False) -> bytes:
    bars = generate_bars(symbol, start, end, seed=0)
    if shuffle:  # a provider that does not sort its bars
        random.Random(7).shuffle(bars)
    window = {"start": f"{start:%Y-%m-%dT%H:%M:%SZ}", "end": f"{end:%Y-%m-%dT%H:%M:%SZ}"}
    return json.dumps({"window": window, "bars": bars, "next_cursor": None}).encode()


def store_pages(store: SnapshotStore, spans: list[tuple[str, int, int]], **kw: bool) -> list:
    """Pages [T0 + a min, T0 + b min) per symbol, fetched in the order given."""
    refs = []
    for n, (symbol, a, b) in enumerate(spans):
        start, end = T0 + timedelta(minutes=a), T0 + timedelta(minutes=b)
        refs.append(
            store.write(
                feed=SIMULATOR_FEED,
                dataset=BARS_DATASET,
                symbol=symbol,
                start=start,
                end=end,
                body=page(symbol, start, end, **kw),
                meta={"fetched_at": (T0 + timedelta(days=2, seconds=n)).isoformat()},
            )
        )
    return refs


def hours(n: int) -> list[tuple[str, datetime, datetime]]:
    return [(w.key, w.start, w.end) for w in windows(n)]


def windows(n: int) -> list[PartitionWindow]:
    out = []
    for h in range(n):
        start = T0 + timedelta(hours=h)
        out.append(PartitionWindow(f"{start:%Y-%m-%d-%H}:00", start, start + timedelta(hours=1)))
    return out


SPANS = [
    ("AAPL", 0, 1000),  # a full page: hours 0..16
    ("AAPL", 1000, 1440),
    ("MSFT", 0, 1000),
    ("MSFT", 900, 1440),  # overlaps the page before: duplicates to drop
    ("MSFT", 120, 180),  # a re-fetched hour
]


def test_build_manifests_equals_one_manifest_per_partition(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    refs = store_pages(store, SPANS)
    partitions = windows(24)
    for prefer in ((), refs[2:4]):
        one_by_one = [
            build_manifest(
                store, feed=SIMULATOR_FEED, symbols=SYMBOLS, partition=window, prefer=prefer
            )
            for window in partitions
        ]
        for chunk in (1, 5, 168):
            chunked = build_manifests(
                store,
                feed=SIMULATOR_FEED,
                symbols=SYMBOLS,
                partitions=partitions,
                prefer=prefer,
                chunk=chunk,
            )
            assert list(chunked) == one_by_one


def test_listing_a_window_skips_by_name_exactly_as_the_overlap_test(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store_pages(store, SPANS)
    everything = store.list(feed=SIMULATOR_FEED, dataset=BARS_DATASET, symbol="MSFT")
    for a, b in ((0, 1), (119, 121), (180, 181), (999, 1000), (1000, 1001), (1439, 1500)):
        for seconds in (0, 30):
            start = T0 + timedelta(minutes=a, seconds=seconds)
            end = T0 + timedelta(minutes=b, seconds=seconds)
            listed = store.list(
                feed=SIMULATOR_FEED, dataset=BARS_DATASET, symbol="MSFT", start=start, end=end
            )
            assert listed == [r for r in everything if r.overlaps(start, end)]


def run_range(store: SnapshotStore, *, cache: SnapshotFrames | None) -> tuple[list, BuildStats]:
    stats = BuildStats()
    frames = []
    for key, start, end in hours(24):
        manifest = build_manifest(
            store,
            feed=SIMULATOR_FEED,
            symbols=SYMBOLS,
            partition=PartitionWindow(key, start, end),
        )
        frames.append(
            bars_from_manifest(
                store,
                ADAPTER,
                manifest,
                partition=key,
                start=start,
                end=end,
                stats=stats,
                snapshots=cache,
            )
        )
        if cache is not None:
            # Only pages reaching past this hour are kept: at most one or two per symbol.
            assert len(cache) <= 3
    return frames, stats


def test_a_range_parses_each_snapshot_once_and_gives_the_same_partitions(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store_pages(store, SPANS)
    alone, alone_stats = run_range(store, cache=None)
    cached, cached_stats = run_range(store, cache=SnapshotFrames(store))
    before_stats = BuildStats()
    for (key, start, end), one, other in zip(hours(24), alone, cached, strict=True):
        manifest = build_manifest(
            store,
            feed=SIMULATOR_FEED,
            symbols=SYMBOLS,
            partition=PartitionWindow(key, start, end),
        )
        before = reference_bars_from_manifest(
            store, ADAPTER, manifest, partition=key, start=start, end=end, stats=before_stats
        )  # core/bars as it was
        assert_frame_equal(one, before, check_exact=True)
        assert_frame_equal(one, other, check_exact=True)
    assert alone_stats == before_stats
    assert sum(f.height for f in cached) == 2 * 1440
    assert cached_stats.snapshots_read == len(SPANS)  # each page once
    assert alone_stats.snapshots_read > 3 * len(SPANS)  # once per hour it covers
    assert cached_stats.duplicates_dropped == alone_stats.duplicates_dropped == 100 + 60


def test_unsorted_pages_give_the_same_partitions(tmp_path: Path) -> None:
    sorted_store = SnapshotStore(tmp_path / "sorted")
    shuffled_store = SnapshotStore(tmp_path / "shuffled")
    store_pages(sorted_store, SPANS[:2])
    store_pages(shuffled_store, SPANS[:2], shuffle=True)
    for one, other in zip(
        run_range(sorted_store, cache=SnapshotFrames(sorted_store))[0],
        run_range(shuffled_store, cache=SnapshotFrames(shuffled_store))[0],
        strict=True,
    ):
        assert_frame_equal(one.filter(pl.col("symbol") == "AAPL"), one)
        assert_frame_equal(one, other, check_exact=True)


def test_a_refresh_prefers_the_fresh_pages_in_every_chunk(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store_pages(store, [("AAPL", 0, 1440)])
    fresh: list[SnapshotRef] = store_pages(store, [("AAPL", 0, 700), ("AAPL", 700, 1440)])
    manifests = {
        m.partition: m
        for m in build_manifests(
            store,
            feed=SIMULATOR_FEED,
            symbols=["AAPL"],
            partitions=windows(24),
            prefer=fresh,
            chunk=7,
        )
    }
    for key, start, end in hours(24):
        listed = [r.as_manifest_entry() for r in manifests[key].symbols["AAPL"]]
        assert listed == [r.as_manifest_entry() for r in fresh if r.overlaps(start, end)]


def test_newest_per_minute_keeps_what_sort_then_unique_keeps() -> None:
    rng = random.Random(3)
    fetches = [T0 + timedelta(days=1, seconds=s) for s in (0, 5, 9)]
    for size in (0, 1, 2, 50, 400):
        frame = pl.DataFrame(
            {
                "symbol": [rng.choice(["AAPL", "MSFT", None]) for _ in range(size)],
                "ts": [
                    rng.choice([None, *(T0 + timedelta(minutes=m) for m in range(6))])
                    for _ in range(size)
                ],
                "close": [float(i) for i in range(size)],
                "ingested_at": [rng.choice(fetches) for _ in range(size)],
            },
            schema={
                "symbol": pl.String(),
                "ts": pl.Datetime("us", "UTC"),
                "close": pl.Float64(),
                "ingested_at": pl.Datetime("us", "UTC"),
            },
        )
        ordered = frame.sort(["symbol", "ts", "ingested_at"], descending=[False, False, True])
        expected = ordered.unique(subset=["symbol", "ts"], keep="first", maintain_order=True)
        kept = newest_per_minute(frame)
        assert kept.select("symbol", "ts").equals(expected.select("symbol", "ts"))
        assert kept.height == frame.select("symbol", "ts").unique().height
        # the newest fetch of each minute
        newest = frame.group_by("symbol", "ts").agg(pl.col("ingested_at").max())
        assert (
            kept.join(newest, on=["symbol", "ts"], nulls_equal=True)
            .filter(pl.col("ingested_at") != pl.col("ingested_at_right"))
            .is_empty()
        )


def test_staggered_pages_in_small_batches_give_the_same_partitions_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of many lengths ending at different hours, parsed in batches of a few pages: each
    partition is what one partition at a time gives, and the rows held stay within twice the
    rows of the pages that reach past the partition just done (whole pages)."""
    monkeypatch.setattr(bars_module, "BATCH_BYTES", 100_000)  # a few pages a batch
    symbols = tuple(f"S{i}" for i in range(6))
    rng = random.Random(11)
    spans = []
    for symbol in symbols:
        at = 0
        while at < 24 * 60:
            length = rng.choice([30, 90, 200, 500, 1000])
            spans.append((symbol, at, min(at + length, 24 * 60)))
            at += length
    store = SnapshotStore(tmp_path)
    store_pages(store, spans)
    cache = SnapshotFrames(store)
    stats = BuildStats()
    peak = 0
    for key, start, end in hours(24):
        manifest = build_manifest(
            store,
            feed=SIMULATOR_FEED,
            symbols=symbols,
            partition=PartitionWindow(key, start, end),
        )
        together = bars_from_manifest(
            store,
            ADAPTER,
            manifest,
            partition=key,
            start=start,
            end=end,
            stats=stats,
            snapshots=cache,
        )
        alone = bars_from_manifest(
            store, ADAPTER, manifest, partition=key, start=start, end=end, stats=BuildStats()
        )
        assert_frame_equal(together, alone, check_exact=True)
        assert together.height == len(symbols) * 60
        done = (end - T0) // timedelta(minutes=1)
        live_rows = sum(b - a for _, a, b in spans if b > done)  # pages still needed
        assert cache.held_rows() <= 2 * live_rows
        peak = max(peak, cache.held_rows())
    assert peak > 0
    assert stats.snapshots_read == len(spans)
    assert len(cache) == 0 and cache.held_rows() == 0


def test_a_batch_kept_by_one_long_page_drops_the_released_rows(tmp_path: Path) -> None:
    """One symbol's page covers the whole day; forty others were fetched with it but only have
    the first hour: once that hour is done, the batch must not keep their rows for the day."""
    short = [(f"S{i:02d}", 0, 60) for i in range(40)]
    spans = [("LONG", 0, 1440), *short]
    store = SnapshotStore(tmp_path)
    store_pages(store, spans)
    symbols = ("LONG", *(s for s, _, _ in short))
    cache = SnapshotFrames(store)
    for key, start, end in hours(3):
        manifest = build_manifest(
            store,
            feed=SIMULATOR_FEED,
            symbols=symbols,
            partition=PartitionWindow(key, start, end),
        )
        frame = bars_from_manifest(
            store,
            ADAPTER,
            manifest,
            partition=key,
            start=start,
            end=end,
            stats=BuildStats(),
            snapshots=cache,
        )
        assert frame.height == (41 if key.endswith("00:00") else 1) * 60
    assert len(cache) == 1
    assert cache.held_rows() == 1440  # the long page alone, not 1440 + 40 x 60
