"""SnapshotStore, ParquetWarehouse and atomic writes: what lands on disk, what survives a crash."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.endpoints import Feed
from resources.errors import DataValidationError, InvalidInputError, StorageError
from resources.raw.snapshots import SnapshotStore
from resources.storage.atomic import TEMP_PREFIX, atomic_write, atomic_write_bytes, sweep_temp_files
from resources.storage.base import WHOLE_TABLE, WriteResult
from resources.storage.parquet import ParquetWarehouse
from resources.storage.postgres import frame_from_copy_csv
from resources.storage.warehouse import warehouse_from_url
from tests.helpers import SIMULATOR_FEED

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "store")


def put(store: SnapshotStore, start: int, end: int, body: bytes | None = None, symbol="AAPL"):
    return store.write(
        feed=SIMULATOR_FEED,
        dataset="bars_1m",
        symbol=symbol,
        start=minutes(start),
        end=minutes(end),
        body=body if body is not None else f"body {start}-{end}".encode(),
        meta={"fetched_at": "2026-01-06T00:00:00+00:00", "status": 200},
    )


def listed(store: SnapshotStore, start: int | None = None, end: int | None = None):
    bounds = {} if start is None else {"start": minutes(start), "end": minutes(end)}
    refs = store.list(feed=SIMULATOR_FEED, dataset="bars_1m", symbol="AAPL", **bounds)
    return [(r.start, r.end) for r in refs]


def gaps(store: SnapshotStore, start: int, end: int) -> list[tuple[datetime, datetime]]:
    return store.uncovered(
        feed=SIMULATOR_FEED,
        dataset="bars_1m",
        symbol="AAPL",
        start=minutes(start),
        end=minutes(end),
    )


# -- SnapshotStore ---------------------------------------------------------------------------


def test_write_then_read_returns_identical_bytes(store: SnapshotStore) -> None:
    body = b'{"bars": [], "note": "\xc3\xa9 verbatim \\u00e9"}  \n'
    ref = put(store, 0, 60, body)

    assert store.read(ref) == body
    assert (store.root / ref.path).read_bytes() == body
    assert ref.path == (
        f"raw/simulator@127.0.0.1_8765/bars_1m/AAPL/20260105T0000Z_20260105T0100Z."
        f"{hashlib.sha256(body).hexdigest()[:12]}.json"
    )
    assert (ref.start, ref.end) == (minutes(0), minutes(60))
    # a manifest entry reads back the same bytes
    assert store.read(ref.as_manifest_entry()) == body


def test_sidecar_records_digest_size_and_coverage(store: SnapshotStore) -> None:
    body = b'{"bars": [1, 2, 3]}'
    ref = put(store, 0, 60, body)

    meta = store.read_meta(ref)
    assert meta["sha256"] == hashlib.sha256(body).hexdigest()
    assert meta["bytes"] == len(body)
    assert meta["coverage_start"] == "2026-01-05T00:00:00+00:00"
    assert meta["coverage_end"] == "2026-01-05T01:00:00+00:00"
    assert meta["fetched_at"] == "2026-01-06T00:00:00+00:00"
    assert (meta["provider"], meta["dataset"], meta["symbol"]) == ("simulator", "bars_1m", "AAPL")
    sidecar = store.root / ref.path.replace(".json", ".meta.json")
    assert json.loads(sidecar.read_bytes()) == meta


def test_same_body_written_twice_lands_at_the_same_path(store: SnapshotStore) -> None:
    first = put(store, 0, 60, b"same bytes")
    second = put(store, 0, 60, b"same bytes")
    assert first == second
    assert len(listed(store)) == 1
    other = put(store, 0, 60, b"other bytes")
    assert other.path != first.path
    assert len(listed(store)) == 2


def test_list_returns_only_snapshots_overlapping_the_window(store: SnapshotStore) -> None:
    put(store, 0, 10)
    put(store, 10, 20)
    put(store, 30, 40)
    put(store, 0, 100, symbol="MSFT")

    assert listed(store) == [
        (minutes(0), minutes(10)),
        (minutes(10), minutes(20)),
        (minutes(30), minutes(40)),
    ]
    # end-exclusive on both sides: [0,10) and [30,40) do not overlap [10,30)
    assert listed(store, 10, 30) == [(minutes(10), minutes(20))]
    assert listed(store, 5, 31) == [
        (minutes(0), minutes(10)),
        (minutes(10), minutes(20)),
        (minutes(30), minutes(40)),
    ]
    assert listed(store, 20, 30) == []


def test_list_of_an_unknown_symbol_is_empty(store: SnapshotStore) -> None:
    assert store.list(feed=SIMULATOR_FEED, dataset="bars_1m", symbol="NONE") == []


def test_a_body_without_its_sidecar_does_not_count(store: SnapshotStore) -> None:
    ref = put(store, 0, 60)
    sidecar = store.root / ref.path.replace(".json", ".meta.json")
    sidecar.unlink()

    assert listed(store) == []
    assert gaps(store, 0, 60) == [(minutes(0), minutes(60))]


def test_temp_files_and_foreign_files_are_not_listed(store: SnapshotStore) -> None:
    ref = put(store, 0, 60)
    directory = (store.root / ref.path).parent
    (directory / f"{TEMP_PREFIX}abc-20260105T0100Z_20260105T0200Z.aaaaaaaaaaaa.meta.json").touch()
    (directory / "notes.meta.json").touch()
    (directory / "notes.json").touch()
    assert listed(store) == [(minutes(0), minutes(60))]


@pytest.mark.parametrize(
    ("stored", "window", "expected"),
    [
        ([], (0, 60), [(0, 60)]),
        ([(10, 20)], (0, 60), [(0, 10), (20, 60)]),
        ([(0, 30), (30, 60)], (0, 60), []),
        ([(-5, 10), (5, 30), (40, 70)], (0, 60), [(30, 40)]),
        ([(0, 10), (50, 60)], (0, 60), [(10, 50)]),
        ([(-60, 120)], (0, 60), []),
        ([(20, 40)], (0, 30), [(0, 20)]),
        ([(100, 200)], (0, 60), [(0, 60)]),
    ],
)
def test_uncovered_returns_the_exact_gaps(store, stored, window, expected) -> None:
    for start, end in stored:
        put(store, start, end)
    assert gaps(store, *window) == [(minutes(a), minutes(b)) for a, b in expected]


def test_read_of_a_tampered_snapshot_raises(store: SnapshotStore) -> None:
    ref = put(store, 0, 60, b'{"bars": [{"c": 100.0}]}')
    (store.root / ref.path).write_bytes(b'{"bars": [{"c": 999.0}]}')
    with pytest.raises(StorageError, match="corrupt") as info:
        store.read(ref)
    assert ref.path in str(info.value)


def test_read_of_a_missing_snapshot_raises(store: SnapshotStore) -> None:
    ref = put(store, 0, 60)
    (store.root / ref.path).unlink()
    with pytest.raises(StorageError, match="missing"):
        store.read(ref)


def test_a_snapshot_symlinked_out_of_the_store_is_refused(
    store: SnapshotStore, tmp_path: Path
) -> None:
    """Reads open files by name in directories resolved once: a file replaced by a symlink
    must still get the full check, on the first read and on later ones."""
    inside = put(store, 0, 60, b'{"bars": []}')
    ref = put(store, 60, 120, b'{"bars": [1]}')
    assert store.read(inside) == b'{"bars": []}'  # the directory is resolved and remembered
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes(b'{"bars": [1]}')  # the same bytes: only the path check can refuse it
    (store.root / ref.path).unlink()
    (store.root / ref.path).symlink_to(outside)
    with pytest.raises(InvalidInputError, match="escapes its root"):
        store.read(ref)
    sidecar = store.root / (ref.path[: -len(".json")] + ".meta.json")
    sidecar.rename(tmp_path / "meta.json")
    sidecar.symlink_to(tmp_path / "meta.json")
    with pytest.raises(InvalidInputError, match="escapes its root"):
        store.read_meta(ref)
    # A symlink that stays inside the store reads as before.
    (store.root / ref.path).unlink()
    (store.root / ref.path).symlink_to(store.root / inside.path)
    with pytest.raises(StorageError, match="corrupt"):  # other bytes than its digest
        store.read(ref)


@pytest.mark.parametrize(
    "names",
    [
        {"symbol": "../etc"},
        {"symbol": "A;DROP"},
        {"symbol": "AAPL\n"},
        {"feed": Feed("../simulator", "127.0.0.1:8765")},
        {"dataset": "bars/../../x"},
    ],
)
def test_invalid_names_create_nothing(tmp_path: Path, names: dict[str, str]) -> None:
    root = tmp_path / "store"
    store = SnapshotStore(root)
    args: dict[str, Any] = {
        "feed": SIMULATOR_FEED,
        "dataset": "bars_1m",
        "symbol": "AAPL",
        **names,
    }
    with pytest.raises(InvalidInputError):
        store.write(**args, start=minutes(0), end=minutes(60), body=b"x", meta={})
    with pytest.raises(InvalidInputError):
        store.list(**args)
    assert not root.exists()
    assert all_files(tmp_path) == []


def test_a_manifest_path_escaping_the_root_is_refused(store: SnapshotStore) -> None:
    with pytest.raises(InvalidInputError, match="escapes its root"):
        store.read({"path": "../../etc/passwd", "sha256": "0" * 12})


def test_manifest_round_trip(store: SnapshotStore) -> None:
    ref = put(store, 180, 240)
    manifest = {
        "asset": "raw/bars",
        "partition": "2026-01-05-03:00",
        "symbols": {"AAPL": [ref.as_manifest_entry()]},
    }
    path = store.write_manifest(
        asset="raw_bars", partition_key="2026-01-05-03:00", manifest=manifest
    )

    assert path == store.root / "manifests" / "raw_bars" / "2026-01-05-0300.json"
    assert store.read_manifest(asset="raw_bars", partition_key="2026-01-05-03:00") == manifest
    entries = [(s, e) for s, listed in manifest["symbols"].items() for e in listed]
    assert [(symbol, store.read(entry)) for symbol, entry in entries] == [("AAPL", b"body 180-240")]


def test_missing_manifest_names_the_partition(store: SnapshotStore) -> None:
    with pytest.raises(StorageError) as info:
        store.read_manifest(asset="raw_bars", partition_key="2026-01-05-04:00")
    assert "raw_bars partition 2026-01-05-04:00" in str(info.value)


def test_manifest_with_an_invalid_partition_key_is_refused(store: SnapshotStore) -> None:
    with pytest.raises(InvalidInputError):
        store.write_manifest(asset="raw_bars", partition_key="../x", manifest={})
    assert not store.root.exists()


# -- ParquetWarehouse ------------------------------------------------------------------------


def frame(version: int, rows: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": ["AAPL"] * rows,
            "i": list(range(rows)),
            "version": [version] * rows,
            "close": [100.0 + version + i / 100 for i in range(rows)],
        }
    )


def test_replace_partition_replaces_instead_of_appending(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    first = wh.replace_partition("bars", "2026-01-05-03:00", frame(1, 5))
    second = wh.replace_partition("bars", "2026-01-05-03:00", frame(2, 3))

    result = wh.read_partition("bars", "2026-01-05-03:00")
    assert_frame_equal(result, frame(2, 3))
    assert wh.scan("bars").collect().height == 3
    assert (first.rows, second.rows) == (5, 3)
    assert second.location == str(tmp_path / "wh" / "bars" / "2026-01-05-0300.parquet")
    assert second.bytes == Path(second.location).stat().st_size
    assert [p.name for p in (tmp_path / "wh" / "bars").iterdir()] == ["2026-01-05-0300.parquet"]


def test_partition_keys_restore_the_colon(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    for key in ("2026-01-05-04:00", "2026-01-05-03:00", "2026-01-06-00:00"):
        wh.replace_partition("bars", key, frame(1, 2))
    wh.replace_partition("daily", "2026-01-05", frame(1, 2))

    assert wh.partition_keys("bars") == ["2026-01-05-03:00", "2026-01-05-04:00", "2026-01-06-00:00"]
    assert wh.partition_keys("daily") == ["2026-01-05"]
    assert wh.partition_keys("nothing_yet") == []


def test_scan_reads_the_requested_partitions(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    wh.replace_partition("bars", "2026-01-05-03:00", frame(1, 2))
    wh.replace_partition("bars", "2026-01-05-04:00", frame(2, 3))

    assert wh.scan("bars", ["2026-01-05-04:00"]).collect()["version"].to_list() == [2, 2, 2]
    assert sorted(wh.scan("bars").collect()["version"].to_list()) == [1, 1, 2, 2, 2]


def test_scan_of_a_missing_partition_names_it(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    wh.replace_partition("bars", "2026-01-05-03:00", frame(1, 2))
    with pytest.raises(StorageError) as info:
        wh.scan("bars", ["2026-01-05-03:00", "2026-01-05-05:00"])
    assert "2026-01-05-05:00" in str(info.value)
    assert "2026-01-05-03:00" not in str(info.value)
    with pytest.raises(StorageError, match="no partitions"):
        wh.scan("empty_table")


def test_read_of_a_missing_partition_is_none(tmp_path: Path) -> None:
    assert ParquetWarehouse(tmp_path / "wh").read_partition("bars", "2026-01-05") is None


def test_read_of_a_corrupt_partition_raises(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    result = wh.replace_partition("bars", "2026-01-05", frame(1, 2))
    Path(result.location).write_bytes(b"not parquet at all")
    with pytest.raises(StorageError, match="bars partition 2026-01-05: unreadable"):
        wh.read_partition("bars", "2026-01-05")


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("Bars", "2026-01-05"),
        ("../bars", "2026-01-05"),
        ("bars;drop", "2026-01-05"),
        ("bars", "../x"),
        ("bars", "2026-01-05-03:30"),
        ("bars", "2026-13-01"),
    ],
)
def test_invalid_table_or_partition_key_is_refused(tmp_path: Path, table: str, key: str) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    with pytest.raises(InvalidInputError):
        wh.replace_partition(table, key, frame(1, 2))
    with pytest.raises(InvalidInputError):
        wh.read_partition(table, key)
    assert all_files(tmp_path) == []


def test_warehouse_from_url(tmp_path: Path) -> None:
    assert warehouse_from_url(f"parquet://{tmp_path}").location == str(tmp_path)
    assert warehouse_from_url(f"file://{tmp_path}").location == str(tmp_path)
    assert warehouse_from_url(str(tmp_path)).location == str(tmp_path)
    # PostgreSQL URLs select the PostgreSQL backend (tests/postgres exercises it); the
    # password never shows in its location.
    pg = warehouse_from_url("postgresql://fin:hunter2@localhost:5432/db")
    assert type(pg).__name__ == "PostgresWarehouse"
    assert "hunter2" not in pg.location
    with pytest.raises(InvalidInputError, match="unsupported PostgreSQL URL scheme"):
        warehouse_from_url("postgresql+psycopg2://localhost/db")
    with pytest.raises(InvalidInputError, match="'s3'"):
        warehouse_from_url("s3://bucket/x")


# -- ParquetWarehouse: whole tables ----------------------------------------------------------

FACTORS_KEY = ("symbol", "date")


def factors(
    version: int, rows: int, *, symbols: tuple[str, ...] = ("MSFT", "AAPL")
) -> pl.DataFrame:
    """An adjustment-factors-like whole table, every dtype the warehouse keeps, nulls included;
    rows deliberately out of key order (reads give them back sorted by the key)."""
    data: dict[str, list[Any]] = {
        "symbol": [],
        "date": [],
        "factor": [],
        "shares": [],
        "note": [],
        "computed_at": [],
    }
    for symbol in symbols:
        for i in reversed(range(rows)):
            data["symbol"].append(symbol)
            data["date"].append(date(2026, 1, 5) + timedelta(days=i))
            data["factor"].append(None if i % 3 == 2 else version + i / 7)
            data["shares"].append(None if i % 2 else version * 1000 + i)
            data["note"].append(["", None, 'split 2:1, "adjusted"'][i % 3])
            data["computed_at"].append(datetime(2026, 1, 6, 1, 2, 3, 456789, tzinfo=UTC))
    return pl.DataFrame(data, schema=FACTORS_SCHEMA)


FACTORS_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "date": pl.Date(),
        "factor": pl.Float64(),
        "shares": pl.Int64(),
        "note": pl.String(),
        "computed_at": pl.Datetime("us", "UTC"),
    }
)


def test_a_whole_table_round_trips_its_dtypes_in_key_order(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    table = factors(1, 6)

    result = wh.replace_table("adjustment_factors", table, key=FACTORS_KEY)

    back = wh.read_table("adjustment_factors")
    assert back is not None
    assert back.schema == FACTORS_SCHEMA
    assert_frame_equal(back, table.sort(FACTORS_KEY))
    assert back["note"].to_list()[:3] == ["", None, 'split 2:1, "adjusted"']  # "" is not null
    assert back["shares"].null_count() == 6
    assert_frame_equal(wh.scan_table("adjustment_factors").collect(), back)
    path = tmp_path / "wh" / "adjustment_factors.parquet"
    assert result == WriteResult(
        "adjustment_factors", WHOLE_TABLE, 12, path.stat().st_size, str(path)
    )
    assert result.partition_key == ""
    # One file beside the partitioned tables' folders: never one of their partitions.
    wh.replace_partition("bars", "2026-01-05", frame(1, 2))
    assert sorted(p.name for p in (tmp_path / "wh").iterdir()) == [
        "adjustment_factors.parquet",
        "bars",
    ]
    assert wh.partition_keys("bars") == ["2026-01-05"]


def test_replace_table_replaces_the_whole_table_and_is_idempotent(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    wh.replace_table("adjustment_factors", factors(1, 10), key=FACTORS_KEY)
    for _ in range(2):
        wh.replace_table("adjustment_factors", factors(2, 3, symbols=("NVDA",)), key=FACTORS_KEY)
        back = wh.read_table("adjustment_factors")
        assert back is not None
        assert_frame_equal(back, factors(2, 3, symbols=("NVDA",)).sort(FACTORS_KEY))
    empty = pl.DataFrame(schema=FACTORS_SCHEMA)
    wh.replace_table("adjustment_factors", empty, key=FACTORS_KEY)  # no rows is still a table
    assert_frame_equal(wh.read_table("adjustment_factors"), empty)  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "wh").iterdir()) == ["adjustment_factors.parquet"]


def test_a_failing_table_write_leaves_the_previous_table(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    previous = factors(1, 4)
    wh.replace_table("adjustment_factors", previous, key=FACTORS_KEY)
    # Its key is fine, but Parquet cannot hold an Object column: the write raises.
    unwritable = factors(2, 5).with_columns(pl.Series("blob", [object()] * 10, dtype=pl.Object))

    with pytest.raises(pl.exceptions.PolarsError):
        wh.replace_table("adjustment_factors", unwritable, key=FACTORS_KEY)

    assert_frame_equal(wh.read_table("adjustment_factors"), previous.sort(FACTORS_KEY))  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "wh").iterdir()) == ["adjustment_factors.parquet"]
    with pytest.raises(pl.exceptions.PolarsError):
        wh.replace_table("first_time", unwritable, key=FACTORS_KEY)
    assert wh.read_table("first_time") is None


def test_a_table_write_failing_halfway_leaves_the_previous_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    previous = factors(1, 4)
    wh.replace_table("adjustment_factors", previous, key=FACTORS_KEY)

    def disk_full(self: pl.DataFrame, file: Path, **kwargs: object) -> None:
        Path(file).write_bytes(b"PAR1 and then half a row group")  # torn, wherever it lands
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)
    with pytest.raises(OSError, match="No space left"):
        wh.replace_table("adjustment_factors", factors(2, 5), key=FACTORS_KEY)
    monkeypatch.undo()

    assert_frame_equal(wh.read_table("adjustment_factors"), previous.sort(FACTORS_KEY))  # type: ignore[arg-type]
    assert sorted(p.name for p in (tmp_path / "wh").iterdir()) == ["adjustment_factors.parquet"]


def test_racing_table_writers_leave_exactly_one_complete_version(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    versions = [factors(1, 3000), factors(2, 500, symbols=("NVDA", "GOOG", "AMZN"))]
    for _round in range(3):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def write(
            version: pl.DataFrame,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                for _ in range(3):
                    wh.replace_table("adjustment_factors", version, key=FACTORS_KEY)
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(v,)) for v in versions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        back = wh.read_table("adjustment_factors")
        assert back is not None
        assert any(back.equals(v.sort(FACTORS_KEY)) for v in versions)
        assert sorted(p.name for p in (tmp_path / "wh").iterdir()) == ["adjustment_factors.parquet"]


def test_a_null_or_duplicated_key_is_refused_naming_table_key_and_a_row(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    previous = factors(1, 3)
    wh.replace_table("adjustment_factors", previous, key=FACTORS_KEY)

    null_date = factors(2, 3).with_columns(
        date=pl.when(pl.col("symbol") == "AAPL").then(None).otherwise(pl.col("date"))
    )
    with pytest.raises(DataValidationError) as info:
        wh.replace_table("adjustment_factors", null_date, key=FACTORS_KEY)
    assert str(info.value).startswith(
        "adjustment_factors: 3 rows have a null in their key (symbol, date), e.g. symbol=AAPL, "
        "date=None, factor="
    )
    twice = pl.concat([factors(2, 3), factors(2, 3).head(1)])
    with pytest.raises(DataValidationError) as info:
        wh.replace_table("adjustment_factors", twice, key=FACTORS_KEY)
    assert str(info.value).startswith(
        "adjustment_factors: 2 rows share their key (symbol, date) with another, "
        "e.g. symbol=MSFT, date=2026-01-07, "
    )
    # A key naming the columns wrongly is the caller's bug, not the data's.
    for key, message in [
        ("symbol", "key must name the columns"),
        ((), "key must name the columns"),
        (("symbol", "day"), "key column day is not in the frame"),
        (("symbol", "symbol"), "names a column twice"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            wh.replace_table("adjustment_factors", factors(2, 3), key=key)
    assert_frame_equal(wh.read_table("adjustment_factors"), previous.sort(FACTORS_KEY))  # type: ignore[arg-type]


def test_a_table_name_is_partitioned_or_whole_never_both(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    wh.replace_partition("core_bars", "2026-01-05-03:00", frame(1, 2))
    wh.replace_table("adjustment_factors", factors(1, 2), key=FACTORS_KEY)
    before = all_files(tmp_path)

    with pytest.raises(InvalidInputError, match="core_bars is partitioned hourly .* not a whole"):
        wh.replace_table("core_bars", factors(1, 2), key=FACTORS_KEY)
    with pytest.raises(InvalidInputError, match="core_bars is partitioned hourly"):
        wh.read_table("core_bars")
    with pytest.raises(InvalidInputError, match="core_bars is partitioned hourly"):
        wh.scan_table("core_bars")
    whole = "adjustment_factors is a whole table .* not a partitioned one"
    with pytest.raises(InvalidInputError, match=whole):
        wh.replace_partition("adjustment_factors", "2026-01-05", frame(1, 2))
    with pytest.raises(InvalidInputError, match=whole):
        wh.read_partition("adjustment_factors", "2026-01-05")
    with pytest.raises(InvalidInputError, match=whole):
        wh.partition_keys("adjustment_factors")
    with pytest.raises(InvalidInputError, match=whole):
        wh.scan("adjustment_factors")
    with pytest.raises(InvalidInputError, match=whole):
        wh.scan("adjustment_factors", ["2026-01-05"])
    assert all_files(tmp_path) == before


def test_a_table_never_written_reads_as_none_and_scans_as_an_error(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    assert wh.read_table("adjustment_factors") is None
    with pytest.raises(StorageError, match="adjustment_factors: whole table never written"):
        wh.scan_table("adjustment_factors")
    assert all_files(tmp_path) == []


def test_a_corrupt_table_file_is_an_error_naming_it(tmp_path: Path) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    result = wh.replace_table("adjustment_factors", factors(1, 2), key=FACTORS_KEY)
    Path(result.location).write_bytes(b"not parquet at all")
    with pytest.raises(StorageError, match="adjustment_factors \\(whole table\\): unreadable"):
        wh.read_table("adjustment_factors")


@pytest.mark.parametrize("table", ["Factors", "../factors", "factors;drop", "a" * 64, ""])
def test_invalid_whole_table_names_are_refused(tmp_path: Path, table: str) -> None:
    wh = ParquetWarehouse(tmp_path / "wh")
    with pytest.raises(InvalidInputError, match="invalid table name"):
        wh.replace_table(table, factors(1, 2), key=FACTORS_KEY)
    with pytest.raises(InvalidInputError, match="invalid table name"):
        wh.read_table(table)
    with pytest.raises(InvalidInputError, match="invalid table name"):
        wh.scan_table(table)
    assert all_files(tmp_path) == []


# -- crash safety ----------------------------------------------------------------------------

CHILD = """
import sys
import polars as pl
from resources.storage.parquet import ParquetWarehouse

