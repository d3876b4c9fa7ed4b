"""``new_bars_sensor``: runs the pipeline when the provider has new data.

One per source. It asks the provider's cheapest endpoint (the latest bar of one symbol) what
it has, and requests one range run of raw/bars + core/bars for the hours that closed there
since its cursor: only hours that are partitions (on an exchange calendar, session hours: a
night, a weekend or a holiday requests nothing). After an outage it catches up in one run (2
requests per symbol-day), not one run per hour; run keys are the ranges, so a tick replayed
never duplicates a run.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from fin_assets.lib.partitions import DEFAULT_START, SourcePartitions
from fin_assets.lib.resources import MarketApiResource, UniverseResource
from fin_assets.lib.sources import Source
from resources.errors import FinAssetsError
from resources.logfields import log_context


def _floor_hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def closed_hours(
    *,
    latest_bar: datetime,
    cursor: datetime | None,
    now: datetime,
    lookback_hours: int,
    start: date = DEFAULT_START,
) -> tuple[datetime, datetime] | None:
    """[start, end) of the whole hours that closed at the provider since the cursor."""
    # An hour is complete when its last minute (hh:59) is available, and never before it has
    # closed on our own clock (Dagster refuses partitions in the future). On an exchange
    # calendar the last bar of a session is the close's last minute, so the session's last
    # hour completes with it.
    end = min(_floor_hour(latest_bar + timedelta(minutes=1)), _floor_hour(now))
    first = cursor or _floor_hour(now) - timedelta(hours=lookback_hours)
    first = max(first, datetime.combine(start, datetime.min.time(), UTC))
    return (first, end) if end > first else None


def session_hour_keys(partitions: SourcePartitions, start: datetime, end: datetime) -> list[str]:
    """The hourly partition keys in [start, end): the hours that can hold bars."""
    return list(partitions.hourly.get_partition_keys_in_time_window(dg.TimeWindow(start, end)))


def build_new_bars_sensor(
    source: Source,
    partitions: SourcePartitions,
    *,
    job_name: str,
    minimum_interval_seconds: int,
    lookback_hours: int,
) -> dg.SensorDefinition:
    market_key = source.resource_key("market_api")
    universe_key = source.resource_key("universe")

    @dg.sensor(
        name=source.job_name("new_bars_sensor"),
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        required_resource_keys={market_key, universe_key},
        description=f"Requests raw/bars + core/bars of source {source.label} for every hour "
        "the provider has closed since the last tick, as one range run (catches up after "
        f"outages); its first tick looks back {lookback_hours} h (FIN_NEW_DATA_LOOKBACK_HOURS).",
    )
    def new_bars_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        market_api: MarketApiResource = getattr(context.resources, market_key)
        universe: UniverseResource = getattr(context.resources, universe_key)
        symbol = universe.list()[0]
        try:
            with (
                market_api.client(max_attempts=2, max_wait_s=10) as client,
                log_context(source=source.label, symbol=symbol),
            ):
                latest = client.latest_bar_time(symbol)
        except FinAssetsError as exc:
            # A provider that is down is what freshness alerts are for; the sensor just waits.
            return dg.SkipReason(f"provider unreachable, will ask again: {exc}")
        cursor = datetime.fromisoformat(context.cursor) if context.cursor else None
        window = closed_hours(
            latest_bar=latest,
            cursor=cursor,
            now=datetime.now(UTC),
            lookback_hours=lookback_hours,
            start=source.partitions_start,
        )
        if window is None:
            return dg.SkipReason(f"no hour closed since {cursor}; latest bar {latest.isoformat()}")
        start, end = window
        keys = session_hour_keys(partitions, start, end)
        if not keys:
            context.update_cursor(end.isoformat())
            return dg.SkipReason(f"no session hour in {start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC")
        first, last = keys[0], keys[-1]
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
