"""Core layer, hourly: the canonical 1-minute bar table built from raw snapshots."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

import dagster as dg

from fin_assets.assets.common import dagster_errors, window_metadata
from fin_assets.assets.raw import RAW_BARS_KEY, RAW_BARS_MANIFESTS
from fin_assets.partitions import hourly_partitions
from resources.dagster_resources import SnapshotStoreResource, WarehouseResource
from resources.providers import get_adapter
from resources.tables.core import BuildStats, SnapshotFrames, bars_from_manifest

CORE_BARS_TABLE = "core_bars"


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
    store = snapshots.store()
    wh = warehouse.warehouse()
    stats = BuildStats()
    rows = 0
    symbols: set[str] = set()
    # A snapshot covering several hours is parsed once for all of them, then dropped.
    parsed = SnapshotFrames(store)
    with dagster_errors(asset="core/bars"):
        # Partition by partition, in time order: memory holds one hour of bars and the pages
        # that overlap it, however long the range.
        for key in context.partition_keys:
            hour = hourly_partitions.time_window_for_partition_key(key)
            manifest = store.read_manifest(asset=RAW_BARS_MANIFESTS, partition_key=key)
            frame = bars_from_manifest(
                store,
                get_adapter(manifest["provider"]),
                manifest,
                partition=key,
                start=hour.start,
                end=hour.end,
                stats=stats,
                snapshots=parsed,
            )
            wh.replace_partition(CORE_BARS_TABLE, key, frame)
            rows += frame.height
            symbols.update(frame.get_column("symbol").unique().to_list())
    if stats.unknown_fields:
        context.log.warning(
            "core/bars: provider sent fields we do not map: %s", dict(stats.unknown_fields)
        )
    return dg.MaterializeResult(
        metadata={
            **window_metadata(context),
            "rows": rows,
            "symbols": ", ".join(sorted(symbols)),
            "symbol_count": len(symbols),
            "snapshots_read": stats.snapshots_read,
            "bytes_read": stats.bytes_read,
            "duplicates_dropped": stats.duplicates_dropped,
            "unknown_fields": dict(stats.unknown_fields),
            "table": dg.MetadataValue.path(f"{wh.location}/{CORE_BARS_TABLE}"),
        }
    )