rows = int(sys.argv[2])
ids = pl.arange(0, rows, eager=True)
frame = pl.DataFrame({"i": ids, "version": 2, "x": ids.cast(pl.Float64).sin()})
print("writing", flush=True)
ParquetWarehouse(sys.argv[1]).replace_partition("bars", "2026-01-05-03:00", frame)
"""


def temp_files(directory: Path) -> list[str]:
    return [e.name for e in os.scandir(directory) if e.name.startswith(TEMP_PREFIX)]


def kill_while_writing(root: Path, rows: int) -> tuple[int, list[str]]:
    """Start a writer, SIGKILL it as soon as its temp file shows up; (returncode, temps)."""
    table_dir = root / "bars"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(rows)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60  # a hang guard, not an assertion on speed
        while proc.poll() is None and time.monotonic() < deadline:
            if temp_files(table_dir):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.0005)
        else:
            if proc.poll() is None:
                proc.kill()
    finally:
        _, stderr = proc.communicate(timeout=60)
    if proc.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"writer failed on its own (rc {proc.returncode}): {stderr.decode()}")
    return proc.returncode, temp_files(table_dir)


def test_a_writer_killed_mid_write_leaves_the_previous_version(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    wh = ParquetWarehouse(root)
    version_1 = frame(1, 10)
    rows = 3_000_000
    for _attempt in range(3):
        wh.replace_partition("bars", "2026-01-05-03:00", version_1)
        returncode, temps = kill_while_writing(root, rows)
        if returncode == -signal.SIGKILL and temps:
            break
        # The child got to its rename before the kill landed: give it more to write.
        for name in temps:
            (root / "bars" / name).unlink()
        rows *= 2
    else:
        pytest.fail("never caught the writer mid-write in 3 attempts")

    assert returncode == -signal.SIGKILL
    assert len(temps) == 1
    assert temps[0].endswith("-2026-01-05-0300.parquet")

    # Readers see version 1, whole, and the orphaned temp file is not a partition.
    assert_frame_equal(wh.read_partition("bars", "2026-01-05-03:00"), version_1)
    assert wh.partition_keys("bars") == ["2026-01-05-03:00"]
    assert wh.scan("bars").collect().height == 10

    # A young temp file may belong to a live writer; an old one is swept.
    assert sweep_temp_files(root) == 0
    assert temp_files(root / "bars") == temps
    assert sweep_temp_files(root, older_than_s=0) == 1
    assert temp_files(root / "bars") == []
    assert_frame_equal(wh.read_partition("bars", "2026-01-05-03:00"), version_1)


# -- atomic_write ----------------------------------------------------------------------------


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "data" / "file.json"
    atomic_write_bytes(target, b"old contents")

    def half_write(tmp: Path) -> None:
        tmp.write_bytes(b"new cont")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_write)

    assert target.read_bytes() == b"old contents"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_a_writer_interrupted_before_creating_its_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "file.json"

    def interrupted(tmp: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_bytes_replaces_the_contents(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "dir" / "file.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_sweep_keeps_young_temp_files_and_ignores_a_missing_root(tmp_path: Path) -> None:
    young = tmp_path / "t" / f"{TEMP_PREFIX}young"
    old = tmp_path / "t" / f"{TEMP_PREFIX}old"
    keep = tmp_path / "t" / "keep.parquet"
    young.parent.mkdir()
    for path in (young, old, keep):
        path.write_bytes(b"x")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    os.utime(keep, (hours_ago, hours_ago))

    assert sweep_temp_files(tmp_path) == 1
    assert sorted(p.name for p in young.parent.iterdir()) == [f"{TEMP_PREFIX}young", "keep.parquet"]
    assert sweep_temp_files(tmp_path / "absent") == 0


# -- PostgresWarehouse: reading COPY's CSV back (no server needed) ----------------------------

COPY_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
        "day": pl.Date(),
        "price": pl.Float64(),
        "count": pl.UInt32(),
        "big": pl.Int64(),
        "note": pl.String(),
    }
)

# What PostgreSQL 15 sends for ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv)`` of these rows
# under the warehouse's READ_SETTINGS (captured from a real server): quoted "" for an empty
# string and nothing for NULL, exact floats, microseconds without trailing zeros.
COPY_OUTPUT = (
    b"AAPL,2026-01-05 03:00:00+00,2026-01-05,0.30000000000000004,4294967295,"
    b'9223372036854775807,"split 2:1, ""adjusted"""\n'
    b'MSFT,2026-01-05 03:00:00.000001+00,1970-01-01,-0,0,-9223372036854775808,""\n'
    b"NVDA,2026-01-05 03:59:59.999999+00,,1e-300,,,\n"
    b'X,0001-01-01 00:00:00.5+00,9999-12-31,NaN,1,1,"line one\nline two\r\n"\n'
    b"Y,9999-12-31 23:59:59.999999+00,2026-01-06,Infinity,2,-1, padded \n"
    b"Z,1970-01-01 00:00:00+00,2026-01-07,-Infinity,3,2,NULL\n"
    b"ZZ,2000-02-29 12:00:00.12+00,2026-01-08,5e-324,4,3,\\.\n"
    b"ZZZ,2000-02-29 12:00:00+00,2026-01-09,1.7976931348623157e+308,5,4,\xc3\xa9\xe2\x82\xac\n"
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


