"""Read benchmark: ``read_bars``' layer (``resources.tables.read.scan_bars``) against polars'
own ``scan_parquet`` over the same files, and from PostgreSQL.

    uv run --frozen python benchmarks/read.py [--no-postgres]

Two data sets, written through the warehouse API as core/bars writes them (canonical schema,
hourly partitions, then ``Warehouse.compact`` of the keys written), into a temporary Parquet
lake:

- a year of 1-minute bars of one 24/7 symbol: 525,600 rows in 8,760 hourly partitions, which
  compaction turns into 365 per-day copies;
- one day of 500 symbols: 720,000 rows in 24 partitions of 30,000, one per-day copy.

``compact s`` is what the compaction of the data set costs (365 days of one symbol; one day of
500 symbols), once after the writes; ``again s`` is a second compaction, which finds every
copy current and rewrites nothing.

Each read is ``scan_bars(...).collect()`` over the whole range, best of 3. The floor is
``pl.scan_parquet`` with the same filter and sort over exactly the files the read uses (the
per-day copies): what polars costs without us (no partition listing, no key computation, no
check of the copies). ``hour files s`` is the same over the hour files, what a read costs
without compaction. The year is also written to a fresh PostgreSQL database (created through
``FIN_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``, dropped
afterwards) and read from there; if the server cannot be reached its rows are skipped with the
reason.

Targets (the run exits 1 if one is missed): the symbol-year under 1 s from Parquet, the day of
500 symbols under 1 s from Parquet, the symbol-year under 3 s from PostgreSQL.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.harness import Targets, table
from benchmarks.warehouse_writes import fresh_database
from resources.storage.base import Warehouse
from resources.storage.parquet import COMPACTED_DIR, ParquetWarehouse
from resources.tables.read import scan_bars
from resources.tables.schemas import CANONICAL_SCHEMA

YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2026, 1, 1, tzinfo=UTC)
DAY_START = datetime(2026, 1, 5, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
YEAR_SOURCE, DAY_SOURCE = "bench_year", "bench_day"
DAY_SYMBOLS = [f"S{i:04d}" for i in range(500)]
TARGET_PARQUET_S = 1.0
TARGET_POSTGRES_S = 3.0
REPEATS = 3


def tables_of(source: str) -> Callable[[str], str]:
    return lambda base: f"{source}__{base}"


def bars(symbols: list[str], start: datetime, end: datetime) -> pl.DataFrame:
    """Every minute of ``[start, end)`` for each symbol: a deterministic wobble of prices."""
    minutes = pl.datetime_range(start, end, "1m", closed="left", time_zone="UTC", eager=True)
    frame = (
        pl.DataFrame({"symbol": symbols})
        .join(pl.DataFrame({"ts": minutes}), how="cross")
        .with_columns(i=pl.int_range(pl.len()).cast(pl.Float64))
    )
    price = 100.0 + (pl.col("i") * 0.001).sin() * 10
    return frame.select(
        "symbol",
        "ts",
        open=price,
        high=price + 0.5,
        low=price - 0.5,
        close=price + 0.1,
        volume=1000.0 + pl.col("i") % 97,
        trades=(10 + pl.col("i") % 13).cast(pl.Int64),
        vwap=price + 0.05,
        provider=pl.lit("simulator"),
        ingested_at=pl.lit(DAY_END).dt.replace_time_zone("UTC"),
    ).cast(dict(CANONICAL_SCHEMA))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Written:
    partitions: int
    write_s: float
    compact_s: float
    compact_again_s: float


def write_hourly(warehouse: Warehouse, table_name: str, frame: pl.DataFrame) -> Written:
    """``frame`` written as core/bars writes it: one partition per hour, then compacted."""
    hours = frame.with_columns(hour=pl.col("ts").dt.truncate("1h")).partition_by(
        "hour", as_dict=True, include_key=False, maintain_order=True
    )
    began = time.perf_counter()
    keys = []
    for (hour,), part in hours.items():
        keys.append(f"{hour:%Y-%m-%d-%H}:00")
        warehouse.replace_partition(table_name, keys[-1], part)
    written = time.perf_counter()
    warehouse.compact(table_name, keys)
    compacted = time.perf_counter()
    warehouse.compact(table_name, keys)
    again = time.perf_counter()
    return Written(len(keys), written - began, compacted - written, again - compacted)


def best_of(fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(REPEATS):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


def layer_read(
    warehouse: Warehouse, source: str, symbols: list[str], start: datetime, end: datetime
) -> pl.DataFrame:
    return scan_bars(
        warehouse, table=tables_of(source), symbols=symbols, start=start, end=end
    ).collect()


def floor_read(
    files: list[Path], symbols: list[str], start: datetime, end: datetime
) -> pl.DataFrame:
    return (
        pl.scan_parquet(files)
        .filter(pl.col("symbol").is_in(symbols) & (pl.col("ts") >= start) & (pl.col("ts") < end))
        .sort("symbol", "ts")
        .collect()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-postgres", action="store_true", help="Parquet rows only")
    args = parser.parse_args(argv)
    began = time.monotonic()
    year = bars(["BTCUSD"], YEAR_START, YEAR_END)
    day = bars(DAY_SYMBOLS, DAY_START, DAY_END)
    cases = [
        ("1 symbol x 1 year", YEAR_SOURCE, ["BTCUSD"], YEAR_START, YEAR_END, year),
        ("500 symbols x 1 day", DAY_SOURCE, DAY_SYMBOLS, DAY_START, DAY_END, day),
    ]
    rows: list[list[Any]] = []
    targets = Targets()
    with tempfile.TemporaryDirectory(prefix="fin-assets-bench-read-") as tmp:
        lake = ParquetWarehouse(Path(tmp) / "lake")
        for label, source, symbols, start, end, data in cases:
            bars_table = tables_of(source)("core_bars")
            written = write_hourly(lake, bars_table, data)
            ours_s, got = best_of(partial(layer_read, lake, source, symbols, start, end))
            copies = sorted((lake.root / COMPACTED_DIR / bars_table).glob("*.parquet"))
            hour_files = sorted((lake.root / bars_table).glob("*.parquet"))
            floor_s, floor = best_of(partial(floor_read, copies, symbols, start, end))
            hours_s, from_hours = best_of(partial(floor_read, hour_files, symbols, start, end))
            assert got.equals(floor) and got.equals(from_hours), label
            assert got.height == data.height, label
            rows.append(
                [
                    label,
                    "Parquet",
                    f"{got.height:,}",
                    f"{written.partitions:,}",
                    f"{len(copies):,}",
                    f"{written.write_s:.1f}",
                    f"{written.compact_s:.2f}",
                    f"{written.compact_again_s:.2f}",
                    f"{ours_s:.3f}",
                    f"{floor_s:.3f}",
                    f"{ours_s / floor_s:.2f}x",
                    f"{hours_s:.3f}",
                ]
            )
            targets.check(
                f"{label} from Parquet < {TARGET_PARQUET_S:g} s",
                ours_s < TARGET_PARQUET_S,
                f"{ours_s:.3f} s (scan_parquet floor {floor_s:.3f} s over {len(copies)} "
                f"per-day copies, {hours_s:.3f} s over {len(hour_files)} hour files)",
            )
        if args.no_postgres:
            targets.skip(
                f"1 symbol x 1 year from PostgreSQL < {TARGET_POSTGRES_S:g} s", "--no-postgres"
            )
        else:
            postgres_rows(year, targets, rows)
    print(
        table(
            [
                "read",
                "backend",
                "rows",
                "partitions",
                "files read",
                "write s",
                "compact s",
                "again s",
                "read_bars s (best of 3)",
                "scan_parquet s",
                "vs floor",
                "hour files s",
            ],
            rows,
        )
    )
    print()
    code = targets.report()
    print(f"\nruntime {time.monotonic() - began:.1f} s")
    return code


def postgres_rows(year: pl.DataFrame, targets: Targets, rows: list[list[Any]]) -> None:
    name = f"1 symbol x 1 year from PostgreSQL < {TARGET_POSTGRES_S:g} s"
    try:
        import psycopg2

        from resources.storage.postgres import PostgresWarehouse
    except ImportError as exc:
        targets.skip(name, f"cannot import the backend: {exc}")
        return
    try:
        database = fresh_database()
        url = database.__enter__()
    except psycopg2.OperationalError as exc:
        targets.skip(name, f"PostgreSQL not reachable: {str(exc).strip().splitlines()[0]}")
        return
    try:
        with PostgresWarehouse(url) as warehouse:
            written = write_hourly(warehouse, tables_of(YEAR_SOURCE)("core_bars"), year)
            read_s, got = best_of(
                lambda: layer_read(warehouse, YEAR_SOURCE, ["BTCUSD"], YEAR_START, YEAR_END)
            )
            assert got.equals(year), "PostgreSQL read differs from what was written"
        rows.append(
            [
                "1 symbol x 1 year",
                "PostgreSQL",
                f"{got.height:,}",
                f"{written.partitions:,}",
                "—",
                f"{written.write_s:.1f}",
                f"{written.compact_s:.2f}",
                f"{written.compact_again_s:.2f}",
                f"{read_s:.3f}",
                "—",
                "—",
                "—",
            ]
        )
        targets.check(name, read_s < TARGET_POSTGRES_S, f"{read_s:.3f} s")
    finally:
        database.__exit__(None, None, None)


if __name__ == "__main__":
    raise SystemExit(main())
