"""Core layer, hourly: the canonical 1-minute bar table built from raw snapshots, and the
interval bars (5m, 15m, 1h: those the source declares) built from it in the same step.

One multi-asset, because the interval tables are made of the frame the step already holds: a
separate asset per interval cost a process per step and per check step and a second read of
every partition (``make bench-intervals``: +90 % on a 30-day backfill before, see
benchmarks/README.md). It can be subset: materializing an interval table alone (a new
``intervals:`` entry over history, say) reads core/bars from the warehouse instead of
rebuilding it from the raw snapshots.
"""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

from collections.abc import Iterator

import dagster as dg

from fin_assets.lib.assets.common import (
    dagster_errors,
    partition_windows,
    range_result,
    table_figures,
)
from fin_assets.lib.assets.intervals import interval_spec, interval_table_name, interval_tables
from fin_assets.lib.assets.ranges import run_partition_keys
from fin_assets.lib.partitions import SourcePartitions
from fin_assets.lib.progress import ProgressReporter
from fin_assets.lib.resources import SnapshotStoreResource, WarehouseResource
from fin_assets.lib.sources import Source
from resources.raw.manifest import MANIFESTS_DIR
from resources.tables.core import CORE_BARS_TABLE, build_core_bars
from resources.tables.intervals import build_interval_tables
from resources.tables.results import TableResult


def build_core_bars_asset(source: Source, partitions: SourcePartitions) -> dg.AssetsDefinition:
    table = source.table(CORE_BARS_TABLE)
    hourly = partitions.hourly
    core_key = source.key("core", "bars")
    interval_keys = {
        interval: source.key("core", f"bars_{interval}") for interval in source.intervals
    }
    core_spec = dg.AssetSpec(
        core_key,
        group_name=source.group("core"),
        deps=[source.key("raw", "bars")],
        kinds={"polars", "parquet"},
        description="Canonical 1-minute bars: one row per (symbol, minute) with trades — symbol, "
        "ts (bar open, UTC), open, high, low, close, volume, trades, vwap, provider, "
        f"ingested_at — of source {source.label}. Hourly UTC partitions parsed from the raw "
        "snapshots of the same hour, typed, deduplicated on (symbol, ts) (newest fetch wins) "
        "and OHLC-validated. Each partition is replaced atomically, so re-runs and backfills "
        f"replace instead of append. Table {table}.",
    )

    @dg.multi_asset(
        name=core_key.to_python_identifier(),
        specs=[
            core_spec,
            *(interval_spec(source, interval, core_key) for interval in source.intervals),
        ],
        partitions_def=hourly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
    )
    def core_bars(
        context: dg.AssetExecutionContext,
        snapshots: SnapshotStoreResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult]:
        asset = core_key.to_user_string()
        selected = context.selected_asset_keys
        wanted = [iv for iv, key in interval_keys.items() if key in selected]
        label = asset if core_key in selected else interval_keys[wanted[0]].to_user_string()
        run_partition_keys(context, hourly, asset=label)  # before any read or write
        wh = warehouse.warehouse()
        windows = partition_windows(context, hourly)
        intervals = interval_tables(source, partitions, wanted) if wanted else None
        if core_key not in selected:
            assert intervals is not None  # a subset selects at least one asset
            with dagster_errors(asset=label):
                results = build_interval_tables(wh, windows, source=table, intervals=intervals)
            yield from _interval_results(context, source, wanted, results, wh.location)
            return
        reporter = ProgressReporter(context.log.info, asset=asset, total=len(windows))
        with dagster_errors(asset=asset):
            result = build_core_bars(
                snapshots.store(),
                wh,
                windows,
                table=table,
                manifests=source.table(MANIFESTS_DIR),
                progress=lambda done, rows: reporter.update(done, rows=rows),
                intervals=intervals,
            )
        reporter.update(len(windows), rows=result.rows, final=True)
        stats = result.stats
        if stats.unknown_fields:
            context.log.warning(
                "%s: provider sent fields we do not map: %s", asset, dict(stats.unknown_fields)
            )
        yield range_result(
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
            asset_key=core_key,
        )
        yield from _interval_results(context, source, wanted, result.intervals, wh.location)

    return core_bars


def _interval_results(
    context: dg.AssetExecutionContext,
    source: Source,
    intervals: list[str],
    results: dict[str, TableResult],
    location: str,
) -> Iterator[dg.MaterializeResult]:
    for interval in intervals:
        table = source.table(interval_table_name(interval))
        result = results[table]
        yield range_result(
            context,
            table_figures(result.rows, result.symbols, location=location, table=table),
            asset_key=source.key("core", f"bars_{interval}"),
        )