COPY_ROWS = [
    ("AAPL", utc(2026, 1, 5, 3), date(2026, 1, 5), 0.1 + 0.2, 2**32 - 1, 2**63 - 1,
     'split 2:1, "adjusted"'),
    ("MSFT", utc(2026, 1, 5, 3, 0, 0, 1), date(1970, 1, 1), -0.0, 0, -(2**63), ""),
    ("NVDA", utc(2026, 1, 5, 3, 59, 59, 999999), None, 1e-300, None, None, None),
    ("X", utc(1, 1, 1, 0, 0, 0, 500000), date(9999, 12, 31), float("nan"), 1, 1,
     "line one\nline two\r\n"),
    ("Y", utc(9999, 12, 31, 23, 59, 59, 999999), date(2026, 1, 6), float("inf"), 2, -1,
     " padded "),
    ("Z", utc(1970, 1, 1), date(2026, 1, 7), float("-inf"), 3, 2, "NULL"),
    ("ZZ", utc(2000, 2, 29, 12, 0, 0, 120000), date(2026, 1, 8), 5e-324, 4, 3, "\\."),
    ("ZZZ", utc(2000, 2, 29, 12), date(2026, 1, 9), 1.7976931348623157e308, 5, 4, "é€"),
]  # fmt: skip


def float_bits(values: pl.Series) -> list[bytes | None]:
    """Each float's 8 bytes: tells -0.0 from 0.0 and one NaN from another, as == does not."""
    return [None if v is None else struct.pack("<d", v) for v in values.to_list()]


