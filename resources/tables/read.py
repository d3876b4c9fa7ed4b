"""Reading bars back (polars, no Dagster): one lazy frame of a source's bars for some symbols
over ``[start, end)``, at an interval, unadjusted or adjusted, from any ``Warehouse``.

Only the partitions overlapping the range are read: their keys are computed from the range and
intersected with the partitions the table has. A partition inside the range that was never
materialized (a closed hour, a day not fetched yet) is not an error: it has no rows, like any
other hour without bars. A table never written at all reads as no rows too.

Adjusted prices come from the source's adjustment factors (``resources/tables/adjustment.py``,
one row per symbol and session day): price x ``split_factor`` (``splits``) or x
``total_factor`` (``splits_and_dividends``), volume / ``split_factor`` in both (the same traded
value), trades unchanged. A 1-minute bar takes the factor of its UTC date: an exchange session
lies within one UTC day. A day after the factors' ``as_of`` has no row in them and takes 1.0:
only actions up to ``as_of`` are counted, and none of them is after such a day. A day up to
``as_of`` without a factor row (its daily bars were not built when the factors were) has null
adjusted prices and volume rather than a guessed factor: materialize its daily bars and the
factors again.

Which intervals can be read is the one mapping ``INTERVALS``: 1m, the interval tables (5m, 15m,
1h: a source has those it declares; one it does not declare reads no rows, like a range never
built) and 1d.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from resources.errors import InvalidInputError, StorageError
from resources.storage.base import Warehouse
from resources.tables.adjustment import ADJUSTMENT_FACTORS_TABLE
from resources.tables.core import CORE_BARS_TABLE
from resources.tables.daily import DAILY_BARS_TABLE
from resources.tables.intervals import INTERVALS as BAR_INTERVALS
from resources.tables.intervals import interval_table
from resources.tables.schemas import CANONICAL_SCHEMA, DAILY_SCHEMA, INTERVAL_BARS_SCHEMA


@dataclass(frozen=True)
class Interval:
    """Where the bars of one interval live: the table (base name), its time column, its
    partitions' grain and length, and the schema of an empty answer."""

    table: str
    time_column: str  # "ts" (bar open, UTC) or "date"
    grain: str  # "hourly" | "daily": the partition keys of the table
    partition_length: timedelta
    schema: pl.Schema


INTERVALS: dict[str, Interval] = {
    "1m": Interval(CORE_BARS_TABLE, "ts", "hourly", timedelta(hours=1), CANONICAL_SCHEMA),
    # The interval tables a source declares (resources/tables/intervals.py): hourly partitions.
    **{
        name: Interval(
            interval_table(CORE_BARS_TABLE, name),
            "ts",
            "hourly",
            timedelta(hours=1),
            INTERVAL_BARS_SCHEMA,
        )
        for name in BAR_INTERVALS
    },
    "1d": Interval(DAILY_BARS_TABLE, "date", "daily", timedelta(days=1), DAILY_SCHEMA),
}
# adjustment -> the factor prices are multiplied by (None: as traded).
ADJUSTMENTS: dict[str, str | None] = {
    "none": None,
    "splits": "split_factor",
    "splits_and_dividends": "total_factor",
}
DEFAULT_INTERVAL = "1m"
DEFAULT_ADJUSTMENT = "none"
ADJUSTED_PRICES = ("open", "high", "low", "close", "vwap")
_PARTITION_KEY_FORMAT = {"hourly": "%Y-%m-%d-%H:00", "daily": "%Y-%m-%d"}


@dataclass(frozen=True)
class BarsRequest:
    """A checked request: the interval's tables and the range as UTC datetimes."""

    interval: Interval
    adjustment: str
    start: datetime
    end: datetime


def as_utc(value: date | datetime, *, name: str) -> datetime:
    """A bound as a UTC datetime: a date is its UTC midnight; a naive datetime is refused."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInputError(
                f"{name} {value.isoformat()} has no time zone: give a UTC time "
                f"(e.g. {value.isoformat()}+00:00) or a date"
            )
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise InvalidInputError(f"{name} must be a date or a UTC datetime, not {value!r}")


def check_request(
    start: date | datetime, end: date | datetime, *, interval: str, adjustment: str
) -> BarsRequest:
    """The request, or an ``InvalidInputError`` naming the unknown interval or adjustment (and
    the valid ones) or both bounds of a reversed or empty range."""
    if interval not in INTERVALS:
        raise InvalidInputError(
            f"unknown interval {interval!r}: available are {', '.join(INTERVALS)}"
        )
    if adjustment not in ADJUSTMENTS:
        raise InvalidInputError(
            f"unknown adjustment {adjustment!r}: expected one of {', '.join(ADJUSTMENTS)}"
        )
    first, last = as_utc(start, name="start"), as_utc(end, name="end")
    if first >= last:
        what = "empty" if first == last else "reversed"
        raise InvalidInputError(
            f"{what} range: start {first.isoformat()} is not before end {last.isoformat()} "
            "(the range is [start, end): end is excluded)"
        )
    return BarsRequest(INTERVALS[interval], adjustment, first, last)


def partition_keys_between(interval: Interval, start: datetime, end: datetime) -> list[str]:
    """The keys of ``interval``'s partitions overlapping ``[start, end)`` (UTC), in order."""
    if interval.grain == "hourly":
        at = start.replace(minute=0, second=0, microsecond=0)
    else:
        at = start.replace(hour=0, minute=0, second=0, microsecond=0)
    key_format = _PARTITION_KEY_FORMAT[interval.grain]
    keys = []
    while at < end:
        keys.append(at.strftime(key_format))
        at += interval.partition_length
    return keys


