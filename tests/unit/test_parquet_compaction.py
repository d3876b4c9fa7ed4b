"""ParquetWarehouse's per-day compacted copies: reads give the hour files' rows, compacted or
not, and never stale ones (resources/storage/parquet.py, "Compacted days")."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.errors import InvalidInputError, StorageError
from resources.storage.atomic import TEMP_PREFIX, atomic_write
from resources.storage.parquet import COMPACTED_DIR, COMPACTION_RECORD_KEY, ParquetWarehouse

TABLE = "bars"
DAY = "2026-01-05"
NEXT_DAY = "2026-01-06"


def key(day: str, hour: int) -> str:
    return f"{day}-{hour:02d}:00"


def hours(day: str, *which: int) -> list[str]:
    return [key(day, h) for h in which]


def bars(partition_key: str, *, version: int = 1, rows: int = 3) -> pl.DataFrame:
    """Rows of one hour, told apart by their minute and their version."""
    start = datetime.strptime(partition_key, "%Y-%m-%d-%H:%M").replace(tzinfo=UTC)
    return pl.DataFrame(
        {
            "symbol": ["AAPL"] * rows,
            "ts": [start + timedelta(minutes=m) for m in range(rows)],
            "version": [version] * rows,
            "close": [100.0 + version + m / 100 for m in range(rows)],
        }
    )


def expected(*parts: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(parts)


@pytest.fixture
def wh(tmp_path: Path) -> ParquetWarehouse:
    return ParquetWarehouse(tmp_path / "wh")


def write(wh: ParquetWarehouse, keys: list[str], *, version: int = 1) -> pl.DataFrame:
    frames = [bars(k, version=version) for k in keys]
    for k, frame in zip(keys, frames, strict=True):
        wh.replace_partition(TABLE, k, frame)
    return pl.concat(frames)


def copy_of(wh: ParquetWarehouse, day: str, table: str = TABLE) -> Path:
    return wh.root / COMPACTED_DIR / table / f"{day}.parquet"


def read(wh: ParquetWarehouse, keys: list[str] | None = None) -> pl.DataFrame:
    return wh.scan(TABLE, keys).collect()


def forge_copy(wh: ParquetWarehouse, day: str, rows: pl.DataFrame) -> None:
    """Replace a day's copy by other rows under its own, still current, record."""
    path = copy_of(wh, day)
    record = pl.read_parquet_metadata(path)[COMPACTION_RECORD_KEY]
    rows.write_parquet(path, metadata={COMPACTION_RECORD_KEY: record})


def test_reads_after_compaction_equal_reads_of_the_hour_files(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0, 1, 2, 23) + hours(NEXT_DAY, 5, 6)
    write(wh, keys)
    before = read(wh)

    wh.compact(TABLE, keys)

    assert copy_of(wh, DAY).exists() and copy_of(wh, NEXT_DAY).exists()
    assert_frame_equal(read(wh), before)
    assert_frame_equal(read(wh, keys), before)
    assert_frame_equal(wh.scan(TABLE, hours(NEXT_DAY, 5, 6)).collect(), before.tail(6))


def test_reads_use_a_current_copy(wh: ParquetWarehouse) -> None:
    """A forged copy under a current record is what reads return: the copies are read, so the
    fallbacks tested below are not what every read does anyway."""
    keys = hours(DAY, 0, 1)
    write(wh, keys)
    wh.compact(TABLE, keys)

    forge_copy(wh, DAY, bars(key(DAY, 0), version=99, rows=6))

    assert read(wh, keys)["version"].to_list() == [99] * 6


def test_rows_come_in_the_order_of_the_keys_as_before(wh: ParquetWarehouse) -> None:
    day_1, day_2 = hours(DAY, 3, 4), hours(NEXT_DAY, 0, 1)
    write(wh, day_1 + day_2)
    asked = [day_2, day_1, day_1[::-1], [day_1[0], day_1[0]], [day_1[0], *day_2, day_1[1]]]
    before = [read(wh, keys) for keys in asked]

    wh.compact(TABLE, day_1 + day_2)

    for keys, rows in zip(asked, before, strict=True):
        assert_frame_equal(read(wh, keys), rows)
    assert read(wh, [day_1[0], day_1[0]]).height == 6  # a key asked twice, read twice


def test_an_hour_rewritten_after_compaction_is_read_new(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0, 1, 2)
    write(wh, keys)
    wh.compact(TABLE, keys)

    # The same size and shape: only the file's identity tells the versions apart.
    wh.replace_partition(TABLE, keys[1], bars(keys[1], version=2))

    want = expected(bars(keys[0]), bars(keys[1], version=2), bars(keys[2]))
    assert_frame_equal(read(wh), want)
    wh.compact(TABLE, keys[1:2])
    assert_frame_equal(read(wh), want)


def test_an_hour_added_to_a_compacted_day_is_read_once(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0, 2)
    write(wh, keys)
    wh.compact(TABLE, keys)

    write(wh, hours(DAY, 1), version=2)

    want = expected(bars(keys[0]), bars(key(DAY, 1), version=2), bars(keys[1]))
    assert_frame_equal(read(wh), want)
    wh.compact(TABLE, hours(DAY, 1))
    assert_frame_equal(read(wh), want)


