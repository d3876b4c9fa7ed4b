"""Freshness: a policy on every asset (evaluated by the open-source daemon) and time-partition
freshness checks for "the last closed window has landed" — the asset-level policy alone is
fooled by a backfill of an old partition, which counts as a fresh materialization."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from fin_assets.lib.partitions import SourcePartitions


@dataclass(frozen=True)
class FreshnessSettings:
    # An hourly window is fetched a few minutes after it closes: 90 minutes without a
    # materialization means at least one window is late. Warn at 75.
    hourly_fail_minutes: float = 90.0
    hourly_warn_minutes: float | None = 75.0
    # Daily tables must be rebuilt every day by 02:00 UTC (the 23:00 hour lands at ~00:05):
    # a materialization in the 24 hours before the deadline counts.
    daily_deadline_cron: str = "0 2 * * *"
    daily_lower_bound_hours: float = 24.0
    # The latest closed hourly partition must have landed by this many minutes past the hour.
    partition_deadline_minute: int = 20


def freshness_policy_for(
    spec: dg.AssetSpec, settings: FreshnessSettings, partitions: SourcePartitions
) -> dg.FreshnessPolicy:
    """A time window for hourly assets, a daily deadline for the rest: read from the asset's
    own partitions, not from a list of names kept beside them.

    On an exchange calendar the window is widened by the calendar's longest closure (a long
    weekend), so a market that is closed is not stale; that a session hour has not landed
    ``hourly_fail_minutes`` after it closed is what the partition freshness checks say (their
    "last partition" skips closed hours)."""
    if spec.partitions_def == partitions.hourly:
        closed = partitions.sessions.longest_closure()
        warn = settings.hourly_warn_minutes
        return dg.FreshnessPolicy.time_window(
            fail_window=timedelta(minutes=settings.hourly_fail_minutes) + closed,
            warn_window=timedelta(minutes=warn) + closed
            if warn is not None and warn < settings.hourly_fail_minutes
            else None,
        )
    return daily_policy(settings.daily_deadline_cron, settings.daily_lower_bound_hours)


@functools.lru_cache(maxsize=8)
def daily_policy(deadline_cron: str, lower_bound_hours: float) -> dg.FreshnessPolicy:
    """One policy object per deadline: Dagster's cron policy costs about 50 ms to build (it
    scans the cron's ticks for the smallest interval), paid per daily asset of every source."""
    return dg.FreshnessPolicy.cron(
        deadline_cron=deadline_cron,
        lower_bound_delta=timedelta(hours=lower_bound_hours),
        timezone="UTC",
    )


def with_freshness(
    assets: Sequence[dg.AssetsDefinition],
    settings: FreshnessSettings,
    partitions: SourcePartitions,
) -> list[dg.AssetsDefinition]:
    """Every asset gets its policy; configured here so the windows come from settings."""
    return [
        asset.map_asset_specs(
            lambda spec: spec.replace_attributes(
                freshness_policy=freshness_policy_for(spec, settings, partitions)
            )
        )
        for asset in assets
    ]


def build_partition_freshness_checks(
    hourly_assets: Sequence[dg.AssetsDefinition],
    settings: FreshnessSettings,
    *,
    sensor_name: str = "partition_freshness_checks_sensor",
) -> tuple[list[dg.AssetChecksDefinition], dg.SensorDefinition]:
    """'The last closed hour has landed' checks on the hourly assets, and their sensor."""
    checks = list(
        dg.build_time_partition_freshness_checks(
            assets=list(hourly_assets),
            deadline_cron=f"{settings.partition_deadline_minute} * * * *",
            timezone="UTC",
        )
    )
    sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=checks,
        name=sensor_name,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    return checks, sensor
