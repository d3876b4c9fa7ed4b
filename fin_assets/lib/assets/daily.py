"""Core layer, daily: tables aggregated from the hourly partitions of core/bars of the day."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

from collections.abc import Callable

import dagster as dg
import polars as pl

from fin_assets.lib.assets.common import (
    dagster_errors,
    partition_windows,
    range_result,
    table_figures,
)
from fin_assets.lib.assets.ranges import run_partition_keys
from fin_assets.lib.partitions import SourcePartitions
from fin_assets.lib.resources import WarehouseResource
from fin_assets.lib.sources import Source
from resources.tables.core import CORE_BARS_TABLE
from resources.tables.daily import (
    DAILY_BARS_TABLE,
    DAILY_RETURNS_TABLE,
    aggregate_daily,
    build_daily_table,
    daily_returns,
)

DAILY_BARS_DOC = (
    "Daily OHLCV per symbol: first open, highest high, lowest low, last close, summed volume "
    "and trades, volume-weighted average price and the number of 1-minute bars. Daily UTC "
    "partitions (session days on an exchange calendar), each aggregated from that day's hourly "
    "partitions of core/bars."
)
DAILY_RETURNS_DOC = (
    "Daily open-to-close return (simple and log) and realized volatility per symbol: the root "
    "of the summed squared 1-minute log returns, also annualized. Daily UTC partitions "
    "(session days on an exchange calendar), from that day's hourly partitions of core/bars."
)


def build_daily_assets(
    source: Source, partitions: SourcePartitions
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """core/daily_bars and core/daily_returns of one source."""
    return (
        _daily_asset(
            source, partitions, "daily_bars", DAILY_BARS_TABLE, aggregate_daily, DAILY_BARS_DOC
        ),
        _daily_asset(
            source,
            partitions,
            "daily_returns",
            DAILY_RETURNS_TABLE,
            daily_returns,
            DAILY_RETURNS_DOC,
        ),
    )


def _daily_asset(
    source: Source,
    partitions: SourcePartitions,
    name: str,
    base_table: str,
    compute: Callable[..., pl.DataFrame],
    doc: str,
) -> dg.AssetsDefinition:
    table = source.table(base_table)
    key = source.key("core", name)

    @dg.asset(
        key=key,
        group_name=source.group("core"),
        partitions_def=partitions.daily,
        # daily -> the day's hourly partitions, by Dagster's time-window mapping
        deps=[source.key("core", "bars")],
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"polars", "parquet"},
        description=f"{doc} Source {source.label}; table {table}.",
    )
    def daily_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        run_partition_keys(context, partitions.daily, asset=key.to_user_string())
        wh = warehouse.warehouse()
        with dagster_errors(asset=key.to_user_string()):
            result = build_daily_table(
                wh,
                partition_windows(context, partitions.daily, parts=partitions.hourly),
                source=source.table(CORE_BARS_TABLE),
                table=table,
                compute=compute,
            )
        return range_result(
            context, table_figures(result.rows, result.symbols, location=wh.location, table=table)
        )

    return daily_table