def test_a_deleted_hour_is_not_read_from_the_copy(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0, 1, 2)
    write(wh, keys)
    wh.compact(TABLE, keys)

    (wh.root / TABLE / "2026-01-05-0100.parquet").unlink()

    assert wh.partition_keys(TABLE) == hours(DAY, 0, 2)
    assert_frame_equal(read(wh), expected(bars(keys[0]), bars(keys[2])))
    with pytest.raises(StorageError, match="not materialized yet: 2026-01-05-01:00"):
        read(wh, keys)


def test_a_subset_of_a_compacted_day_reads_only_its_hours(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0, 1, 2, 3)
    write(wh, keys)
    wh.compact(TABLE, keys)

    assert_frame_equal(read(wh, keys[1:3]), expected(bars(keys[1]), bars(keys[2])))
    assert_frame_equal(read(wh, [keys[3]]), bars(keys[3]))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(b"not parquet"), id="garbage"),
        pytest.param(
            lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
            id="truncated",
        ),
        pytest.param(
            lambda path: pl.read_parquet(path).write_parquet(
                path, metadata={COMPACTION_RECORD_KEY: "{not json"}
            ),
            id="record unreadable",
        ),
        pytest.param(lambda path: pl.read_parquet(path).write_parquet(path), id="record missing"),
        pytest.param(lambda path: path.unlink(), id="copy missing"),
    ],
)
def test_a_damaged_copy_falls_back_to_the_hour_files(wh: ParquetWarehouse, damage) -> None:
    keys = hours(DAY, 0, 1)
    want = write(wh, keys)
    wh.compact(TABLE, keys)

    damage(copy_of(wh, DAY))

    assert_frame_equal(read(wh), want)
    wh.compact(TABLE, keys)  # and the next compaction repairs it
    forge_copy(wh, DAY, bars(keys[0], version=99))
    assert read(wh)["version"].to_list() == [99] * 3


def test_a_copy_of_another_day_is_not_taken_for_this_one(wh: ParquetWarehouse) -> None:
    write(wh, hours(DAY, 0))
    write(wh, hours(NEXT_DAY, 0))
    wh.compact(TABLE, hours(DAY, 0) + hours(NEXT_DAY, 0))

    # A copy restored under another day's name: its record names its own day.
    copy_of(wh, NEXT_DAY).write_bytes(copy_of(wh, DAY).read_bytes())

    assert_frame_equal(read(wh, hours(NEXT_DAY, 0)), bars(key(NEXT_DAY, 0)))


def test_compacting_twice_changes_nothing(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0, 1)
    write(wh, keys)
    wh.compact(TABLE, keys)
    path = copy_of(wh, DAY)
    first = (path.read_bytes(), path.stat().st_ino)

    wh.compact(TABLE, keys)
    wh.compact(TABLE, keys[:1])

    assert (path.read_bytes(), path.stat().st_ino) == first
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{DAY}.lock", f"{DAY}.parquet"]


def test_a_day_without_hour_files_has_no_copy(wh: ParquetWarehouse) -> None:
    wh.compact(TABLE, hours(DAY, 0, 1))
    assert not (wh.root / COMPACTED_DIR).exists()  # a day never written leaves nothing

    keys = hours(DAY, 0, 1)
    write(wh, keys)
    wh.compact(TABLE, keys)
    for k in keys:
        (wh.root / TABLE / f"{k.replace(':', '')}.parquet").unlink()
    wh.compact(TABLE, keys)

    assert not copy_of(wh, DAY).exists()
    assert wh.partition_keys(TABLE) == []


def test_the_table_folder_still_holds_each_row_once(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0, 1, 2) + hours(NEXT_DAY, 0)
    want = write(wh, keys)
    partition_keys = wh.partition_keys(TABLE)

    wh.compact(TABLE, keys)

    # The folder users point polars at, recursively: no copy inside it.
    assert_frame_equal(pl.scan_parquet(wh.root / TABLE).collect().sort("ts"), want.sort("ts"))
    assert wh.partition_keys(TABLE) == partition_keys == keys
    hour = wh.read_partition(TABLE, keys[1])
    assert hour is not None
    assert_frame_equal(hour, bars(keys[1]))


def test_daily_tables_are_not_compacted(wh: ParquetWarehouse) -> None:
    frames = {day: bars(f"{day}-00:00") for day in (DAY, NEXT_DAY)}
    for day, frame in frames.items():
        wh.replace_partition("daily", day, frame)

    wh.compact("daily", list(frames))

    assert not (wh.root / COMPACTED_DIR).exists()
    assert wh.partition_keys("daily") == [DAY, NEXT_DAY]
    assert_frame_equal(wh.scan("daily").collect(), pl.concat(frames.values()))


