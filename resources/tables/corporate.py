"""The corporate-actions table and the adjusted series, as whole tables of the warehouse.

What the assets call (``fin_assets/lib/assets/actions.py``); the arithmetic is in
``resources/tables/adjustment.py``. Both builds replace their tables whole and atomically: a
newly announced split changes every earlier day's factor, so there is no partition to replace
alone, and a reader never sees half of the old factors beside half of the new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from resources.errors import StorageError
from resources.providers.base import ProviderAdapter
from resources.raw.actions import actions_digest, load_actions_manifest, read_actions
from resources.raw.snapshots import SnapshotStore
from resources.storage.base import Warehouse
from resources.tables.adjustment import (
    ACTION_KEY,
    adjusted_daily_bars,
    adjustment_factors,
    total_returns,
    validate_actions,
)
from resources.tables.schemas import CORPORATE_ACTIONS_SCHEMA

DAILY_KEY = ("symbol", "date")


@dataclass(frozen=True)
class ActionsTableResult:
    rows: int
    splits: int
    dividends: int
    symbols: tuple[str, ...]
    fetched_at: str
    digest: str


@dataclass(frozen=True)
class AdjustedResult:
    factors_rows: int
    adjusted_rows: int
    returns_rows: int
    symbols: tuple[str, ...]
    days: int
    as_of: date
    actions_applied: int


def build_actions_table(
    store: SnapshotStore,
    warehouse: Warehouse,
    adapter: ProviderAdapter,
    *,
    manifests: str,
    table: str,
    symbols: Sequence[str],
    where: str,
) -> ActionsTableResult:
    """The typed actions of the newest fetch, validated against the source's symbols, replace
    ``table`` whole."""
    manifest = load_actions_manifest(store, manifests=manifests)
    if manifest is None:
        raise StorageError(
            f"{where}: no corporate actions fetched yet (no manifest under "
            f"{store.root}/manifests/{manifests}): materialize raw/corporate_actions first"
        )
    frame = validate_actions(read_actions(store, manifest, adapter), symbols=symbols, where=where)
    # The key's last column must hold a value: an action without the provider's id gets "".
    frame = frame.with_columns(pl.col("provider_id").fill_null("")).select(
        list(CORPORATE_ACTIONS_SCHEMA)
    )
    warehouse.replace_table(table, frame, key=ACTION_KEY)
    kinds = frame.get_column("kind")
    return ActionsTableResult(
        rows=frame.height,
        splits=int((kinds == "split").sum()),
        dividends=int((kinds == "dividend").sum()),
        symbols=tuple(sorted(set(frame.get_column("symbol").to_list()))),
        fetched_at=manifest.fetched_at.isoformat(),
        digest=actions_digest(frame),
    )


def read_actions_table(warehouse: Warehouse, table: str) -> pl.DataFrame:
    """The typed actions, or an empty table if none were ever built."""
    frame = warehouse.read_table(table)
    return pl.DataFrame(schema=CORPORATE_ACTIONS_SCHEMA) if frame is None else frame


def build_adjusted_tables(
    warehouse: Warehouse,
    *,
    daily_table: str,
    actions_table: str,
    factors_table: str,
    adjusted_table: str,
    returns_table: str,
    as_of: date | datetime,
    where: str,
    sessions: Sequence[date] | None = None,
) -> AdjustedResult:
    """Factors, adjusted daily bars and total returns of every symbol and day, from every
    partition of ``daily_table`` and the whole actions table, each replacing its table;
    ``sessions``: the calendar's session days (a dividend is priced from the session before)."""
    as_of = as_of.date() if isinstance(as_of, datetime) else as_of
    keys = warehouse.partition_keys(daily_table)
    if not keys:
        raise StorageError(f"{where}: {daily_table} has no partition yet: build daily_bars first")
    daily = warehouse.scan(daily_table, keys).collect().sort(DAILY_KEY)
    actions = read_actions_table(warehouse, actions_table)
    factors = adjustment_factors(daily, actions, as_of=as_of, where=where, sessions=sessions)
    adjusted = adjusted_daily_bars(daily, factors)
    returns = total_returns(daily, actions, as_of=as_of)
    warehouse.replace_table(factors_table, factors, key=DAILY_KEY)
    warehouse.replace_table(adjusted_table, adjusted, key=DAILY_KEY)
    warehouse.replace_table(returns_table, returns, key=DAILY_KEY)
    applied = actions.filter(pl.col("ex_date") <= as_of).height
    return AdjustedResult(
        factors_rows=factors.height,
        adjusted_rows=adjusted.height,
        returns_rows=returns.height,
        symbols=tuple(sorted(set(daily.get_column("symbol").to_list()))),
        days=daily.get_column("date").n_unique(),
        as_of=as_of,
        actions_applied=applied,
    )
