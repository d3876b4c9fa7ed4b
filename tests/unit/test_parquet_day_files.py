"""Hours stored a day per file in the Parquet lake (``replace_partitions(..., by_day=True)``):
the same partitions, rows and errors as hour files, one file per day, and a lake of hour files
taken in day by day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.errors import InvalidInputError, StorageError
from resources.storage.parquet import COMPACTED_DIR, DAY_FILE_SUFFIX, ParquetWarehouse

TABLE = "bars_5m"
DAY = "2026-01-05"


def key(hour: int, day: str = DAY) -> str:
    return f"{day}-{hour:02d}:00"


def bars(partition_key: str, *, version: int = 1, rows: int = 3) -> pl.DataFrame:
    start = datetime.strptime(partition_key, "%Y-%m-%d-%H:%M").replace(tzinfo=UTC)
    return pl.DataFrame(
        {
            "symbol": ["AAPL"] * rows,
            "ts": [start + timedelta(minutes=5 * m) for m in range(rows)],
            "close": [100.0 + m for m in range(rows)],
            "version": [version] * rows,
        },
        schema={
            "symbol": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "close": pl.Float64,
            "version": pl.Int64,
        },
    )


@pytest.fixture
def wh(tmp_path: Path) -> ParquetWarehouse:
    return ParquetWarehouse(tmp_path / "wh")


def files(wh: ParquetWarehouse) -> list[str]:
    return sorted(p.name for p in (wh.root / TABLE).iterdir())


def test_hours_written_by_day_read_back_as_hour_files_would(
    wh: ParquetWarehouse, tmp_path: Path
) -> None:
    parts = [(key(h), bars(key(h), rows=h % 3)) for h in (0, 1, 2, 23)]  # hour 0 has no row
    parts.append((key(0, "2026-01-06"), bars(key(0, "2026-01-06"))))
    results = wh.replace_partitions(TABLE, parts, by_day=True)

    assert files(wh) == [f"2026-01-05{DAY_FILE_SUFFIX}", f"2026-01-06{DAY_FILE_SUFFIX}"]
    assert [(r.partition_key, r.rows) for r in results] == [(k, f.height) for k, f in parts]
    hourly = ParquetWarehouse(tmp_path / "hourly")  # the same partitions, an hour per file
    for k, frame in parts:
        hourly.replace_partition(TABLE, k, frame)
    keys = [k for k, _ in parts]
    assert wh.partition_keys(TABLE) == hourly.partition_keys(TABLE) == sorted(keys)
    for k, frame in parts:
        assert_frame_equal(wh.read_partition(TABLE, k), frame)  # type: ignore[arg-type]
    assert_frame_equal(wh.scan(TABLE).collect(), hourly.scan(TABLE).collect())
    some = [key(23), key(1), key(0, "2026-01-06")]  # any subset, in the order asked
    assert_frame_equal(wh.scan(TABLE, some).collect(), hourly.scan(TABLE, some).collect())
    assert wh.read_partition(TABLE, key(5)) is None
    with pytest.raises(StorageError, match=f"not materialized yet: {key(5)}"):
        wh.scan(TABLE, [key(1), key(5)])
    # A plain folder scan (what a user runs on the lake) gives each row once.
    assert pl.scan_parquet(wh.root / TABLE).collect().height == sum(f.height for _, f in parts)


def test_an_hour_replaced_alone_goes_into_its_day_file_and_keeps_the_others(
    wh: ParquetWarehouse,
) -> None:
    wh.replace_partitions(TABLE, [(key(h), bars(key(h))) for h in (3, 4, 5)], by_day=True)
    wh.replace_partition(TABLE, key(4), bars(key(4), version=2, rows=1))  # an hourly run
    wh.replace_partitions(TABLE, [(key(6), bars(key(6)))], by_day=True)

    assert files(wh) == [f"{DAY}{DAY_FILE_SUFFIX}"]
    got = wh.scan(TABLE).collect()
    assert got["version"].to_list() == [1, 1, 1, 2, 1, 1, 1, 1, 1, 1]
    assert_frame_equal(wh.read_partition(TABLE, key(4)), bars(key(4), version=2, rows=1))  # type: ignore[arg-type]
    # Idempotent: the same write again leaves the same rows.
    wh.replace_partition(TABLE, key(4), bars(key(4), version=2, rows=1))
    assert_frame_equal(wh.scan(TABLE).collect(), got)


def test_a_day_of_hour_files_is_taken_into_its_day_file(wh: ParquetWarehouse) -> None:
    """A lake written an hour per file (an earlier version): the first by-day write of a day
    folds that day's other hours in and removes their files and the day's compacted copy;
    other days keep their hour files, and reads mix the two."""
    for h in (0, 1, 2):
        wh.replace_partition(TABLE, key(h), bars(key(h)))
    wh.replace_partition(TABLE, key(0, "2026-01-06"), bars(key(0, "2026-01-06")))
    wh.compact(TABLE, [key(0)])
    assert (wh.root / COMPACTED_DIR / TABLE / f"{DAY}.parquet").exists()

    wh.replace_partitions(TABLE, [(key(1), bars(key(1), version=2))], by_day=True)

    assert files(wh) == [f"{DAY}{DAY_FILE_SUFFIX}", "2026-01-06-0000.parquet"]
    assert not (wh.root / COMPACTED_DIR / TABLE / f"{DAY}.parquet").exists()
    got = wh.scan(TABLE).collect()
    assert got["version"].to_list() == [1] * 3 + [2] * 3 + [1] * 3 + [1] * 3
    assert wh.partition_keys(TABLE) == [key(0), key(1), key(2), key(0, "2026-01-06")]
    wh.compact(TABLE, [key(0), key(0, "2026-01-06")])  # a day stored by day has no copy
    assert not (wh.root / COMPACTED_DIR / TABLE / f"{DAY}.parquet").exists()
    assert_frame_equal(wh.scan(TABLE).collect(), got)


def test_bad_day_files_and_bad_requests_fail_naming_what(wh: ParquetWarehouse) -> None:
    with pytest.raises(InvalidInputError, match="only hours are stored by day"):
        wh.replace_partitions(TABLE, [(DAY, bars(key(0)))], by_day=True)
    wh.replace_partitions(TABLE, [(key(0), bars(key(0)))], by_day=True)
    with pytest.raises(StorageError, match="do not share one schema"):
        wh.replace_partitions(TABLE, [(key(1), bars(key(1)).drop("version"))], by_day=True)
    assert wh.scan(TABLE).collect().height == 3  # nothing half-written
    day_file = wh.root / TABLE / f"{DAY}{DAY_FILE_SUFFIX}"
    bars(key(0)).write_parquet(day_file)  # rows without their record: not guessed at
    with pytest.raises(StorageError, match=f"{TABLE} day {DAY}: unreadable day file"):
        wh.scan(TABLE).collect()