def test_copy_csv_from_postgresql_reads_back_the_exact_values() -> None:
    expected = pl.DataFrame(COPY_ROWS, schema=COPY_SCHEMA, orient="row")

    got = frame_from_copy_csv(COPY_OUTPUT, COPY_SCHEMA)

    assert got.schema == COPY_SCHEMA
    assert_frame_equal(got, expected, check_exact=True)
    assert float_bits(got["price"]) == float_bits(expected["price"])
    assert got["note"].to_list()[:3] == ['split 2:1, "adjusted"', "", None]  # "" is not null
    assert got["note"].to_list()[3:6] == ["line one\nline two\r\n", " padded ", "NULL"]


def test_empty_copy_output_is_an_empty_frame_of_the_schema() -> None:
    got = frame_from_copy_csv(b"", COPY_SCHEMA)

    assert got.height == 0
    assert got.schema == COPY_SCHEMA


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("count", b"-1"),  # a UInt32 column holding a negative bigint (edited by hand)
        ("count", b"4294967296"),
        # What PostgreSQL prints under DateStyle 'SQL, DMY' and a non-UTC TimeZone: a read
        # that forgot READ_SETTINGS must fail, never misread the day or the instant.
        ("ts", b"05/01/2026 03:00:00 UTC"),
        ("ts", b"2026-01-04 22:00:00 EST"),
        ("day", b"05/01/2026"),
        ("ts", b"0001-01-01 00:00:00+00 BC"),
        ("price", b"abc"),
    ],
)
def test_copy_csv_a_value_outside_its_dtype_raises_instead_of_becoming_null(
    column: str, value: bytes
) -> None:
    fields = COPY_OUTPUT.split(b"\n", 1)[0].split(b",", 6)
    fields[list(COPY_SCHEMA).index(column)] = value

    with pytest.raises(pl.exceptions.PolarsError):
        frame_from_copy_csv(b",".join(fields) + b"\n", COPY_SCHEMA)
