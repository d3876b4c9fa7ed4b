"""Core layer, intervals: 5-minute, 15-minute and hourly bars built from core/bars.

One asset per interval a source declares (``intervals: [5m, 1h]`` in its YAML), with the hourly
partitions of core/bars: every interval divides an hour and every supported calendar's zone is a
whole number of hours from UTC, so each window lies inside one partition of the minutes it is
built from, and a partition is built from that partition alone (resources/tables/intervals.py).
"""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

import dagster as dg

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
from resources.tables.intervals import INTERVALS, build_interval_table, interval_table


def build_interval_assets(
    source: Source, partitions: SourcePartitions
) -> list[dg.AssetsDefinition]:
    """core/<source>/bars_<interval> for each interval the source declares."""
    return [_interval_asset(source, partitions, interval) for interval in source.intervals]


def _interval_asset(
    source: Source, partitions: SourcePartitions, interval: str
) -> dg.AssetsDefinition:
    key = source.key("core", f"bars_{interval}")
    table = source.table(interval_table(CORE_BARS_TABLE, interval))
    hourly = partitions.hourly
    sessions = None if partitions.sessions.always_open else partitions.sessions.intervals

    @dg.asset(
        key=key,
        group_name=source.group("core"),
        partitions_def=hourly,
        deps=[source.key("core", "bars")],
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"polars", "parquet"},
        description=f"{interval} bars per symbol — symbol, ts (the window's start, UTC), open, "
        "high, low, close, volume, trades, vwap (volume-weighted) and the number of 1-minute "
        "bars — built from core/bars of the same hour. Windows are on the clock as the "
        "providers align theirs (Massive: Eastern Time; Binance: UTC), cut at session "
        "boundaries and early closes; an interval without a trade has no bar. Hourly UTC "
        f"partitions like core/bars. Source {source.label}; table {table}.",
    )
    def interval_bars(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        asset = key.to_user_string()
        run_partition_keys(context, hourly, asset=asset)
        wh = warehouse.warehouse()
        with dagster_errors(asset=asset):
            result = build_interval_table(
                wh,
                partition_windows(context, hourly),
                source=source.table(CORE_BARS_TABLE),
                table=table,
                minutes=INTERVALS[interval],
                sessions=sessions,
            )
        return range_result(
            context, table_figures(result.rows, result.symbols, location=wh.location, table=table)
        )

    return interval_bars
