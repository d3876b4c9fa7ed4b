"""``Warehouse``: processed tables, one file (or one row set) per partition, replaced atomically.

Backends are selected by URL (``warehouse_from_url``): the embedded default is a Parquet lake;
``postgresql://`` selects ``PostgresWarehouse`` (``resources/storage/postgres.py``), the same
interface over PostgreSQL tables.

Parquet layout: ``<root>/<table>/<partition>.parquet`` where ``<partition>`` is the partition key
without its colon (``2026-01-05-0300``). Replacing a partition writes a temp file and renames it
over the old one, so a crash mid-write leaves the previous version readable, and re-running a
partition replaces exactly that partition instead of appending to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from resources.errors import StorageError
from resources.storage.atomic import TEMP_PREFIX, atomic_write, sweep_temp_files
from resources.storage.base import WriteResult
from resources.validation import (
    partition_file_stem,
    safe_join,
    validate_partition_key,
    validate_table,
)


def _key_from_stem(stem: str) -> str:
    # 2026-01-05-0300 -> 2026-01-05-03:00 ; daily stems have no colon to restore.
    if len(stem) == len("2026-01-05-0300"):
        return f"{stem[:-2]}:{stem[-2:]}"
    return stem


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

    def replace_partition(self, table: str, partition_key: str, frame: pl.DataFrame) -> WriteResult:
        path = self._path(table, partition_key)
        atomic_write(
            path, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True)
        )
        return WriteResult(table, partition_key, frame.height, path.stat().st_size, str(path))

    def read_partition(self, table: str, partition_key: str) -> pl.DataFrame | None:
        path = self._path(table, partition_key)
        if not path.exists():
            return None
        try:
            return pl.read_parquet(path)
        except pl.exceptions.PolarsError as exc:
            raise StorageError(
                f"{table} partition {partition_key}: unreadable file {path}: {exc}"
            ) from None

    def partition_keys(self, table: str) -> list[str]:
        directory = safe_join(self.root, validate_table(table))
        if not directory.is_dir():
            return []
        stems = [
            e.name[: -len(".parquet")]
            for e in os.scandir(directory)
            if e.name.endswith(".parquet") and not e.name.startswith(TEMP_PREFIX)
        ]
        return sorted(_key_from_stem(s) for s in stems)

    def scan(self, table: str, partition_keys: list[str] | None = None) -> pl.LazyFrame:
        keys = self.partition_keys(table) if partition_keys is None else partition_keys
        paths = [self._path(table, validate_partition_key(k)) for k in keys]
        missing = [k for k, p in zip(keys, paths, strict=True) if not p.exists()]
        if missing:
            raise StorageError(f"{table}: partitions not materialized yet: {', '.join(missing)}")
        if not paths:
            raise StorageError(f"{table}: no partitions under {self.root}")
        return pl.scan_parquet(paths)

    def sweep(self, *, older_than_s: float = 3600.0) -> int:
        return sweep_temp_files(self.root, older_than_s=older_than_s)
