"""Core layer, daily: tables aggregated from the 24 hourly partitions of core/bars."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

from collections.abc import Callable

import dagster as dg
import polars as pl

from fin_assets.assets.bars import CORE_BARS_TABLE, core_bars
from fin_assets.assets.common import dagster_errors, window_metadata
from fin_assets.partitions import daily_partitions, hourly_partitions
from resources.dagster_resources import WarehouseResource
from resources.errors import StorageError
from resources.tables.daily import aggregate_daily, daily_returns

DAILY_BARS_TABLE = "core_daily_bars"
DAILY_RETURNS_TABLE = "core_daily_returns"


def build_daily_table(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    *,
    asset: str,
    table: str,
    compute: Callable[..., pl.DataFrame],
) -> dg.MaterializeResult:
    """For each day in the run: read its 24 hourly core/bars partitions, compute, replace."""
    wh = warehouse.warehouse()
    rows = 0
    symbols: set[str] = set()
    with dagster_errors(asset=asset):
        for key in context.partition_keys:
            day = daily_partitions.time_window_for_partition_key(key)
            hours = hourly_partitions.get_partition_keys_in_time_window(day)
            try:
                bars = wh.scan(CORE_BARS_TABLE, hours)
            except StorageError as exc:
                raise StorageError(
                    f"day {key}: {exc}; materialize core/bars for them first"
                ) from None
            frame = compute(bars, day=day.start)
            wh.replace_partition(table, key, frame)
            rows += frame.height
            symbols.update(frame.get_column("symbol").to_list())
    return dg.MaterializeResult(
        metadata={
            **window_metadata(context),
            "rows": rows,
            "symbols": ", ".join(sorted(symbols)),
            "symbol_count": len(symbols),
            "table": dg.MetadataValue.path(f"{wh.location}/{table}"),
        }
    )


@dg.asset(
    key=["core", "daily_bars"],
    group_name="core",
    partitions_def=daily_partitions,
    deps=[core_bars],  # daily -> 24 hourly partitions, by Dagster's time-window mapping
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"polars", "parquet"},
)
def core_daily_bars(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Daily OHLCV per symbol: first open, highest high, lowest low, last close, summed volume
    and trades, volume-weighted average price and the number of 1-minute bars. Daily UTC
    partitions, each aggregated from the 24 hourly partitions of core/bars for that day."""
    return build_daily_table(
        context, warehouse, asset="core/daily_bars", table=DAILY_BARS_TABLE, compute=aggregate_daily
    )


@dg.asset(
    key=["core", "daily_returns"],
    group_name="core",
    partitions_def=daily_partitions,
    deps=[core_bars],
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"polars", "parquet"},
)
def core_daily_returns(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Daily open-to-close return (simple and log) and realized volatility per symbol: the root
    of the summed squared 1-minute log returns, also annualized. Daily UTC partitions computed
    from the 24 hourly partitions of core/bars for that day."""
    return build_daily_table(
        context,
        warehouse,
        asset="core/daily_returns",
        table=DAILY_RETURNS_TABLE,
        compute=daily_returns,
    )
