"""The bars the simulator serves: deterministic 1-minute bars for any symbol and minute.

Data is a pure function of ``(symbol, minute, seed)`` (and of the corporate actions announced
to a server), so paging, overlapping windows and separate processes agree byte for byte. Prices
come from the continuous walk of ``walk.py``.

A symbol on an exchange calendar (``calendar="XNYS"``, from ``exchange_calendars``, see
``sessions.py``) has bars only in the calendar's session minutes (open <= t < close; early
closes, holidays, breaks and DST as the calendar has them), less a few deterministic quiet
minutes with no trade: at most two per clock hour, never two in a row, never a session's (or
a break's) first or last minute. It is an equity, so it has corporate actions
(``actions.py``): its bars are *unadjusted*, on the share basis of their own day (prices jump
at a split), and split-adjusted as of a moment on request. A symbol with no calendar trades
every minute, 24/7, and its bars are the walk's.

Minutes are counted from the Unix epoch (minute 0 opens at 1970-01-01T00:00Z).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from resources.simulator.actions import (
    NOTHING_ANNOUNCED,
    Announced,
    PriceBasis,
    adjusted_bar,
    price_basis,
    unadjusted_bar,
)
from resources.simulator.sessions import check_calendar, sessions
from resources.simulator.walk import (
    MAX_MINUTE,
    MIN_MINUTE,
    MINUTES_PER_DAY,
    SUPPORTED_RANGE,
    Bar,
    as_utc,
    ceil_minute,
    digest_int,
    floor_minute,
    minute_iso,
    walk_bar,
    walk_bars,
)

__all__ = [
    "MAX_MINUTE",
    "MINUTES_PER_DAY",
    "MIN_MINUTE",
    "SUPPORTED_RANGE",
    "SYMBOL_PATTERN",
    "Bar",
    "as_utc",
    "bar_at",
    "bars_between",
    "bars_page",
    "check_calendar",
    "checked_calendars",
    "floor_minute",
    "generate_bars",
    "last_bar_minute",
    "minute_iso",
    "trading_ranges",
]

SYMBOL_PATTERN: re.Pattern[str] = re.compile(r"^[A-Z0-9]{1,10}([.-][A-Z0-9]{1,5})?$")


def checked_calendars(calendars: Mapping[str, str]) -> dict[str, str]:
    """A server's ``symbol -> exchange calendar`` map, validated, every calendar loaded (so
    no request pays for building one); ``ValueError`` naming the symbol otherwise."""
    for symbol, name in calendars.items():
        if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
            raise ValueError(
                f"calendars: {symbol!r} is not a valid symbol (e.g. AAPL, BRK.B, RDS-A)"
            )
        try:
            check_calendar(name)
        except ValueError as exc:
            raise ValueError(f"calendars: symbol {symbol}: {exc}") from None
    return dict(calendars)


def _bar_dict(t: str, bar: Bar) -> dict[str, Any]:
    o, h, low, c, v, n, vw = bar
    return {"t": t, "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw}


# Quiet minutes sit at minutes 1..58 of a clock hour and at least 2 apart, so no two are
# ever adjacent, not even across an hour boundary.
_QUIET_COUNTS = (0, 0, 1, 2)  # quiet minutes in an hour, drawn uniformly from these


def _quiet_in_hour(symbol: str, seed: int, hour: int) -> tuple[int, ...]:
    """Minute offsets (1..58) of ``hour``'s quiet minutes, at most two, sorted."""
    bits = digest_int(f"{seed}|{symbol}|quiet|{hour}")
    count = _QUIET_COUNTS[bits % len(_QUIET_COUNTS)]
    a, b = 1 + (bits >> 8) % 58, 1 + (bits >> 24) % 58
    if count == 0:
        return ()
    if count == 1 or abs(a - b) < 2:
        return (a,)
    return (a, b) if a < b else (b, a)


