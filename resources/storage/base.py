"""``Warehouse``: processed tables, one file (or one row set) per partition, replaced atomically.

Backends are chosen by URL (``resources.storage.warehouse.warehouse_from_url``): the Parquet lake
(``parquet.py``, the embedded default) or PostgreSQL (``postgres.py``), one interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import polars as pl


@dataclass(frozen=True)
class WriteResult:
    table: str
    partition_key: str
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
    @property
    def location(self) -> str: ...
