"""``new_bars_sensor``: runs the pipeline when the provider has new data.

``new_bars_sensor`` asks the provider's cheapest endpoint (the latest bar of one symbol) what
  it has, and requests one range run of raw/bars + core/bars for every hour that closed there
  since its cursor. After an outage it catches up in one run (2 requests per symbol-day), not
  one run per hour; run keys are the ranges, so a tick replayed never duplicates a run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from fin_assets.partitions import PARTITIONS_START
from resources.dagster_resources import MarketApiResource, UniverseResource
from resources.errors import FinAssetsError

HOUR_KEY = "%Y-%m-%d-%H:00"


def _floor_hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def closed_hours(
    *, latest_bar: datetime, cursor: datetime | None, now: datetime, lookback_hours: int
) -> tuple[datetime, datetime] | None:
    """[start, end) of the whole hours that closed at the provider since the cursor."""
    # An hour is complete when its last minute (hh:59) is available, and never before it has
    # closed on our own clock (Dagster refuses partitions in the future).
    end = min(_floor_hour(latest_bar + timedelta(minutes=1)), _floor_hour(now))
    start = cursor or _floor_hour(now) - timedelta(hours=lookback_hours)
    start = max(start, datetime.fromisoformat(PARTITIONS_START).replace(tzinfo=UTC))
    return (start, end) if end > start else None


def build_new_bars_sensor(
    *, minimum_interval_seconds: int, lookback_hours: int
) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_bars_sensor",
        job_name="bars_hourly_job",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Requests raw/bars + core/bars for every hour the provider has closed since "
        "the last tick, as one range run (catches up after outages).",
    )
    def new_bars_sensor(
        context: dg.SensorEvaluationContext,
        market_api: MarketApiResource,
        universe: UniverseResource,
    ) -> dg.SensorResult | dg.SkipReason:
        symbol = universe.list()[0]
        try:
            with market_api.client(max_attempts=2, max_wait_s=10) as client:
                latest = client.latest_bar_time(symbol)
        except FinAssetsError as exc:
            # A provider that is down is what freshness alerts are for; the sensor just waits.
            return dg.SkipReason(f"provider unreachable, will ask again: {exc}")
        cursor = datetime.fromisoformat(context.cursor) if context.cursor else None
        window = closed_hours(
            latest_bar=latest, cursor=cursor, now=datetime.now(UTC), lookback_hours=lookback_hours
        )
        if window is None:
            return dg.SkipReason(f"no hour closed since {cursor}; latest bar {latest.isoformat()}")
        start, end = window
        first, last = start.strftime(HOUR_KEY), (end - timedelta(hours=1)).strftime(HOUR_KEY)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"bars:{first}...{last}",
                    tags={
                        "dagster/asset_partition_range_start": first,
                        "dagster/asset_partition_range_end": last,
                    },
                )
            ],
            cursor=end.isoformat(),
        )

    return new_bars_sensor
