"""Processing benchmark: raw snapshots -> core/bars rows per second, one day of 500 symbols.

    uv run --frozen python benchmarks/throughput.py [--symbols 500] [--repeat 2]

Set-up (not timed): the simulator runs as its own process; ``ingest_bars`` fetches one day of
1-minute bars for N symbols with the provider's largest page (1000 bars: 2 pages a symbol) and
the manifests of the 24 hourly partitions are written, as raw/bars does in a range run.

Timed, over the same 24 manifests, in one process, each the best of ``--repeat`` runs:

- ``read bytes only``: reading every snapshot file once, nothing else: the ceiling;
- ``ours``: what core/bars runs for a range (``iter_core_bars``, the asset's layer function) per
  partition: read and verify each snapshot (sha256) and its sidecar once, decode it with the
  adapter's fast typed decoder (msgspec), cut each hour, stamp provider and fetch time,
  deduplicate, sort, check OHLC. The partitions are kept in memory, not written;
- ``baseline``: the same pipeline with a straightforward decoder: ``json.loads`` and per-row
  Python checks of every value (present, not null, of its type), then columns;
- ``ours + Parquet write``: ``ours`` plus ``replace_partition`` of each hour (for reference;
  writes are measured on their own by warehouse_writes.py).

``ours`` and ``baseline`` must produce identical partitions (checked); they run interleaved,
so a busy moment of the machine costs both alike. A second table times decoding alone, per
page, over a sample of the pages: untyped JSON parsing (``json.loads``, and
``msgspec.json.decode``: the JSON-parsing limit), the typed decoder into columns, each full
``parse_bars``, and the precise per-value checks of ``frame_from_records`` that every page
went through before (the fallback now).

Target (the run exits 1 if it is missed): ``ours`` >= 4x the baseline's rows per second.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from benchmarks.harness import Targets, start_simulator, stop_process, table
from resources.errors import SchemaError
from resources.http.client import MarketApiClient
from resources.providers.base import ProviderAdapter
from resources.providers.decoding import ISO_FMT, ParsedBars, canonical_bars
from resources.raw.ingest import build_manifests, ingest_bars
from resources.raw.manifest import load_manifest, save_manifest
from resources.raw.snapshots import SnapshotStore
from resources.simulator import adapter as simulator_provider
from resources.simulator.adapter import SimulatorAdapter
from resources.storage.parquet import ParquetWarehouse
from resources.tables.core import BuildStats, build_core_bars, iter_core_bars
from resources.windows import PartitionWindow

DAY = datetime(2026, 1, 5, tzinfo=UTC)
TARGET_SPEEDUP = 4.0
MICRO_PAGES = 200  # pages timed one by one in the decoding table
SETUP_CLIENTS = 4
HOURS = [
    PartitionWindow(
        f"{DAY + timedelta(hours=h):%Y-%m-%d-%H}:00",
        DAY + timedelta(hours=h),
        DAY + timedelta(hours=h + 1),
    )
    for h in range(24)
]


# -- the baseline decoder -------------------------------------------------------------------
class BaselineAdapter(SimulatorAdapter):
    """The straightforward way: json.loads, then every value of every row checked in Python."""

    NUMBERS = ("o", "h", "l", "c", "v")

    def parse_bars(self, body: bytes, *, symbol: str, partition: str | None = None) -> ParsedBars:
        rows = json.loads(body)["bars"]
        columns: dict[str, list[Any]] = {k: [] for k in ("t", *self.NUMBERS, "n", "vw")}
        for index, row in enumerate(rows):
            for key in ("t", *self.NUMBERS):
                if row.get(key) is None:
                    raise SchemaError(f"bar {index}: {key} missing", provider=self.name, field=key)
            if not isinstance(row["t"], str):
                raise SchemaError(f"bar {index}: t", provider=self.name, field="t")
            for key in (*self.NUMBERS, "vw"):
                value = row.get(key)
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    raise SchemaError(f"bar {index}: {key}", provider=self.name, field=key)
            trades = row.get("n")
            if trades is not None and (isinstance(trades, bool) or not isinstance(trades, int)):
                raise SchemaError(f"bar {index}: n", provider=self.name, field="n")
            for key, values in columns.items():
                values.append(row.get(key))
        frame = pl.DataFrame(
            {
                "ts": pl.Series(columns["t"], dtype=pl.String).str.to_datetime(
                    ISO_FMT, time_unit="us", time_zone="UTC"
                ),
                "open": pl.Series(columns["o"], dtype=pl.Float64, strict=False),
                "high": pl.Series(columns["h"], dtype=pl.Float64, strict=False),
                "low": pl.Series(columns["l"], dtype=pl.Float64, strict=False),
                "close": pl.Series(columns["c"], dtype=pl.Float64, strict=False),
                "volume": pl.Series(columns["v"], dtype=pl.Float64, strict=False),
                "trades": pl.Series(columns["n"], dtype=pl.Int64, strict=False),
                "vwap": pl.Series(columns["vw"], dtype=pl.Float64, strict=False),
            }
        )
        return ParsedBars(canonical_bars(frame, symbol=symbol), {})


@contextlib.contextmanager
def fast_path_off() -> Iterator[None]:
    """Every page through frame_from_records's per-value checks (the fallback path)."""
    decoder = simulator_provider.PAGE_DECODER
    original = decoder.columns
    decoder.columns = lambda body: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        decoder.columns = original  # type: ignore[method-assign]


