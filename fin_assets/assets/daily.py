"""Core layer, daily: tables aggregated from the 24 hourly partitions of core/bars."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

from collections.abc import Callable

import dagster as dg
import polars as pl

from fin_assets.assets.bars import core_bars
from fin_assets.assets.common import dagster_errors, partition_windows, window_metadata
from fin_assets.partitions import daily_partitions, hourly_partitions
from resources.dagster_resources import WarehouseResource
from resources.tables.core import CORE_BARS_TABLE
from resources.tables.daily import (
    DAILY_BARS_TABLE,
    DAILY_RETURNS_TABLE,
    aggregate_daily,
    build_daily_table,
    daily_returns,
)


def materialize_daily_table(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    *,
    asset: str,
    table: str,
    compute: Callable[..., pl.DataFrame],
) -> dg.MaterializeResult:
    """What both daily assets do: each day of the run from its 24 hourly core/bars partitions."""
    wh = warehouse.warehouse()
    with dagster_errors(asset=asset):
        result = build_daily_table(
            wh,
            partition_windows(context, daily_partitions, parts=hourly_partitions),
            source=CORE_BARS_TABLE,
            table=table,
            compute=compute,
        )
    return dg.MaterializeResult(
        metadata={
            **window_metadata(context),
            "rows": result.rows,
            "symbols": ", ".join(sorted(result.symbols)),
            "symbol_count": len(result.symbols),
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
    return materialize_daily_table(
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
    return materialize_daily_table(
        context,
        warehouse,
        asset="core/daily_returns",
        table=DAILY_RETURNS_TABLE,
        compute=daily_returns,
    )
