"""Raw layer: provider responses kept verbatim, one manifest per hourly partition."""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

from contextlib import closing, nullcontext
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from fin_assets.lib.assets.attempts import AttemptSpending
from fin_assets.lib.assets.common import (
    LateDataRetries,
    dagster_errors,
    partition_label,
    partition_windows,
    range_result,
    retry_number,
)
from fin_assets.lib.assets.ranges import run_partition_keys
from fin_assets.lib.partitions import SourcePartitions
from fin_assets.lib.progress import ProgressReporter
from fin_assets.lib.resources import (
    ArchiveResource,
    MarketApiResource,
    SnapshotStoreResource,
    UniverseResource,
)
from fin_assets.lib.sources import Source
from resources.logfields import log_context
from resources.raw.archive import ArchiveStats, ArchiveUse
from resources.raw.ingest import fetch_raw_bars
from resources.raw.manifest import MANIFESTS_DIR


class RawBarsConfig(dg.Config):
    refresh: bool = Field(
        default=False,
        description="Fetch again even where snapshots already cover the window.",
    )
    archive: str | None = Field(
        default=None,
        description="This run's path, where the source declares a bulk archive: auto (archived "
        "days from the archive, the rest from REST), always (the archive only), never (REST "
        "only); omitted: the source's own setting.",
    )


def archive_use(asked: str | None, archive: ArchiveResource | None, *, asset: str) -> ArchiveUse:
    """This run's path: the run's ``archive`` config, else the source's setting."""
    if asked is None:
        return ArchiveUse(archive.use) if archive is not None else ArchiveUse.NEVER
    try:
        use = ArchiveUse(asked)
    except ValueError:
        use = None
    if use is None or (archive is None and use is not ArchiveUse.NEVER):
        choices = "auto, always, never" if archive is not None else "never"
        raise dg.Failure(
            description=f"{asset}: run config archive: {asked!r}: expected one of {choices}"
            + ("" if archive is not None else " (the source declares no bulk archive)"),
            allow_retries=False,
        )
    return use


def build_raw_bars(source: Source, partitions: SourcePartitions) -> dg.AssetsDefinition:
    """raw/bars of one source, in its provider's concurrency pool (limits in dagster.yaml:
    steps calling the same API queue for it instead of splitting one quota between runs)."""
    market_key = source.resource_key("market_api")
    universe_key = source.resource_key("universe")
    archive_key = source.resource_key("archive") if source.archive is not None else None
    hourly = partitions.hourly

    @dg.asset(
        key=source.key("raw", "bars"),
        group_name=source.group("raw"),
        partitions_def=hourly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=source.pool,
        kinds={"json"},
        required_resource_keys={market_key, universe_key, "snapshots"}
        | ({archive_key} if archive_key else set()),
        description=f"1-minute bars exactly as {source.provider} sent them, one snapshot file "
        f"per response page, for every symbol of source {source.label}. Hourly UTC partitions"
        + ("" if partitions.sessions.always_open else f" in {source.calendar} sessions")
        + "; a partition's materialization is the manifest of the snapshots covering its hour. "
        "A range run fetches the whole range with the provider's largest page (not one request "
        "per hour) and reuses snapshots it already has, so a retry or re-run resumes without "
        "spending quota again."
        + (
            f" Days old enough to be archived come from {source.provider}'s bulk archive "
            "(no quota; the manifest says which path filled each partition)."
            if archive_key
            else ""
        ),
    )
    def raw_bars(context: dg.AssetExecutionContext, config: RawBarsConfig) -> dg.MaterializeResult:
        market_api: MarketApiResource = getattr(context.resources, market_key)
        universe: UniverseResource = getattr(context.resources, universe_key)
        snapshots: SnapshotStoreResource = context.resources.snapshots
        asset = source.key("raw", "bars").to_user_string()
        run_partition_keys(context, hourly, asset=asset)  # before any request or file
        window = context.partition_time_window
        if window.end > datetime.now(UTC):
            raise dg.Failure(
                description=f"{asset}: window "
                f"{window.start:%Y-%m-%d %H:%M}..{window.end:%H:%M} UTC has not closed yet; "
                "partitions are fetched once their hour is over",
                allow_retries=False,
            )
        late_data = LateDataRetries(
            market_api.late_data_retries, market_api.late_data_retry_s, retry_number(context)
        )
        # An attempt that is rescheduled or fails still records what it spent on the API.
        spending = AttemptSpending(
            context, source.key("raw", "bars"), source.label, source.provider
        )
        with (
            spending.recorded(),
            dagster_errors(asset=asset, late_data=late_data),
            log_context(source=source.label),  # key=value fields of the client's wait lines
        ):
            symbols = universe.list()  # refused here, before any request or file
            store = snapshots.store()
            windows = partition_windows(context, hourly)
            reporter = ProgressReporter(context.log.info, asset=asset, total=len(windows))
            archive = None if archive_key is None else getattr(context.resources, archive_key)
            archive_format = None if archive is None else archive.format()
            use = archive_use(config.archive, archive, asset=asset)
            spending.archive = ArchiveStats() if archive_format is not None else None
            closes = closing(archive_format) if archive_format is not None else nullcontext()
            with market_api.client() as client, closes:
                spending.stats = client.stats
                result = fetch_raw_bars(
                    client,
                    store,
                    symbols,
                    windows,
                    refresh=config.refresh,
                    label=partition_label(context.partition_keys),
                    manifests=source.table(MANIFESTS_DIR),
                    progress=lambda fraction, bars: reporter.update(
                        fraction * len(windows), requests=client.stats.requests, rows=bars
                    ),
                    archive=archive_format,
                    archive_use=use,
                    archive_stats=spending.archive,
                )
                reporter.update(
                    len(windows),
                    requests=client.stats.requests,
                    rows=result.bars_fetched,
                    final=True,
                )
        context.log.info(
            "%s: %d partition(s), %d symbol(s): %d snapshot(s) written, %d reused, %d request(s)",
            asset,
            result.partitions,
            len(result.symbols),
            result.snapshots_written,
            result.snapshots_reused,
            result.client.requests,
        )
        return range_result(
            context,
            {
                "symbols": ", ".join(result.symbols),
                "symbol_count": len(result.symbols),
                "rows": result.bars_fetched,
                "snapshots_written": result.snapshots_written,
                "snapshots_reused": result.snapshots_reused,
                **result.client.as_metadata(),
                **(
                    {
                        **result.archive.as_metadata(),
                        "partitions_from_archive": result.partitions_from_archive,
                    }
                    if result.archive is not None
                    else {}
                ),
                "snapshot_root": dg.MetadataValue.path(str(store.root)),
                # raw/<feed>/ under the root: sources on the same endpoint share it.
                "snapshot_feed": result.feed,
            },
            common={"source": source.label, "provider": result.provider},
        )

    return raw_bars