# -- set-up ---------------------------------------------------------------------------------
def prepare(store: SnapshotStore, symbols: list[str], url: str) -> float:
    """raw/bars for the day: ingest_bars with the simulator's largest page, then manifests.
    Four clients at once, each on its own symbols (set-up time is not what is measured)."""
    began = time.perf_counter()

    def fetch(chunk: list[str]) -> None:
        with MarketApiClient(SimulatorAdapter(), base_url=url) as client:
            ingest_bars(client, store, chunk, start=DAY, end=DAY + timedelta(days=1))

    with ThreadPoolExecutor(max_workers=SETUP_CLIENTS) as pool:
        list(pool.map(fetch, [symbols[i::SETUP_CLIENTS] for i in range(SETUP_CLIENTS)]))
    feed = MarketApiClient(SimulatorAdapter(), base_url=url).feed
    for manifest in build_manifests(store, feed=feed, symbols=symbols, partitions=HOURS):
        save_manifest(store, manifest)
    return time.perf_counter() - began


# -- the timed paths -------------------------------------------------------------------------
def read_only(store: SnapshotStore) -> list[pl.DataFrame]:
    seen: set[str] = set()
    for window in HOURS:
        for _, ref in load_manifest(store, window.key).refs():
            if ref.path not in seen:
                seen.add(ref.path)
                (store.root / ref.path).read_bytes()
    return []


def pipeline(
    store: SnapshotStore, adapter: ProviderAdapter, warehouse: ParquetWarehouse | None = None
) -> list[pl.DataFrame]:
    """core/bars over the day, partition by partition, as the asset runs a range: the asset's
    own layer functions (``build_core_bars`` when writing, ``iter_core_bars`` otherwise)."""
    if warehouse is not None:
        build_core_bars(store, warehouse, HOURS)
        return []
    return [frame for _, frame in iter_core_bars(store, HOURS, stats=BuildStats(), adapter=adapter)]


def best_of(repeat: int, run: Callable[[], list[pl.DataFrame]]) -> tuple[float, list[pl.DataFrame]]:
    best, frames = float("inf"), []
    for _ in range(repeat):
        gc.collect()
        began = time.perf_counter()
        frames = run()
        best = min(best, time.perf_counter() - began)
    return best, frames


