"""Bars at every interval from canonical 1-minute bars, aligned as the providers align theirs.

How the providers align their own interval bars (what ``align``/``tz`` reproduce):

* Massive (formerly Polygon.io), ``GET /v2/aggs/ticker/{t}/range/{multiplier}/{timespan}/...``:
  "Our aggregates 'snap' the time spans to the beginning of each timespan resolution ...
  minute bars begin at the top of the minute (9:30:00), hour bars begin at the top of the hour
  (9:00:00), daily bars begin at the beginning of the day (12:00:00 AM EST)"
  (https://massive.com/knowledge-base/article/how-does-massive-treat-hourly-bars-when-querying-regular-trading-hours,
  formerly https://polygon.io/knowledge-base/article/how-does-polygon-treat-hourly-bars-when-querying-regular-trading-hours).
  Windows are on the clock in Eastern Time, labelled by their start (``t`` is "the start of
  the aggregate window"): the 9:00 ET hour bar holds the session's 9:30-9:59 minutes and is
  labelled 9:00 ET. Interval bars are rolled up from the provider's minute bars ("Our base
  aggregates are minute and daily bars ... A request with a multiplier 1 and resolution hour
  that spans from 2pm to 4pm will cover 120 base minute bars, but return 2 1-hour bars",
  https://polygon.io/blog/aggs-api-updates). Massive's bars include extended hours; we
  aggregate regular-session minutes, so a window never holds pre-market minutes here.
  ``align="clock", tz="America/New_York"``. (ET is a whole number of hours from UTC, so for
  windows dividing an hour the ET and UTC grids coincide; the zone matters for longer windows
  such as 4h, and for exchanges with a fractional offset such as Asia/Kolkata.)
* Binance, ``GET /api/v3/klines?interval=5m|15m|1h``: "Klines are uniquely identified by
  their open time"; "If timeZone provided, kline intervals are interpreted in that timezone
  instead of UTC" (default ``0``, UTC)
  (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints).
  Open times are multiples of the interval since the epoch in UTC: ``sessions=None`` and
  ``align="clock", tz="UTC"`` (the defaults).

``align="session"`` counts windows from each session's open instead (9:30, 10:30, ... ET),
as some charting tools do; no provider we fetch does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import polars as pl

from resources.errors import InvalidInputError, StorageError
from resources.storage.base import Warehouse
from resources.tables.results import TableResult
from resources.tables.schemas import INTERVAL_BARS_SCHEMA
from resources.windows import PartitionWindow

INTERVALS: dict[str, int] = {"5m": 5, "15m": 15, "1h": 60}  # name -> minutes


Alignment = Literal["clock", "session"]

_US_PER_MINUTE = 60_000_000
_TS_US = pl.col("ts").cast(pl.Int64)  # ts is Datetime("us", "UTC"): microseconds since epoch


def aggregate_bars(
    bars: pl.DataFrame | pl.LazyFrame,
    *,
    minutes: int,
    sessions: Sequence[tuple[datetime, datetime]] | None = None,
    align: Alignment = "clock",
    tz: str = "UTC",
) -> pl.DataFrame:
    """``minutes``-minute bars per symbol from canonical 1-minute bars (CANONICAL_SCHEMA).

    Each bar: the open of its first minute, the highest high, the lowest low, the close of its
    last minute, summed volume, summed trades (null if any minute lacks a count: a partial sum
    would pass for a real one), the volume-weighted VWAP of the minutes' own VWAPs (a minute
    without one weighs in at its typical price (h+l+c)/3, as the daily bars do; null when the
    bar has no volume) and ``bar_count``. A window without minutes has no bar; a quiet minute
    just leaves the bar to the minutes that traded.

    Windows: with ``align="clock"``, multiples of ``minutes`` on the wall clock of ``tz`` (the
    provider's alignment, see the module docstring), so a window starts where the local time of
    day is a multiple of the interval, across DST changes. With ``align="session"``
    (``sessions`` required), multiples of ``minutes`` from each session's open.

    ``sessions``: the exchange's ``[open, close)`` intervals in UTC (``Sessions.intervals``).
    Windows are cut at their boundaries, so no bar spans a close, a closed period or a break,
    and an early close ends the last bar at the close. A bar is labelled by its window's start,
    as the provider labels it, even when the session opened later in the window (Massive's
    9:00 ET hour bar holds 9:30-9:59); only when a session boundary falls inside a window, the
    part after it is labelled by its session's open, so labels stay unique. Minutes outside
    every session belong to no session bar and are left out (extended hours are not session
    bars). ``sessions=None``: always open (24/7), no cuts.
    """
    if minutes < 1:
        raise ValueError(f"minutes must be >= 1, got {minutes}")
    if align not in ("clock", "session"):
        raise ValueError(f"align must be 'clock' or 'session', got {align!r}")
    if align == "session" and sessions is None:
        raise ValueError("align='session' needs the sessions to count windows from")
    step = minutes * _US_PER_MINUTE
    lazy = bars.lazy() if isinstance(bars, pl.DataFrame) else bars
    lazy = lazy.select(
        "symbol", "ts", "open", "high", "low", "close", "volume", "trades", "vwap"
    ).sort("ts")

    # The window start on the clock of tz: the minute's local time less its remainder modulo
    # the step, taken back to UTC at the offset in force then (not the minute's own offset, when
    # a DST change falls inside the window). A start that does not exist locally (a spring-
    # forward gap) comes out as the change's instant, the window's first real one. In an
    # ambiguous (fall-back) hour each pass keeps its own offset, so its own window.
    local_us = _local_us(pl.col("ts"), tz)
    window_local = local_us - local_us.mod(step)
    first_guess = _TS_US - local_us.mod(step)
    guessed_local = _local_us(first_guess.cast(pl.Datetime("us", "UTC")), tz)
    clock_start = first_guess + (window_local - guessed_local)
    if sessions is None:
        keyed = lazy.with_columns(pl.lit(0, pl.Int64).alias("_session"), clock_start.alias("_w"))
    else:
        keyed = _in_sessions(lazy, sessions)
        if align == "session":
            start = pl.col("_open") + (_TS_US - pl.col("_open")).floordiv(step) * step
        else:
            # A window the previous session already had a part of: this part starts at the open.
            start = (
                pl.when(pl.col("_prev_close") > clock_start)
                .then(pl.col("_open"))
                .otherwise(clock_start)
            )
        keyed = keyed.with_columns(start.alias("_w"))

    price = pl.coalesce("vwap", (pl.col("high") + pl.col("low") + pl.col("close")) / 3)
    # Float sums as a left fold, minute after minute (the last of a running sum): polars' own
    # sum adds in blocks whose bounds follow the memory layout of the moment, so two builds of
    # the same minutes could differ in the last bit, and a rebuilt table would not be the same
    # bytes. A running sum is the order a provider sums in, and the same every time.
    volume = pl.col("volume").cum_sum().last()
    out = (
        keyed.group_by("symbol", "_session", "_w", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            volume.alias("volume"),
            pl.when(pl.col("trades").null_count() > 0)
            .then(None)
            .otherwise(pl.col("trades").sum())
            .alias("trades"),
            pl.when(volume > 0)
            .then((price * pl.col("volume")).cum_sum().last() / volume)
            .otherwise(None)
            .alias("vwap"),
            pl.len().alias("bar_count"),
        )
        .with_columns(pl.col("_w").cast(pl.Datetime("us", "UTC")).alias("ts"))
        .select(list(INTERVAL_BARS_SCHEMA))
        .collect()
    )
    return out.cast(INTERVAL_BARS_SCHEMA).sort("symbol", "ts")


def _local_us(ts: pl.Expr, tz: str) -> pl.Expr:
    """Wall-clock time in ``tz`` of a UTC datetime, as microseconds of a naive epoch."""
    return ts.dt.convert_time_zone(tz).dt.replace_time_zone(None).cast(pl.Int64)


def _in_sessions(lazy: pl.LazyFrame, sessions: Sequence[tuple[datetime, datetime]]) -> pl.LazyFrame:
    """The minutes inside a session, with its index, open and the previous session's close (all
    as epoch microseconds)."""
    ordered = sorted(sessions)
    table = pl.LazyFrame(
        {
            "_open_ts": [opened for opened, _ in ordered],
            "_close_ts": [closed for _, closed in ordered],
        },
        schema={"_open_ts": pl.Datetime("us", "UTC"), "_close_ts": pl.Datetime("us", "UTC")},
    ).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_session"),
        pl.col("_open_ts").cast(pl.Int64).alias("_open"),
        pl.col("_close_ts").cast(pl.Int64).shift(1).alias("_prev_close"),
    )
    return (
        lazy.join_asof(table, left_on="ts", right_on="_open_ts", strategy="backward")
        .filter(pl.col("ts") < pl.col("_close_ts"))
        .drop("_open_ts", "_close_ts")
    )


def interval_table(base: str, interval: str) -> str:
    """The table of ``interval`` bars next to 1-minute table ``base``: core_bars -> core_bars_5m."""
    return f"{base}_{interval}"


@dataclass(frozen=True)
class IntervalTables:
    """The interval tables of one source: table name -> minutes, and the source's sessions.

    ``sessions(start, end)``: the open intervals in a window (None: 24/7). The partitions are
    the hourly ones of the 1-minute table. An interval that divides an hour, on a calendar whose
    zone is a whole number of hours from UTC (every supported one), has its windows inside one
    UTC hour, so partition for partition is exact; the windows are then on the exchange's clock
    and UTC's alike (``align="clock"``, as Massive aligns its bars)."""

    tables: Mapping[str, int]
    sessions: Callable[[datetime, datetime], Sequence[tuple[datetime, datetime]]] | None = None

    # Partitions aggregated together (``write``): a day of hours, fewer past this many rows.
    batch_partitions: int = 24
    batch_rows: int = 500_000

    def batch_full(self, batch: Sequence[tuple[PartitionWindow, pl.DataFrame]]) -> bool:
        """Whether ``batch`` (partitions waiting to be written) should be written now."""
        return (
            len(batch) >= self.batch_partitions
            or sum(frame.height for _, frame in batch) >= self.batch_rows
        )

    def __post_init__(self) -> None:
        for table, minutes in self.tables.items():
            if minutes < 1 or 60 % minutes:
                raise InvalidInputError(
                    f"{table}: an interval of {minutes} minutes does not divide an hour"
                )

    def write(
        self,
        warehouse: Warehouse,
        batch: Sequence[tuple[PartitionWindow, pl.DataFrame]],
        results: MutableMapping[str, TableResult],
    ) -> None:
        """Partitions of 1-minute bars (``batch``: consecutive hourly windows and their bars)
        aggregated into each interval table, each partition replaced (replace, not append:
        re-runs leave one copy; a partition without bars gets an empty one, as core/bars does).

        One aggregation per table for the whole batch rather than one per partition: polars
        costs about the same for 24 hours as for one at this size. Exact all the same: each
        window lies inside one UTC hour (the class docstring), so the bars of a partition are
        those whose window starts in its hour."""
        if not batch:
            return
        bars = pl.concat([frame for _, frame in batch], how="vertical")
        first, last = batch[0][0], batch[-1][0]
        sessions = None if self.sessions is None else self.sessions(first.start, last.end)
        for table, minutes in self.tables.items():
            frame = aggregate_bars(bars, minutes=minutes, sessions=sessions)
            # A few rows per hour (2 for the 1h bars of 2 symbols): kept a day per file.
            warehouse.replace_partitions(table, self._split(table, frame, batch), by_day=True)
            result = results.setdefault(table, TableResult())
            result.rows += frame.height
            result.symbols.update(frame.get_column("symbol").unique().to_list())

    @staticmethod
    def _split(
        table: str, frame: pl.DataFrame, batch: Sequence[tuple[PartitionWindow, pl.DataFrame]]
    ) -> list[tuple[str, pl.DataFrame]]:
        """``frame`` (bars of the batch's windows) cut into the batch's partitions, in order:
        a bar belongs to the partition of the hour its window starts in; a partition without
        bars gets an empty frame (it is still materialized, as core/bars' empty hours are)."""
        hour = pl.col("ts").dt.truncate("1h").alias("_hour")
        parts = {
            start: part.drop("_hour")
            for (start,), part in frame.with_columns(hour)
            .partition_by("_hour", as_dict=True, maintain_order=True)
            .items()
        }
        out = [(window.key, parts.pop(window.start, None)) for window, _ in batch]
        if parts:  # a bar outside every window of the batch: a bug, never written silently
            first, last = batch[0][0], batch[-1][0]
            raise StorageError(
                f"{table}: bars outside partitions {first.key}...{last.key}: "
                f"{', '.join(str(start) for start in parts)}"
            )
        return [(key, frame.clear() if part is None else part) for key, part in out]


def build_interval_tables(
    warehouse: Warehouse,
    windows: Sequence[PartitionWindow],
    *,
    source: str,
    intervals: IntervalTables,
) -> dict[str, TableResult]:
    """Each partition of the 1-minute table ``source`` read once and aggregated into every
    table of ``intervals``: what the interval tables' step does when core/bars is not rebuilt
    in the same step (the core/bars step builds them from the frame it holds instead)."""
    results = {table: TableResult() for table in intervals.tables}
    batch: list[tuple[PartitionWindow, pl.DataFrame]] = []

    def flush() -> None:
        intervals.write(warehouse, batch, results)
        for table in intervals.tables:
            warehouse.compact(table, [window.key for window, _ in batch])
        batch.clear()

    for window in windows:
        if batch and window.day != batch[-1][0].day:
            flush()  # a day at a time, each day compacted right after it is written
        bars = warehouse.read_partition(source, window.key)
        if bars is None:
            raise StorageError(
                f"{source} partition {window.key} is not in the warehouse: build core/bars first"
            )
        batch.append((window, bars))
    if batch:
        flush()
    return results
