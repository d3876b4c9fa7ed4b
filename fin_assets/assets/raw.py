"""Raw layer: provider responses kept verbatim, one manifest per hourly partition."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from fin_assets.assets.common import (
    LateDataRetries,
    dagster_errors,
    partition_label,
    partition_windows,
    window_metadata,
)
from fin_assets.partitions import hourly_partitions
from resources.dagster_resources import MarketApiResource, SnapshotStoreResource, UniverseResource
from resources.raw.ingest import fetch_raw_bars

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
    if window.end > datetime.now(UTC):
        raise dg.Failure(
            description=f"raw/bars: window {window.start:%Y-%m-%d %H:%M}..{window.end:%H:%M} UTC "
            "has not closed yet; partitions are fetched once their hour is over",
            allow_retries=False,
        )
    late_data = LateDataRetries(
        market_api.late_data_retries, market_api.late_data_retry_s, context.retry_number
    )
    with dagster_errors(asset="raw/bars", late_data=late_data):
        symbols = universe.list()  # refused here, before any request or file
        store = snapshots.store()
        with market_api.client() as client:
            result = fetch_raw_bars(
                client,
                store,
                symbols,
                partition_windows(context, hourly_partitions),
                refresh=config.refresh,
                label=partition_label(context.partition_keys),
            )
    context.log.info(
        "raw/bars: %d partition(s), %d symbol(s): %d snapshot(s) written, %d reused, %d request(s)",
        result.partitions,
        len(result.symbols),
        result.snapshots_written,
        result.snapshots_reused,
        result.client.requests,
    )
    return dg.MaterializeResult(
        metadata={
            **window_metadata(context),
            "provider": result.provider,
            "symbols": ", ".join(result.symbols),
            "symbol_count": len(result.symbols),
            "rows": result.bars_fetched,
            "snapshots_written": result.snapshots_written,
            "snapshots_reused": result.snapshots_reused,
            **result.client.as_metadata(),
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