def per_page(bodies: list[bytes], run: Callable[[bytes], object], repeat: int) -> float:
    """Microseconds per page, best of ``repeat`` passes over every page."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for body in bodies:
            run(body)
        best = min(best, time.perf_counter() - began)
    return best / len(bodies) * 1e6


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    if args.symbols < 1 or args.repeat < 1:
        parser.error("--symbols and --repeat must be at least 1")
    symbols = [f"S{i:04d}" for i in range(args.symbols)]
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fin-assets-bench-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        store = SnapshotStore(tmp / "data")
        sim, url = start_simulator(log_path=tmp / "simulator.log")
        try:
            setup_s = prepare(store, symbols, url)
        finally:
            stop_process(sim)
        snapshot_paths = sorted(
            p for p in (tmp / "data" / "raw").rglob("*.json") if not p.name.endswith(".meta.json")
        )
        bodies = [p.read_bytes() for p in snapshot_paths]
        snapshots = len(bodies)
        print(
            f"set-up: {len(symbols)} symbols x 1 day, {len(bodies)} snapshots, "
            f"{sum(map(len, bodies)) / 1e6:.1f} MB, fetched and stored in {setup_s:.1f} s",
            flush=True,
        )
        ours = SimulatorAdapter()
        baseline = BaselineAdapter()
        pipeline(store, ours)  # warm-up: imports, polars' thread pool, the page cache
        read_s, _ = best_of(args.repeat, lambda: read_only(store))
        # Interleaved, so a busy moment on the machine costs both alike; the best of each.
        ours_s = base_s = float("inf")
        for _ in range(args.repeat):
            seconds, ours_frames = best_of(1, lambda: pipeline(store, ours))
            ours_s = min(ours_s, seconds)
            seconds, base_frames = best_of(1, lambda: pipeline(store, baseline))
            base_s = min(base_s, seconds)
            print(f"  ours {ours_s:.2f} s, baseline {base_s:.2f} s (best so far)", flush=True)
        warehouse = ParquetWarehouse(tmp / "warehouse")
        write_s, _ = best_of(args.repeat, lambda: pipeline(store, ours, warehouse))
        rows = sum(f.height for f in ours_frames)
        identical = all(a.equals(b) for a, b in zip(ours_frames, base_frames, strict=True))
        del ours_frames, base_frames

        decoder = simulator_provider.PAGE_DECODER
        bodies = bodies[:: max(1, len(bodies) // MICRO_PAGES)]  # a sample: pages of both sizes
        bars_per_page = sum(len(msgspec.json.decode(b)["bars"]) for b in bodies) / len(bodies)
        micro = [
            ("json.loads (untyped)", per_page(bodies, json.loads, args.repeat)),
            (
                "msgspec.json.decode (untyped): the JSON-parsing limit",
                per_page(bodies, msgspec.json.decode, args.repeat),
            ),
            ("ours: typed decoder into columns", per_page(bodies, decoder.columns, args.repeat)),
            (
                "ours: parse_bars (typed decoder -> canonical frame)",
                per_page(bodies, lambda b: ours.parse_bars(b, symbol="S0000"), args.repeat),
            ),
            (
                "baseline: parse_bars (json.loads + per-row checks)",
                per_page(bodies, lambda b: baseline.parse_bars(b, symbol="S0000"), args.repeat),
            ),
        ]
        with fast_path_off():
            micro.append(
                (
                    "precise checks only: parse_bars (frame_from_records)",
                    per_page(bodies, lambda b: ours.parse_bars(b, symbol="S0000"), 1),
                )
            )

    def row(name: str, seconds: float) -> list[str]:
        return [
            name,
            f"{seconds:.3f}",
            f"{rows / seconds:,.0f}",
            f"{base_s / seconds:.2f}x",
            f"{seconds / read_s:.1f}",
        ]

    print()
    print(
        table(
            ["path (one day, 24 partitions)", "seconds", "rows / s", "vs baseline", "x read time"],
            [
                row("read snapshot bytes only", read_s),
                row("baseline: json.loads + per-row checks", base_s),
                row("ours: msgspec typed decoder", ours_s),
                row("ours + Parquet write", write_s),
            ],
        )
    )
    print()
    base_page = dict(micro)["baseline: parse_bars (json.loads + per-row checks)"]
    print(
        table(
            [
                f"decoding one page ({bars_per_page:.0f} bars on average)",
                "µs / page",
                "vs baseline parse_bars",
            ],
            [[name, f"{us:.0f}", f"{base_page / us:.2f}x"] for name, us in micro],
        )
    )
    print()
    print(
        f"{rows} rows of core/bars from {snapshots} snapshots; ours takes "
        f"{ours_s / read_s:.1f}x the time of reading the bytes ({rows / read_s:,.0f} rows/s)"
    )
    print()
    targets = Targets()
    speedup = base_s / ours_s
    targets.check(
        f"ours >= {TARGET_SPEEDUP:g}x the baseline's rows per second",
        speedup >= TARGET_SPEEDUP,
        f"{speedup:.2f}x ({rows / ours_s:,.0f} vs {rows / base_s:,.0f} rows/s)",
    )
    targets.check(
        "every path gives identical core/bars partitions",
        identical and rows == len(symbols) * 1440,
        f"{rows} rows, identical: {identical}",
    )
    code = targets.report()
    print(f"\nruntime {time.monotonic() - began:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