def scan_bars(
    warehouse: Warehouse,
    *,
    table: Callable[[str], str],
    symbols: Sequence[str],
    start: date | datetime,
    end: date | datetime,
    interval: str = DEFAULT_INTERVAL,
    adjustment: str = DEFAULT_ADJUSTMENT,
    factors_hint: str = "build the adjustment factors first",
) -> pl.LazyFrame:
    """The bars of ``symbols`` over ``[start, end)`` (start included, end excluded; a date is
    its UTC midnight), sorted by (symbol, ts) — or (symbol, date) at ``1d``, where a day is in
    the range when its UTC midnight is — in the table's schema, prices adjusted as asked.

    ``table`` maps a table's base name to the source's (``Source.table``). Only the partitions
    overlapping the range are read; one that was never materialized has no rows (not an
    error). An adjustment needs the source's factors table: if it was never written, an
    ``InvalidInputError`` says so, followed by ``factors_hint`` (what to materialize)."""
    request = check_request(start, end, interval=interval, adjustment=adjustment)
    spec = request.interval
    bars_table = table(spec.table)
    wanted = partition_keys_between(spec, request.start, request.end)
    present = set(warehouse.partition_keys(bars_table))
    keys = [key for key in wanted if key in present]
    if not keys:
        return pl.LazyFrame(schema=spec.schema)
    time = pl.col(spec.time_column)
    if spec.time_column == "date":
        # A day is in the range when its UTC midnight is.
        first, last = request.start, request.end
        in_range = (time >= _first_day_at_or_after(first)) & (time < _first_day_at_or_after(last))
    else:
        in_range = (time >= request.start) & (time < request.end)
    bars = (
        warehouse.scan(bars_table, keys)
        .filter(pl.col("symbol").is_in(list(symbols)) & in_range)
        .sort("symbol", spec.time_column)
    )
    factor_column = ADJUSTMENTS[request.adjustment]
    if factor_column is None:
        return bars
    factors_table = table(ADJUSTMENT_FACTORS_TABLE)
    try:
        factors = warehouse.scan_table(factors_table)
    except StorageError:
        raise InvalidInputError(
            f"adjustment {request.adjustment!r} needs the adjustment factors, and "
            f"{factors_table} has never been written: {factors_hint}"
        ) from None
    return adjust(bars, factors, factor_column=factor_column, time_column=spec.time_column)


def _first_day_at_or_after(moment: datetime) -> date:
    return moment.date() + timedelta(days=moment.time() != datetime.min.time())


def adjust(
    bars: pl.LazyFrame, factors: pl.LazyFrame, *, factor_column: str, time_column: str
) -> pl.LazyFrame:
    """``bars`` with prices x ``factor_column`` and volume / split_factor, joined on (symbol,
    day); a day after the factors' ``as_of`` takes 1.0 (see the module docstring)."""
    columns = bars.collect_schema().names()
    day = pl.col("ts").dt.date() if time_column == "ts" else pl.col("date")
    as_of = factors.select(pl.col("as_of").max()).collect().item()
    joined = bars.with_columns(day.alias("_day")).join(
        factors.select(
            "symbol",
            pl.col("date").alias("_day"),
            pl.col("split_factor").alias("_split"),
            pl.col(factor_column).alias("_price"),
        ),
        on=["symbol", "_day"],
        how="left",
        maintain_order="left",
    )
    after_build = pl.col("_day") > as_of if as_of is not None else pl.lit(True)
    split = pl.when(after_build).then(pl.col("_split").fill_null(1.0)).otherwise(pl.col("_split"))
    price = pl.when(after_build).then(pl.col("_price").fill_null(1.0)).otherwise(pl.col("_price"))
    return joined.with_columns(pl.col(*ADJUSTED_PRICES) * price, pl.col("volume") / split).select(
        columns
    )
