"""``Warehouse``: processed tables, one file per partition or per whole table, replaced atomically.

Backends are selected by URL (``warehouse_from_url``): the embedded default is a Parquet lake;
``postgresql://`` selects ``PostgresWarehouse`` (``resources/storage/postgres.py``), the same
interface over PostgreSQL tables.

Parquet layout:

- a partitioned table is a folder, ``<root>/<table>/<partition>.parquet``, where
  ``<partition>`` is the partition key without its colon (``2026-01-05-0300``);
- a whole table is one file beside those folders, ``<root>/<table>.parquet``, its rows sorted by
  its key. Being a file, not a folder, it is never listed among a table's partitions, and its
  name goes through the same ``validate_table``/``safe_join`` checks.

Replacing a partition or a whole table writes a temp file and renames it over the old one, so a
crash mid-write leaves the previous version readable, and re-running a write replaces exactly
that file instead of appending to it; of two concurrent writers of one file, the last rename
wins, whole. Which kind a name is, is checked before each write (a ``<table>.parquet`` file or
partitions under ``<table>/``): two writers racing to create one name as both kinds at once are
not stopped, which is a bug of theirs, not a state the lake reaches otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from resources.errors import StorageError
from resources.storage.atomic import TEMP_PREFIX, atomic_write, sweep_temp_files
from resources.storage.base import (
    WHOLE_TABLE,
    WriteResult,
    check_table_key,
    wrong_kind_error,
)
from resources.validation import (
    HOURLY_KEY_RE,
    partition_file_stem,
    partition_key_from_stem,
    safe_join,
    validate_partition_key,
    validate_table,
)


def _write(frame: pl.DataFrame) -> Callable[[Path], None]:
    return lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True)


class ParquetWarehouse:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, table: str, partition_key: str) -> Path:
        return safe_join(
            self.root, validate_table(table), f"{partition_file_stem(partition_key)}.parquet"
        )

    def _table_path(self, table: str) -> Path:
        return safe_join(self.root, f"{validate_table(table)}.parquet")

    # -- which kind a name is ------------------------------------------------------------------
    def _refuse_whole(self, table: str) -> None:
        """For partition calls: refuse a name that is a whole table."""
        if self._table_path(table).exists():
            raise wrong_kind_error(table, kind="whole")

    def _refuse_partitioned(self, table: str) -> None:
        """For whole-table calls: refuse a name that holds partitions."""
        keys = self._partition_keys(table)
        if keys:
            raise wrong_kind_error(
                table, kind="hourly" if HOURLY_KEY_RE.fullmatch(keys[0]) else "daily"
            )

    # -- partitioned tables --------------------------------------------------------------------
    def replace_partition(self, table: str, partition_key: str, frame: pl.DataFrame) -> WriteResult:
        path = self._path(table, partition_key)
        self._refuse_whole(table)
        atomic_write(path, _write(frame))
        return WriteResult(table, partition_key, frame.height, path.stat().st_size, str(path))

    def read_partition(self, table: str, partition_key: str) -> pl.DataFrame | None:
        path = self._path(table, partition_key)
        if not path.exists():
            self._refuse_whole(table)
            return None
        try:
            return pl.read_parquet(path)
        except pl.exceptions.PolarsError as exc:
            raise StorageError(
                f"{table} partition {partition_key}: unreadable file {path}: {exc}"
            ) from None

    def partition_keys(self, table: str) -> list[str]:
        keys = self._partition_keys(table)
        if not keys:
            self._refuse_whole(table)
        return keys

    def _partition_keys(self, table: str) -> list[str]:
        directory = safe_join(self.root, validate_table(table))
        if not directory.is_dir():
            return []
        stems = [
            e.name[: -len(".parquet")]
            for e in os.scandir(directory)
            if e.name.endswith(".parquet") and not e.name.startswith(TEMP_PREFIX)
        ]
        return sorted(partition_key_from_stem(s) for s in stems)

    def scan(self, table: str, partition_keys: list[str] | None = None) -> pl.LazyFrame:
        keys = self.partition_keys(table) if partition_keys is None else partition_keys
        paths = [self._path(table, validate_partition_key(k)) for k in keys]
        missing = [k for k, p in zip(keys, paths, strict=True) if not p.exists()]
        if missing:
            self._refuse_whole(table)
            raise StorageError(f"{table}: partitions not materialized yet: {', '.join(missing)}")
        if not paths:
            raise StorageError(f"{table}: no partitions under {self.root}")
        return pl.scan_parquet(paths)

    # -- whole tables --------------------------------------------------------------------------
    def replace_table(self, table: str, frame: pl.DataFrame, *, key: Sequence[str]) -> WriteResult:
        """Replace ``<root>/<table>.parquet`` with ``frame`` sorted by ``key``: temp file, rename.

        The key is checked (no nulls, no duplicates) but not stored: the lake, like its
        partitions, keeps no layout to compare the next frame with."""
        path = self._table_path(table)
        columns = check_table_key(frame, key, table=table)
        self._refuse_partitioned(table)
        # Sorted on write, so reads come back in key order, as PostgreSQL's ORDER BY gives them.
        atomic_write(path, _write(frame.sort(columns)))
        return WriteResult(table, WHOLE_TABLE, frame.height, path.stat().st_size, str(path))

    def read_table(self, table: str) -> pl.DataFrame | None:
        path = self._table_path(table)
        if not path.exists():
            self._refuse_partitioned(table)
            return None
        try:
            return pl.read_parquet(path)
        except pl.exceptions.PolarsError as exc:
            raise StorageError(f"{table} (whole table): unreadable file {path}: {exc}") from None

    def scan_table(self, table: str) -> pl.LazyFrame:
        path = self._table_path(table)
        if not path.exists():
            self._refuse_partitioned(table)
            raise StorageError(f"{table}: whole table never written: no {path}")
        return pl.scan_parquet(path)

    def sweep(self, *, older_than_s: float = 3600.0) -> int:
        return sweep_temp_files(self.root, older_than_s=older_than_s)
