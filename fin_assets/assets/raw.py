"""Raw layer: provider responses kept verbatim, one manifest per hourly partition."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from fin_assets.assets.common import dagster_errors, partition_label, window_metadata
from fin_assets.partitions import hourly_partitions
from resources.dagster_resources import MarketApiResource, SnapshotStoreResource, UniverseResource
from resources.raw.ingest import build_manifests, ingest_bars

RAW_BARS_MANIFESTS = "raw_bars"
RAW_BARS_KEY = dg.AssetKey(["raw", "bars"])


def provider_pool(provider: str) -> str:
    """One concurrency pool per provider (limits in dagster.yaml): steps calling the same API
    queue for it instead of splitting one quota between runs."""
    return f"provider_{provider}"


class RawBarsConfig(dg.Config):
    refresh: bool = Field(
        default=False,
        description="Fetch again even where snapshots already cover the window.",
    )


def raw_bars(
    context: dg.AssetExecutionContext,
    config: RawBarsConfig,
    market_api: MarketApiResource,
    snapshots: SnapshotStoreResource,
    universe: UniverseResource,
) -> dg.MaterializeResult:
    """1-minute bars exactly as the provider sent them, one snapshot file per response page,
    for every symbol of the universe. Hourly UTC partitions; a partition's materialization is
    the manifest of the snapshots covering its hour. A range run fetches the whole range with
    the provider's largest page (not one request per hour) and reuses snapshots it already has,
    so a retry or re-run resumes without spending quota again."""
    window = context.partition_time_window
    now = datetime.now(UTC)
    if window.end > now:
        raise dg.Failure(
            description=f"raw/bars: window {window.start:%Y-%m-%d %H:%M}..{window.end:%H:%M} UTC "
            "has not closed yet; partitions are fetched once their hour is over",
            allow_retries=False,
        )
    with dagster_errors(asset="raw/bars"):
        symbols = universe.list()  # refused here, before any request or file
        store = snapshots.store()
        store.sweep()
    with dagster_errors(asset="raw/bars"), market_api.client() as client:
        stats = ingest_bars(
            client,
            store,
            symbols,
            start=window.start,
            end=window.end,
            refresh=config.refresh,
            label=partition_label(context.partition_keys),
        )
        hours = []
        for key in context.partition_keys:
            hour = hourly_partitions.time_window_for_partition_key(key)
            hours.append((key, hour.start, hour.end))
        for key, manifest in build_manifests(
            store,
            provider=client.provider,
            symbols=symbols,
            partitions=hours,
            prefer=stats.fetched_refs,
        ):
            store.write_manifest(asset=RAW_BARS_MANIFESTS, partition_key=key, manifest=manifest)
    context.log.info(
        "raw/bars: %d partition(s), %d symbol(s): %d snapshot(s) written, %d reused, %d request(s)",
        len(context.partition_keys),
        len(symbols),
        stats.snapshots_written,
        stats.snapshots_reused,
        client.stats.requests,
    )
    return dg.MaterializeResult(
        metadata={
            **window_metadata(context),
            "provider": client.provider,
            "symbols": ", ".join(symbols),
            "symbol_count": len(symbols),
            "rows": stats.bars_fetched,
            "snapshots_written": stats.snapshots_written,
            "snapshots_reused": stats.snapshots_reused,
            **client.stats.as_metadata(),
            "snapshot_root": dg.MetadataValue.path(str(store.root)),
        }
    )


def build_raw_bars(*, provider: str) -> dg.AssetsDefinition:
    """raw/bars bound to the configured provider's concurrency pool."""
    return dg.asset(
        key=RAW_BARS_KEY,
        group_name="raw",
        partitions_def=hourly_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=provider_pool(provider),
        kinds={"json"},
    )(raw_bars)
