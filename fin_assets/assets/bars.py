"""Core layer, hourly: the canonical 1-minute bar table built from raw snapshots."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

import dagster as dg

from fin_assets.assets.common import dagster_errors, partition_windows, window_metadata
from fin_assets.assets.raw import RAW_BARS_KEY
from fin_assets.partitions import hourly_partitions
from resources.dagster_resources import SnapshotStoreResource, WarehouseResource
from resources.tables.core import CORE_BARS_TABLE, build_core_bars


@dg.asset(
    key=["core", "bars"],
    group_name="core",
    partitions_def=hourly_partitions,
    deps=[RAW_BARS_KEY],
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"polars", "parquet"},
)
def core_bars(
    context: dg.AssetExecutionContext,
    snapshots: SnapshotStoreResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Canonical 1-minute bars: one row per (symbol, minute) with trades — symbol, ts (bar open,
    UTC), open, high, low, close, volume, trades, vwap, provider, ingested_at. Hourly UTC
    partitions parsed from the raw/bars snapshots of the same hour, typed, deduplicated on
    (symbol, ts) (newest fetch wins) and OHLC-validated. Each partition is replaced atomically,
    so re-runs and backfills replace instead of append."""
    wh = warehouse.warehouse()
    with dagster_errors(asset="core/bars"):
        result = build_core_bars(
            snapshots.store(), wh, partition_windows(context, hourly_partitions)
        )
    stats = result.stats
    if stats.unknown_fields:
        context.log.warning(
            "core/bars: provider sent fields we do not map: %s", dict(stats.unknown_fields)
        )
    return dg.MaterializeResult(
        metadata={
            **window_metadata(context),
            "rows": result.rows,
            "symbols": ", ".join(sorted(result.symbols)),
            "symbol_count": len(result.symbols),
            "snapshots_read": stats.snapshots_read,
            "bytes_read": stats.bytes_read,
            "duplicates_dropped": stats.duplicates_dropped,
            "unknown_fields": dict(stats.unknown_fields),
            "table": dg.MetadataValue.path(f"{wh.location}/{CORE_BARS_TABLE}"),
        }
    )
