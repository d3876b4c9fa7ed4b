"""Daily tables from canonical bars: OHLCV and VWAP per symbol and day, returns and realized
volatility."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import polars as pl

from resources.errors import StorageError
from resources.storage.base import Warehouse
from resources.tables.results import TableResult
from resources.tables.schemas import DAILY_SCHEMA, RETURNS_SCHEMA
from resources.windows import PartitionWindow

DAILY_BARS_TABLE = "core_daily_bars"
DAILY_RETURNS_TABLE = "core_daily_returns"

MINUTES_PER_YEAR = 365 * 24 * 60  # markets we model trade around the clock (crypto, FX)


def aggregate_daily(bars: pl.LazyFrame | pl.DataFrame, *, day: datetime) -> pl.DataFrame:
    """One row per symbol: first open, max high, min low, last close, volume, VWAP, bar count."""
    lazy = bars.lazy() if isinstance(bars, pl.DataFrame) else bars
    # VWAP weights each bar's own vwap (or its typical price if the provider gave none).
    price = pl.coalesce("vwap", (pl.col("high") + pl.col("low") + pl.col("close")) / 3)
    out = (
        lazy.sort(["symbol", "ts"])
        .group_by("symbol", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.when(pl.col("volume").sum() > 0)
            .then((price * pl.col("volume")).sum() / pl.col("volume").sum())
            .otherwise(None)
            .alias("vwap"),
            pl.col("trades").sum().alias("trades"),
            pl.len().alias("bar_count"),
        )
        .with_columns(pl.lit(day.date(), pl.Date()).alias("date"))
        .select(list(DAILY_SCHEMA))
        .collect()
    )
    return out.cast(DAILY_SCHEMA).sort("symbol")


def daily_returns(bars: pl.LazyFrame | pl.DataFrame, *, day: datetime) -> pl.DataFrame:
    """Open-to-close return and realized volatility (root of summed squared 1-min log returns)."""
    lazy = bars.lazy() if isinstance(bars, pl.DataFrame) else bars
    log_ret = (pl.col("close") / pl.col("close").shift(1)).log()
    out = (
        lazy.sort(["symbol", "ts"])
        .group_by("symbol", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("close").last(),
            (log_ret.pow(2).sum()).sqrt().alias("realized_vol"),
            pl.len().alias("minutes"),
        )
        .with_columns(
            (pl.col("close") / pl.col("open") - 1).alias("return_oc"),
            (pl.col("close") / pl.col("open")).log().alias("log_return_oc"),
            (
                pl.col("realized_vol")
                * (MINUTES_PER_YEAR / pl.col("minutes").cast(pl.Float64)).sqrt()
            ).alias("realized_vol_annualized"),
            pl.lit(day.date(), pl.Date()).alias("date"),
        )
        .select(list(RETURNS_SCHEMA))
        .collect()
    )
    return out.cast(RETURNS_SCHEMA).sort("symbol")


def build_daily_table(
    warehouse: Warehouse,
    days: Sequence[PartitionWindow],
    *,
    source: str,
    table: str,
    compute: Callable[..., pl.DataFrame],
) -> TableResult:
    """For each day (its ``parts``: the hourly partitions of ``source``): read, compute,
    replace the day's partition of ``table`` (replace, not append: re-runs leave one copy)."""
    result = TableResult()
    for day in days:
        try:
            bars = warehouse.scan(source, list(day.parts))
        except StorageError as exc:
            raise StorageError(
                f"day {day.key}: {exc}; materialize core/bars for them first"
            ) from None
        frame = compute(bars, day=day.start)
        warehouse.replace_partition(table, day.key, frame)
        result.rows += frame.height
        result.symbols.update(frame.get_column("symbol").to_list())
    return result
