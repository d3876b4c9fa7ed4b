"""``Warehouse``: processed tables, replaced atomically, of two kinds.

- Partitioned tables (``replace_partition``, ``read_partition``, ``scan``, ``partition_keys``):
  one file (or one row set) per hourly or daily partition, each replaced on its own; after a
  step wrote some, ``compact`` lets the backend consolidate them for reads (the Parquet lake
  keeps per-day copies of hourly tables; PostgreSQL needs nothing).
- Whole tables (``replace_table``, ``read_table``, ``scan_table``): unpartitioned tables rebuilt
  whole from their inputs (corporate actions, adjustment factors, adjusted bars, total returns),
  each row identified by the key its writer names.

A table name is one kind or the other, for good: writing or reading a partitioned table whole,
or a whole table by partition, is refused with an ``InvalidInputError`` saying which it is.

Both kinds give the same guarantees: a replacement is atomic (a writer that dies midway leaves
the previous version readable, and readers never see a half-written one) and idempotent
(re-running it replaces instead of appending).

Backends are chosen by URL (``resources.storage.warehouse.warehouse_from_url``): the Parquet lake
(``parquet.py``, the embedded default) or PostgreSQL (``postgres.py``), one interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from resources.errors import DataValidationError, InvalidInputError

# WriteResult.partition_key of a whole-table write: a whole table has no partition, and "" is no
# partition key (validate_partition_key refuses it), so it cannot be mistaken for one.
WHOLE_TABLE = ""


@dataclass(frozen=True)
class WriteResult:
    table: str
    partition_key: str  # WHOLE_TABLE ("") for replace_table
    rows: int
    bytes: int
    location: str


class Warehouse(Protocol):
    def replace_partition(
        self, table: str, partition_key: str, frame: pl.DataFrame
    ) -> WriteResult: ...
    def read_partition(self, table: str, partition_key: str) -> pl.DataFrame | None: ...
    def scan(self, table: str, partition_keys: list[str] | None = None) -> pl.LazyFrame: ...
    def partition_keys(self, table: str) -> list[str]: ...

    def replace_partitions(
        self, table: str, partitions: Sequence[tuple[str, pl.DataFrame]], *, by_day: bool = False
    ) -> list[WriteResult]:
        """Several partitions replaced, each as ``replace_partition`` would. ``by_day``: a hint
        that the table's hours are small and best kept a day together (the Parquet lake then
        writes one file per day instead of one per hour); reads are the same either way."""
        ...

    def compact(self, table: str, partition_keys: Sequence[str]) -> None:
        """After a step wrote these partitions, let the backend consolidate them for reads; a
        no-op where nothing needs it. The partitions stay the truth: reads give the same rows,
        in the same order, compacted or not, and a partition written after a compaction is
        never read stale (the Parquet lake falls back to the partition files it cannot vouch
        for). Idempotent; keys of partitions that do not exist (any more) are allowed."""
        ...

    def replace_table(self, table: str, frame: pl.DataFrame, *, key: Sequence[str]) -> WriteResult:
        """Replace the whole table with ``frame``, atomically; ``key`` names the columns that
        identify a row (a null or duplicated key is a ``DataValidationError``)."""
        ...

    def read_table(self, table: str) -> pl.DataFrame | None:
        """The whole table, ordered by its key, in the dtypes written; None if never written."""
        ...

    def scan_table(self, table: str) -> pl.LazyFrame:
        """The whole table, lazily; a ``StorageError`` naming it if it was never written."""
        ...

    @property
    def location(self) -> str: ...


def wrong_kind_error(table: str, *, kind: str) -> InvalidInputError:
    """The error for using a name as the kind it is not (``kind``: what the name already is)."""
    if kind == "whole":
        return InvalidInputError(
            f"{table} is a whole table (written by replace_table, read by read_table or "
            "scan_table), not a partitioned one: a table name is one kind for good; "
            "use another name for a partitioned table"
        )
    return InvalidInputError(
        f"{table} is partitioned {kind} (written by replace_partition, read by read_partition "
        "or scan), not a whole table: a table name is one kind for good; use another name for "
        "a whole table"
    )


def check_table_key(frame: pl.DataFrame, key: Sequence[str], *, table: str) -> tuple[str, ...]:
    """``key`` as a tuple if it identifies each row of ``frame``, for ``replace_table``.

    A key that is not a list of distinct columns of the frame is an ``InvalidInputError`` (the
    caller's code is wrong); rows with a null in their key or sharing their key with another
    are a ``DataValidationError`` naming one of them (the data is wrong)."""
    if isinstance(key, str) or not key or not all(isinstance(c, str) for c in key):
        # A str is a Sequence[str] too: key="symbol" would otherwise mean ("s", "y", ...).
        raise InvalidInputError(
            f"{table}: key must name the columns that identify a row, "
            f"e.g. ('symbol', 'date'), not {key!r}"
        )
    columns = tuple(key)
    if len(set(columns)) != len(columns):
        raise InvalidInputError(f"{table}: key ({', '.join(columns)}) names a column twice")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{table}: key column {', '.join(missing)} is not in the frame "
            f"(its columns: {', '.join(frame.columns) or 'none'})"
        )
    described = f"({', '.join(columns)})"
    nulls = pl.any_horizontal(pl.col(columns).is_null())
    duplicated = pl.struct(columns).is_duplicated()
    # One pass for both checks; the offending rows are looked for only to name one.
    null_rows, duplicate_rows = frame.select(nulls=nulls.sum(), duplicates=duplicated.sum()).row(0)
    if null_rows:
        raise DataValidationError(
            f"{table}: {null_rows} rows have a null in their key {described}, "
            f"e.g. {_describe_row(frame.filter(nulls))}"
        )
    if duplicate_rows:
        raise DataValidationError(
            f"{table}: {duplicate_rows} rows share their key {described} with another, "
            f"e.g. {_describe_row(frame.filter(duplicated))}"
        )
    return columns


def _describe_row(rows: pl.DataFrame) -> str:
    return ", ".join(f"{name}={value}" for name, value in rows.row(0, named=True).items())
