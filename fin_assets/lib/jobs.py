"""The jobs of a source: the hourly bars, the daily tables, and re-running the quality checks
of partitions already materialized."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from fin_assets.lib.sources import Source


@dataclass(frozen=True)
class SourceJobs:
    bars_hourly: dg.UnresolvedAssetJobDefinition
    daily_tables: dg.UnresolvedAssetJobDefinition
    core_bars_checks: dg.UnresolvedAssetJobDefinition
    daily_checks: dg.UnresolvedAssetJobDefinition

    def all(self) -> list[dg.UnresolvedAssetJobDefinition]:
        return [self.bars_hourly, self.daily_tables, self.core_bars_checks, self.daily_checks]


def build_jobs(
    source: Source,
    hourly: Sequence[dg.AssetsDefinition],
    daily: Sequence[dg.AssetsDefinition],
) -> SourceJobs:
    """The jobs over a source's hourly assets (raw bars; core bars and the interval bars built
    in the same step) and its daily tables."""
    core = [key for asset in hourly for key in asset.keys if key != source.key("raw", "bars")]
    return SourceJobs(
        bars_hourly=dg.define_asset_job(
            source.job_name("bars_hourly_job"),
            selection=dg.AssetSelection.assets(*hourly),
            description=f"Fetch and process one hour of 1-minute bars of source {source.label}.",
        ),
        daily_tables=dg.define_asset_job(
            source.job_name("daily_tables_job"),
            selection=dg.AssetSelection.assets(*daily),
            description=f"Aggregate one day of core/bars of source {source.label} into the "
            "daily tables.",
        ),
        # Re-run the checks of already materialized partitions without fetching or rebuilding
        # them: `dagster job launch -j core_bars_checks_job --tags
        # '{"dagster/asset_partition_range_start": "2026-01-05-00:00",
        #   "dagster/asset_partition_range_end": "2026-01-05-23:00"}'`.
        core_bars_checks=dg.define_asset_job(
            source.job_name("core_bars_checks_job"),
            selection=dg.AssetSelection.checks_for_assets(*core),
            description="Run the data-quality checks of core/bars and its interval bars on a "
            "partition or range, without rematerializing them.",
        ),
        daily_checks=dg.define_asset_job(
            source.job_name("daily_checks_job"),
            selection=dg.AssetSelection.checks_for_assets(*daily),
            description="Run the data-quality checks of the daily tables on a partition or "
            "range, without rematerializing them.",
        ),
    )