def _quiet_minutes(
    symbol: str, seed: int, interval: tuple[int, int], first: int, stop: int
) -> Iterator[int]:
    """Quiet minutes of the trading interval, in ``[first, stop)``, ascending.

    Never the interval's first or last minute: a session opens and closes with a trade."""
    lo, hi = interval
    first, stop = max(first, lo + 1), min(stop, hi - 1)
    if first >= stop:
        return
    for hour in range(first // 60, (stop - 1) // 60 + 1):
        for offset in _quiet_in_hour(symbol, seed, hour):
            if first <= (minute := hour * 60 + offset) < stop:
                yield minute


def trading_ranges(
    symbol: str, seed: int, first: int, stop: int, *, calendar: str | None = None
) -> Iterator[tuple[int, int]]:
    """The ranges ``[a, b)`` of minutes in ``[first, stop)`` that have a bar, ascending.

    Without a calendar that is the whole window; with one, its session minutes less the
    symbol's quiet minutes. Lazy, so a caller paging through years stops early."""
    if calendar is None:
        if first < stop:
            yield first, stop
        return
    cal = sessions(calendar)
    starts, ends = cal.starts, cal.ends
    i = bisect.bisect_right(ends, first)  # the first interval still open at `first`
    while i < len(starts) and starts[i] < stop:
        interval = starts[i], ends[i]
        a, b = max(interval[0], first), min(interval[1], stop)
        for quiet in _quiet_minutes(symbol, seed, interval, a, b):
            if a < quiet:
                yield a, quiet
            a = quiet + 1
        if a < b:
            yield a, b
        i += 1


def _basis(symbol: str, seed: int, calendar: str | None, announced: Announced) -> PriceBasis | None:
    """The share basis of a calendar symbol (an equity); None for a 24/7 one (no actions)."""
    if calendar is None:
        return None
    return price_basis(symbol, seed=seed, calendar=calendar, announced=announced)


def _range_bars(
    symbol: str, seed: int, a: int, b: int, basis: PriceBasis | None, adjusted_at: int | None
) -> list[dict[str, Any]]:
    """The bar records of the minutes ``[a, b)``, a trading range: within one session, so on
    one share basis (a split's boundary is a session's open), looked up once, not per bar."""
    bars = walk_bars(symbol, seed, a, b)
    if basis is None:
        return [_bar_dict(t, bar) for t, bar in bars]
    multiplier = basis.multiplier(a)
    factor = 1.0 if adjusted_at is None else basis.adjustment(a, adjusted_at)
    return [_bar_dict(t, adjusted_bar(unadjusted_bar(bar, multiplier), factor)) for t, bar in bars]


def bars_between(
    symbol: str,
    seed: int,
    first: int,
    stop: int,
    *,
    calendar: str | None = None,
    announced: Announced = NOTHING_ANNOUNCED,
    adjusted_at: int | None = None,
) -> list[dict[str, Any]]:
    """The API's bar records (``t o h l c v n vw``) for the minutes ``first..stop-1`` that
    have a bar: all of them without a calendar, the traded session minutes with one.

    A calendar symbol's bars are unadjusted (on the share basis of their day, its scheduled
    splits and those of ``announced``); with ``adjusted_at`` (an epoch minute) they are
    split-adjusted as of that minute instead (``actions.py``)."""
    basis = _basis(symbol, seed, calendar, announced)
    return [
        bar
        for a, b in trading_ranges(symbol, seed, first, stop, calendar=calendar)
        for bar in _range_bars(symbol, seed, a, b, basis, adjusted_at)
    ]


def bars_page(
    symbol: str,
    seed: int,
    first: int,
    stop: int,
    limit: int,
    *,
    calendar: str | None = None,
    announced: Announced = NOTHING_ANNOUNCED,
    adjusted_at: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """At most ``limit`` bars of ``[first, stop)`` and the minute the page covers up to.

    That minute is ``stop`` when no bar of the window was left out, else the open time of the
    first bar left out, where the next page starts. ``limit`` counts bars, not minutes: a page
    of an equities symbol spans closed hours without spending its limit on them. Bars as
    :func:`bars_between` has them."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    basis = _basis(symbol, seed, calendar, announced)
    bars: list[dict[str, Any]] = []
    ranges = trading_ranges(symbol, seed, first, stop, calendar=calendar)
    for a, b in ranges:
        room = limit - len(bars)
        if b - a > room:
            bars += _range_bars(symbol, seed, a, a + room, basis, adjusted_at)
            return bars, a + room
        bars += _range_bars(symbol, seed, a, b, basis, adjusted_at)
        if len(bars) == limit:
            following = next(ranges, None)
            return bars, stop if following is None else following[0]
    return bars, stop


def last_bar_minute(
    symbol: str, seed: int, before: int, *, calendar: str | None = None
) -> int | None:
    """The open time of the last bar before minute ``before``; None if there is none.

    Without a calendar that is ``before - 1``; with one, the last session minute that has a
    bar (a quiet minute has no trade, so its predecessor, never quiet, answers)."""
    if calendar is None:
        return before - 1
    cal = sessions(calendar)
    i = bisect.bisect_left(cal.starts, before) - 1  # the last interval opened before
    if i < 0:
        return None
    interval = cal.starts[i], cal.ends[i]
    minute = min(interval[1], before) - 1
    if next(_quiet_minutes(symbol, seed, interval, minute, minute + 1), None) is not None:
        minute -= 1
    return minute


def bar_at(
    symbol: str,
    seed: int,
    minute: int,
    *,
    calendar: str | None = None,
    announced: Announced = NOTHING_ANNOUNCED,
) -> Bar:
    """The bar opening at ``minute``, without generating the rest of its day; unadjusted for
    a calendar symbol, as :func:`bars_between` serves it."""
    bar = walk_bar(symbol, seed, minute)
    basis = _basis(symbol, seed, calendar, announced)
    return bar if basis is None else unadjusted_bar(bar, basis.multiplier(minute))


def generate_bars(
    symbol: str,
    start: datetime,
    end: datetime,
    *,
    seed: int = 0,
    calendar: str | None = None,
    announced: Announced = NOTHING_ANNOUNCED,
    adjusted_as_of: datetime | None = None,
) -> list[dict]:
    """1-minute bars whose open time t satisfies ``start <= t < end`` (naive = UTC).

    ``calendar`` (an exchange_calendars name such as ``"XNYS"``) keeps only the minutes the
    symbol trades on it, unadjusted for its corporate actions (and those of ``announced``),
    or split-adjusted as of ``adjusted_as_of``; None trades 24/7 and has no actions. Not
    clipped to "now": this is the ground truth the server pages through.
    """
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError("invalid symbol")
    if calendar is not None:
        check_calendar(calendar)
    first, stop = ceil_minute(start), ceil_minute(end)
    if first >= stop:
        return []
    if first < MIN_MINUTE or stop > MAX_MINUTE:
        raise ValueError(f"window outside the supported range {SUPPORTED_RANGE}")
    adjusted_at = None if adjusted_as_of is None else floor_minute(adjusted_as_of)
    return bars_between(
        symbol,
        seed,
        first,
        stop,
        calendar=calendar,
        announced=announced,
        adjusted_at=adjusted_at,
    )
