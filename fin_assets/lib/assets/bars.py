"""Core layer, hourly: the canonical 1-minute bar table built from raw snapshots."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

import dagster as dg

from fin_assets.lib.assets.common import dagster_errors, partition_windows, range_result
from fin_assets.lib.assets.ranges import run_partition_keys
from fin_assets.lib.partitions import SourcePartitions
from fin_assets.lib.progress import ProgressReporter
from fin_assets.lib.resources import SnapshotStoreResource, WarehouseResource
from fin_assets.lib.sources import Source
from resources.raw.manifest import MANIFESTS_DIR
from resources.tables.core import CORE_BARS_TABLE, build_core_bars


def build_core_bars_asset(source: Source, partitions: SourcePartitions) -> dg.AssetsDefinition:
    table = source.table(CORE_BARS_TABLE)
    hourly = partitions.hourly

    @dg.asset(
        key=source.key("core", "bars"),
        group_name=source.group("core"),
        partitions_def=hourly,
        deps=[source.key("raw", "bars")],
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"polars", "parquet"},
        description="Canonical 1-minute bars: one row per (symbol, minute) with trades — symbol, "
        "ts (bar open, UTC), open, high, low, close, volume, trades, vwap, provider, "
        f"ingested_at — of source {source.label}. Hourly UTC partitions parsed from the raw "
        "snapshots of the same hour, typed, deduplicated on (symbol, ts) (newest fetch wins) "
        "and OHLC-validated. Each partition is replaced atomically, so re-runs and backfills "
        f"replace instead of append. Table {table}.",
    )
    def core_bars(
        context: dg.AssetExecutionContext,
        snapshots: SnapshotStoreResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        asset = source.key("core", "bars").to_user_string()
        run_partition_keys(context, hourly, asset=asset)  # before any read or write
        wh = warehouse.warehouse()
        windows = partition_windows(context, hourly)
        reporter = ProgressReporter(context.log.info, asset=asset, total=len(windows))
        with dagster_errors(asset=asset):
            result = build_core_bars(
                snapshots.store(),
                wh,
                windows,
                table=table,
                manifests=source.table(MANIFESTS_DIR),
                progress=lambda done, rows: reporter.update(done, rows=rows),
            )
        reporter.update(len(windows), rows=result.rows, final=True)
        stats = result.stats
        if stats.unknown_fields:
            context.log.warning(
                "%s: provider sent fields we do not map: %s", asset, dict(stats.unknown_fields)
            )
        return range_result(
            context,
            {
                "rows": result.rows,
                "symbols": ", ".join(sorted(result.symbols)),
                "symbol_count": len(result.symbols),
                "snapshots_read": stats.snapshots_read,
                "bytes_read": stats.bytes_read,
                "duplicates_dropped": stats.duplicates_dropped,
                "unknown_fields": dict(stats.unknown_fields),
                "table": dg.MetadataValue.path(f"{wh.location}/{table}"),
            },
        )

    return core_bars