def test_compaction_refuses_what_other_partition_calls_refuse(wh: ParquetWarehouse) -> None:
    wh.replace_table("factors", bars(key(DAY, 0)), key=["ts"])
    with pytest.raises(InvalidInputError, match="factors is a whole table"):
        wh.compact("factors", hours(DAY, 0))
    with pytest.raises(InvalidInputError, match="invalid partition key"):
        wh.compact(TABLE, ["2026-01-05-03:00", "../../etc"])
    with pytest.raises(InvalidInputError, match="invalid table name"):
        wh.compact("../bars", hours(DAY, 0))
    assert not (wh.root / COMPACTED_DIR).exists()


def test_hour_files_that_do_not_combine_leave_the_day_without_copy(
    wh: ParquetWarehouse, caplog: pytest.LogCaptureFixture
) -> None:
    keys = hours(DAY, 0, 1)
    write(wh, keys)
    wh.compact(TABLE, keys)
    wh.replace_partition(TABLE, keys[1], bars(keys[1]).with_columns(extra=pl.lit(1)))

    with caplog.at_level(logging.WARNING, logger="fin_assets.warehouse"):
        wh.compact(TABLE, keys[1:])

    assert not copy_of(wh, DAY).exists()
    assert any("bars 2026-01-05: not compacted" in r.getMessage() for r in caplog.records)
    assert_frame_equal(read(wh, keys[:1]), bars(keys[0]))  # the day's hours read as before


def test_an_hour_rewritten_while_its_day_is_compacted_is_read_new(
    wh: ParquetWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a writer and a compaction: the copy holds the old rows, and its record the
    identity of the file those rows were read from, so reads see that the hour changed. Our
    writers take the day's lock, so they wait for the compaction; this writer does not (an
    older version, a tool replacing the file by hand), and the identities still catch it."""
    keys = hours(DAY, 0, 1)
    write(ParquetWarehouse(wh.root), keys)  # another process: wh has to read the files
    read_parquet = pl.read_parquet
    rewritten: list[os.stat_result] = []
    hour_file = wh.root / TABLE / f"{keys[0].replace(':', '')}.parquet"

    def read_then_rewrite(source, *args, **kwargs):  # the compaction read the old bytes ...
        frame = read_parquet(source, *args, **kwargs)
        if not rewritten and isinstance(source, bytes):  # ... then a writer replaces the hour
            new = bars(keys[0], version=2)
            rewritten.append(atomic_write(hour_file, lambda tmp: new.write_parquet(tmp)))
        return frame

    monkeypatch.setattr(pl, "read_parquet", read_then_rewrite)
    wh.compact(TABLE, keys)
    monkeypatch.undo()

    assert rewritten and copy_of(wh, DAY).exists()
    assert_frame_equal(read(wh), expected(bars(keys[0], version=2), bars(keys[1])))
    wh.compact(TABLE, keys[:1])  # the writer's own compaction, next
    forge_copy(wh, DAY, bars(keys[0], version=99))
    assert read(wh)["version"].to_list() == [99] * 3  # current again, so read


def test_a_compaction_waits_for_one_of_the_same_day(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0)
    write(wh, keys)
    lock = copy_of(wh, DAY).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process compacting the day
        compaction = threading.Thread(target=wh.compact, args=(TABLE, keys))
        compaction.start()
        time.sleep(0.2)
        assert compaction.is_alive() and not copy_of(wh, DAY).exists()
    compaction.join(timeout=10)

    assert not compaction.is_alive() and copy_of(wh, DAY).exists()
    assert_frame_equal(read(wh), bars(keys[0]))


def test_sweep_removes_orphaned_temp_files_of_the_copies(wh: ParquetWarehouse) -> None:
    keys = hours(DAY, 0)
    write(wh, keys)
    wh.compact(TABLE, keys)
    orphan = copy_of(wh, DAY).parent / f"{TEMP_PREFIX}dead-{DAY}.parquet"
    orphan.write_bytes(b"half a copy")
    hours_ago = time.time() - 2 * 3600
    os.utime(orphan, (hours_ago, hours_ago))

    assert wh.sweep() == 1
    assert not orphan.exists() and copy_of(wh, DAY).exists()
    assert_frame_equal(read(wh), bars(keys[0]))


def test_rows_this_instance_wrote_are_compacted_from_memory_only_while_the_file_is_theirs(
    wh: ParquetWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compact takes the rows wh wrote from memory (no read of its own files) unless another
    writer replaced the file since: then that writer's rows, read from the file."""
    keys = hours(DAY, 0, 1)
    write(wh, keys)
    other = ParquetWarehouse(wh.root)
    other.replace_partition(TABLE, keys[1], bars(keys[1], version=2))
    read_parquet = pl.read_parquet
    reads: list[object] = []

    def counting(source, *args, **kwargs):
        reads.append(source)
        return read_parquet(source, *args, **kwargs)

    monkeypatch.setattr(pl, "read_parquet", counting)
    wh.compact(TABLE, keys)
    monkeypatch.undo()

    assert len(reads) == 1  # the hour the other writer replaced; hour 0 came from memory
    assert_frame_equal(read(wh), expected(bars(keys[0]), bars(keys[1], version=2)))
    forge_copy(wh, DAY, bars(keys[0], version=99))
    assert read(wh)["version"].to_list() == [99] * len(read(wh))  # the copy is current: used
