"""Time-window partitions of a source: hourly for bars (each hour is fetched once it closes),
daily for daily tables. All UTC, so a partition key means the same hour everywhere.

A source on an exchange calendar has only the hours and days its exchange trades in: the
closed ones are Dagster partition ``exclusions`` (cron strings for the regular closed hours and
weekends, datetimes for holidays, early closes and the hour DST moves; ``resources/calendars.py``
computes them from ``exchange_calendars``). Exclusions rather than a partitions class of our
own: Dagster's time-window machinery (backfills, the daily -> 24 hourly mapping, partition
freshness checks, the UI) then skips closed hours by itself, and a closed hour costs no request
and no run. The start date bounds what a backfill can ask for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from resources.calendars import Sessions

PARTITIONS_START = "2026-01-01"
DEFAULT_START = date.fromisoformat(PARTITIONS_START)

# The around-the-clock partitions (24/7 sources and the FIN_* shorthand source).
hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=f"{PARTITIONS_START}-00:00", timezone="UTC"
)
daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")


@dataclass(frozen=True)
class SourcePartitions:
    hourly: dg.TimeWindowPartitionsDefinition
    daily: dg.TimeWindowPartitionsDefinition
    sessions: Sessions


_BUILT: dict[tuple[str, date, date, date], SourcePartitions] = {}


def source_partitions(sessions: Sessions, *, start: date = DEFAULT_START) -> SourcePartitions:
    """The partitions of a source on ``sessions``: sources on one calendar with one start share
    them (the exclusions are computed once per process)."""
    if sessions.always_open and start == DEFAULT_START:
        return SourcePartitions(hourly_partitions, daily_partitions, sessions)
    key = (sessions.name, sessions.first, sessions.last, start)
    if key not in _BUILT:
        _BUILT[key] = _build(sessions, start)
    return _BUILT[key]


def _build(sessions: Sessions, start: date) -> SourcePartitions:
    return SourcePartitions(
        dg.HourlyPartitionsDefinition(
            start_date=f"{start.isoformat()}-00:00",
            timezone="UTC",
            exclusions=sessions.hourly_exclusions() or None,
        ),
        dg.DailyPartitionsDefinition(
            start_date=start.isoformat(),
            timezone="UTC",
            exclusions=sessions.daily_exclusions() or None,
        ),
        sessions,
    )
