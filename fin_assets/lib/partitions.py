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
from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from resources.calendars import Sessions
from resources.errors import InvalidInputError

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


def partition_range_keys(
    partitions_def: dg.PartitionsDefinition, first: str, last: str, *, asset: str, where: str
) -> list[str]:
    """The partition keys of ``asset`` from ``first`` to ``last`` inclusive; InvalidInputError,
    starting with ``where`` (the option or run tag the range came from), when a bound is not one
    of its partition keys, naming the nearest that are, or when the range ends before it starts.

    Dagster refuses neither in a run: its ``has_partition_key`` takes a key inside an hour
    (``2026-01-05-00:30``), and the run then fills the whole hours after it (01:00 and 02:00 for
    ``00:30...01:30``); a reversed range resolves to no partition at all. The backfill command
    and every step ask here first, before any request or write.
    """
    for key in (first, last):
        problem = partition_key_problem(partitions_def, key)
        if problem is not None:
            raise InvalidInputError(f"{where}: {key!r} is not a partition of {asset}: {problem}")
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        if partitions_def.less_than(last, first):
            raise InvalidInputError(
                f"{where}: the range ends before it starts ({last} is earlier than {first}); "
                f"did you mean {last}...{first}?"
            )
        return list(partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))
    keys = list(partitions_def.get_partition_keys())
    if keys.index(last) < keys.index(first):
        raise InvalidInputError(
            f"{where}: the range ends before it starts ({last} comes before {first} in "
            f"{asset}'s partitions); did you mean {last}...{first}?"
        )
    return keys[keys.index(first) : keys.index(last) + 1]


def partition_key_problem(partitions_def: dg.PartitionsDefinition, key: str) -> str | None:
    """Why ``key`` is not a partition key of ``partitions_def`` and what to use instead, or None
    if it is one."""
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        keys = list(partitions_def.get_partition_keys())
        return None if key in keys else f"its partitions are {', '.join(keys[:10])}"
    tz = ZoneInfo(partitions_def.timezone)
    try:
        at = datetime.strptime(key, partitions_def.fmt).replace(tzinfo=tz)
    except ValueError:
        return (
            f"its keys look like {partitions_def.get_first_partition_key()} "
            f"({partitions_def.fmt}, {partitions_def.timezone})"
        )
    first = partitions_def.get_first_partition_window()
    last = partitions_def.get_last_partition_window()
    if first is None or last is None:
        return "it has no partitions yet"
    if at < first.start:
        return (
            f"its first partition is {partitions_def.get_first_partition_key()}: start the "
            "range there or later"
        )
    if at >= last.end:
        return (
            "its window has not closed yet, and a partition exists once it has: the last is "
            f"{partitions_def.get_last_partition_key()}; end the range there or earlier"
        )
    # The key of the window of the partitions' cron schedule that holds ``at``, closed or not:
    # equal to ``key`` only if ``key`` is the start of a window, spelled as Dagster spells it.
    grid = dg.TimeWindowPartitionsDefinition(
        cron_schedule=partitions_def.cron_schedule,
        start=partitions_def.start,
        fmt=partitions_def.fmt,
        timezone=partitions_def.timezone,
    )
    on_grid = grid.get_partition_key_for_timestamp(at.timestamp())
    if on_grid != key and datetime.strptime(on_grid, partitions_def.fmt).replace(tzinfo=tz) == at:
        if partitions_def.has_partition_key(on_grid):
            return f"did you mean {on_grid}?"
        key = on_grid  # spelled otherwise, and closed too: say so below
    if on_grid == key and partitions_def.has_partition_key(key):
        return None
    why = (
        "its calendar has no session then"
        if on_grid == key
        else "it is not the start of one of its partitions"
    )
    before = partitions_def.get_partition_key_for_timestamp(at.timestamp())
    after = partitions_def.get_next_partition_key(before)
    nearest = f"the nearest are {before} and {after}" if after else f"the nearest is {before}"
    return f"{why}; {nearest}"
