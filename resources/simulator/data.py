"""The simulator's market data: deterministic 1-minute bars for any symbol and minute.

Data is a pure function of ``(symbol, minute, seed)``, so paging, overlapping windows and
separate processes agree byte for byte:

- a per-symbol daily random walk anchored at 2020-01-01 gives the log price at every UTC
  midnight (``_DailyWalk``; sequential, but one Gaussian step per day and cached);
- within a UTC day the price is a Brownian bridge from that day's midnight price to the next
  one, drawn minute by minute from a ``random.Random`` seeded from a SHA-256 digest of the day.
  The day's last close therefore *is* the next day's first open, so the walk is continuous
  across midnight (a 00:00 return is like any other) while any day can still be generated on
  its own, without walking the minutes of the days before it.

A symbol on an exchange calendar (``calendar="XNYS"``, from ``exchange_calendars``) keeps the
same prices but has bars only in the calendar's session minutes (open <= t < close; early
closes, holidays, breaks and DST as the calendar has them), less a few deterministic quiet
minutes with no trade: at most two per clock hour, never two in a row, never a session's (or
a break's) first or last minute. A symbol with no calendar trades every minute, 24/7.

Minutes are counted from the Unix epoch (minute 0 opens at 1970-01-01T00:00Z).
"""

from __future__ import annotations

import bisect
import difflib
import functools
import hashlib
import math
import random
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
    "floor_minute",
    "generate_bars",
    "last_bar_minute",
    "minute_iso",
    "trading_ranges",
]

SYMBOL_PATTERN: re.Pattern[str] = re.compile(r"^[A-Z0-9]{1,10}([.-][A-Z0-9]{1,5})?$")

MINUTES_PER_DAY = 1440
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX_DATE = date(1970, 1, 1)
# Anchor of the daily price walk; days before it walk backwards with their own stream.
_WALK_EPOCH_DAY = (date(2020, 1, 1) - _UNIX_DATE).days
# Supported data range. Bounded so a request for year 9999 cannot make us walk millions
# of days (the daily walk is sequential and cached in memory).
MIN_MINUTE = 0
MAX_MINUTE = (date(2100, 1, 1) - _UNIX_DATE).days * MINUTES_PER_DAY
SUPPORTED_RANGE = "1970-01-01..2100-01-01"  # MIN_MINUTE..MAX_MINUTE, as errors name it
_ONE_MINUTE = timedelta(minutes=1)

# (o, h, l, c, v, n, vw) — tuples keep the per-day cache small and immutable.
Bar = tuple[float, float, float, float, float, int, float]


def _digest_int(text: str) -> int:
    # sha256, never hash(): str hashes are salted per process and would break determinism.
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "big")


def _unit(text: str) -> float:
    """A deterministic float in [0, 1) derived from ``text``."""
    return (_digest_int(text) >> 75) / float(1 << 53)


class _DailyWalk:
    """Log price at each UTC midnight for one (symbol, seed): a mean-reverting walk.

    It is both the day's first open and the previous day's last close (``_DayBars`` bridges
    from one to the next), which is what makes the minute walk continuous across days.

    Sequential by nature, so it is extended lazily and cached; ~2,200 steps reach 2026,
    which costs about a millisecond once per symbol.
    """

    # Mild pull back to the base price keeps decades of walking within a sane band.
    _KAPPA = 0.01

    def __init__(self, symbol: str, seed: int) -> None:
        self.base_log = math.log(20.0 + 480.0 * _unit(f"{seed}|{symbol}|base"))
        self.daily_vol = 0.01 + 0.02 * _unit(f"{seed}|{symbol}|vol")
        self._fwd_rng = random.Random(_digest_int(f"{seed}|{symbol}|walk-forward"))
        self._back_rng = random.Random(_digest_int(f"{seed}|{symbol}|walk-backward"))
        self._fwd = [self.base_log]  # index i = epoch + i days
        self._back = [self.base_log]  # index i = epoch - i days
        self._lock = threading.Lock()

    def _step(self, rng: random.Random, current: float) -> float:
        return current - self._KAPPA * (current - self.base_log) + rng.gauss(0.0, self.daily_vol)

    def log_open(self, day_offset: int) -> float:
        with self._lock:
            if day_offset >= 0:
                path, rng, idx = self._fwd, self._fwd_rng, day_offset
            else:
                path, rng, idx = self._back, self._back_rng, -day_offset
            while len(path) <= idx:
                path.append(self._step(rng, path[-1]))
            return path[idx]


@functools.lru_cache(maxsize=256)
def _daily_walk(symbol: str, seed: int) -> _DailyWalk:
    return _DailyWalk(symbol, seed)


# The Brownian bridge from minute m of a day to its close, N - m minutes ahead: the next log
# price is normal with mean target - (target - x) * keep[m] and standard deviation
# sigma * spread[m], where keep[m] = (N - m - 1) / (N - m) and spread[m] = sqrt(keep[m]).
# Every 1-minute return then has the same marginal spread, whatever the minute of the day.
_BRIDGE_KEEP: tuple[float, ...] = tuple(
    (MINUTES_PER_DAY - m - 1) / (MINUTES_PER_DAY - m) for m in range(MINUTES_PER_DAY)
)
_BRIDGE_SPREAD: tuple[float, ...] = tuple(math.sqrt(k) for k in _BRIDGE_KEEP)


class _DayBars:
    """Minute bars of one UTC day, generated lazily up to the highest minute asked for.

    Minute m only depends on minutes 0..m of the same day (and on the two midnight prices the
    day bridges), so asking for the last closed minute (``/v1/latest``) never forces
    generating the rest of the day.
    """

    def __init__(self, symbol: str, seed: int, day: int) -> None:
        day_iso = (_UNIX_DATE + timedelta(days=day)).isoformat()
        self.day_prefix = f"{day_iso}T"
        self._rng = random.Random(_digest_int(f"{seed}|{symbol}|{day_iso}"))
        walk = _daily_walk(symbol, seed)
        self._log_price = walk.log_open(day - _WALK_EPOCH_DAY)
        # Where the bridge must land at 24:00: the next day's opening price.
        self._log_target = walk.log_open(day + 1 - _WALK_EPOCH_DAY)
        # Scale so the intraday walk's variance over a day matches the daily volatility.
        self._sigma = walk.daily_vol / math.sqrt(MINUTES_PER_DAY)
        self._prev_close = round(math.exp(self._log_price), 4)
        self._weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        self._bars: list[Bar] = []
        self._lock = threading.Lock()

    def _extend(self, stop: int) -> None:
        # One tight loop with everything in locals: this is the hot path of every page
        # (a full day must stay well under 50 ms), hence no per-bar method calls.
        bars = self._bars
        gauss, uniform = self._rng.gauss, self._rng.random
        exp = math.exp
        sigma = self._sigma
        wick_scale = 1.2 * sigma
        log_price, o = self._log_price, self._prev_close
        target, keep, spread = self._log_target, _BRIDGE_KEEP, _BRIDGE_SPREAD
        # Busier during the US cash session and quieter at weekends, purely for realism.
        quiet_trades = 20.0 * (0.2 if self._weekend else 1.0)
        busy_trades = 5.0 * quiet_trades
        log = math.log
        for minute_of_day in range(len(bars), stop):
            # A Brownian-bridge step towards the day's close. In the last minute keep is 0.0
            # and spread 0.0, so the close is exactly the target: the next day's first open.
            log_price = (
                target
                - (target - log_price) * keep[minute_of_day]
                + gauss(0.0, sigma * spread[minute_of_day])
            )
            c = round(exp(log_price), 4)
            hi_body, lo_body = (o, c) if o >= c else (c, o)
            # Clamp after rounding: rounding a tiny wick could otherwise cross the body.
            h = round(hi_body * exp(wick_scale * uniform() ** 2), 4)
            h = h if h > hi_body else hi_body
            low = round(lo_body * exp(-wick_scale * uniform() ** 2), 4)
            low = low if low < lo_body else lo_body
            # Volume-weighted price sits inside the range, nearer the body's middle.
            vw = round(low + (h - low) * (0.25 + 0.5 * uniform()), 4)
            vw = min(max(vw, low), h)
            # Exponential trade counts and uniform trade sizes: cheaper than more gauss().
            mean_trades = busy_trades if 810 <= minute_of_day < 1200 else quiet_trades
            n = 1 + int(-mean_trades * log(1.0 - uniform()))
            v = round(n * (40.0 + 80.0 * uniform()), 2)
            bars.append((o, h, low, c, v, n, vw))
            o = c
        self._log_price, self._prev_close = log_price, o

    def slice(self, first: int, stop: int) -> list[Bar]:
        """Bars for minutes-of-day ``first..stop-1``."""
        with self._lock:
            if len(self._bars) < stop:
                self._extend(stop)
            return self._bars[first:stop]


@functools.lru_cache(maxsize=32)
def _day_bars(symbol: str, seed: int, day: int) -> _DayBars:
    return _DayBars(symbol, seed, day)


# "HH:MM:00Z" for every minute of a day, so timestamps are a string concatenation.
_TIME_SUFFIXES: tuple[str, ...] = tuple(
    f"{m // 60:02d}:{m % 60:02d}:00Z" for m in range(MINUTES_PER_DAY)
)


def minute_iso(minute: int) -> str:
    """``minute`` (since the epoch) as ``YYYY-MM-DDTHH:MM:00Z``."""
    day, minute_of_day = divmod(minute, MINUTES_PER_DAY)
    return f"{(_UNIX_DATE + timedelta(days=day)).isoformat()}T{_TIME_SUFFIXES[minute_of_day]}"


def _iter_bars(symbol: str, seed: int, first: int, stop: int) -> Iterator[tuple[str, Bar]]:
    """(ISO open time, bar) for every minute in [first, stop)."""
    minute = first
    while minute < stop:
        day, offset = divmod(minute, MINUTES_PER_DAY)
        day_stop = min(MINUTES_PER_DAY, offset + (stop - minute))
        day_bars = _day_bars(symbol, seed, day)
        prefix = day_bars.day_prefix
        for i, bar in enumerate(day_bars.slice(offset, day_stop), start=offset):
            yield prefix + _TIME_SUFFIXES[i], bar
        minute += day_stop - offset


def _bar_dict(t: str, bar: Bar) -> dict[str, Any]:
    o, h, low, c, v, n, vw = bar
    return {"t": t, "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw}


# --------------------------------------------------------------------------------------
# Exchange calendars: which minutes have bars
# --------------------------------------------------------------------------------------

# exchange_calendars builds a calendar for a date range; ours is the supported data range,
# narrowed to the calendar's own bounds (some only know their holidays from, or to, a year).
# Outside those bounds the symbol has no sessions, hence no bars.
_CALENDAR_FIRST_DAY = "1970-01-01"
_CALENDAR_LAST_DAY = "2099-12-31"  # the last day before MAX_MINUTE
_NANOS_PER_MINUTE = 60_000_000_000


class _Sessions:
    """The trading intervals ``[start, end)`` of one exchange calendar, in epoch minutes.

    A session with a break (Hong Kong, Tokyo) is two intervals. Built once per calendar
    (about 0.1 s for 130 years of XNYS) and then only bisected: paging stays as fast as 24/7.
    """

    def __init__(self, name: str) -> None:
        # Imported here: exchange_calendars pulls in pandas, and only a simulator serving a
        # calendar symbol should pay for that.
        import exchange_calendars as xcals

        with warnings.catch_warnings():
            # exchange_calendars 4.13 still uses pandas APIs that pandas 3.1 deprecates
            # (Series.values, DatetimeIndex.weekday, ...): not ours to fix, and nothing a user
            # of the simulator can act on. Only the calendar's construction runs in here.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                default = xcals.get_calendar(name)
            except xcals.errors.InvalidCalendarName:
                known = xcals.get_calendar_names()
                raise ValueError(_unknown_calendar_message(name, known)) from None
            kind = type(default)
            first, last = _CALENDAR_FIRST_DAY, _CALENDAR_LAST_DAY
            if (bound := kind.bound_min()) is not None:
                first = max(first, bound.strftime("%Y-%m-%d"))
            if (bound := kind.bound_max()) is not None:
                last = min(last, bound.strftime("%Y-%m-%d"))
            cal = xcals.get_calendar(name, start=first, end=last)
        # The calendar's own int64 nanosecond arrays (UTC). A session without a break has NaT
        # (the smallest int64) there, which the bounds test below tells apart.
        starts: list[int] = []
        ends: list[int] = []
        sessions = zip(
            (cal.opens_nanos // _NANOS_PER_MINUTE).tolist(),
            (cal.break_starts_nanos // _NANOS_PER_MINUTE).tolist(),
            (cal.break_ends_nanos // _NANOS_PER_MINUTE).tolist(),
            (cal.closes_nanos // _NANOS_PER_MINUTE).tolist(),
            strict=True,
        )
        for open_, break_start, break_end, close in sessions:
            if open_ < break_start < break_end < close:
                starts += [open_, break_end]
                ends += [break_start, close]
            else:
                starts.append(open_)
                ends.append(close)
        self.name = name
        self.starts: Sequence[int] = starts
        self.ends: Sequence[int] = ends


def _unknown_calendar_message(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name.upper(), known, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (
        f"unknown exchange calendar {name!r}: {hint}use a name exchange_calendars knows, "
        f"e.g. XNYS, XNAS or XLON ({len(known)} in all: exchange_calendars.get_calendar_names())"
    )


_sessions_lock = threading.Lock()
_sessions_by_name: dict[str, _Sessions] = {}


def _sessions(name: str) -> _Sessions:
    # Under a lock: two first requests must not both spend 0.1 s building the same calendar.
    with _sessions_lock:
        sessions = _sessions_by_name.get(name)
        if sessions is None:
            sessions = _sessions_by_name[name] = _Sessions(name)
        return sessions


def check_calendar(name: str) -> None:
    """Load exchange calendar ``name`` (cached); ``ValueError`` naming it if it is unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"exchange calendar must be a non-empty name, not {name!r}")
    _sessions(name)


# Quiet minutes sit at minutes 1..58 of a clock hour and at least 2 apart, so no two are
# ever adjacent, not even across an hour boundary.
_QUIET_COUNTS = (0, 0, 1, 2)  # quiet minutes in an hour, drawn uniformly from these


def _quiet_in_hour(symbol: str, seed: int, hour: int) -> tuple[int, ...]:
    """Minute offsets (1..58) of ``hour``'s quiet minutes, at most two, sorted."""
    bits = _digest_int(f"{seed}|{symbol}|quiet|{hour}")
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
    sessions = _sessions(calendar)
    starts, ends = sessions.starts, sessions.ends
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


def bars_between(
    symbol: str, seed: int, first: int, stop: int, *, calendar: str | None = None
) -> list[dict[str, Any]]:
    """The API's bar records (``t o h l c v n vw``) for the minutes ``first..stop-1`` that
    have a bar: all of them without a calendar, the traded session minutes with one."""
    return [
        _bar_dict(t, bar)
        for a, b in trading_ranges(symbol, seed, first, stop, calendar=calendar)
        for t, bar in _iter_bars(symbol, seed, a, b)
    ]


def bars_page(
    symbol: str, seed: int, first: int, stop: int, limit: int, *, calendar: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """At most ``limit`` bars of ``[first, stop)`` and the minute the page covers up to.

    That minute is ``stop`` when no bar of the window was left out, else the open time of the
    first bar left out, where the next page starts. ``limit`` counts bars, not minutes: a page
    of an equities symbol spans closed hours without spending its limit on them."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    bars: list[dict[str, Any]] = []
    ranges = trading_ranges(symbol, seed, first, stop, calendar=calendar)
    for a, b in ranges:
        room = limit - len(bars)
        if b - a > room:
            bars += bars_between(symbol, seed, a, a + room)
            return bars, a + room
        bars += bars_between(symbol, seed, a, b)
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
    sessions = _sessions(calendar)
    i = bisect.bisect_left(sessions.starts, before) - 1  # the last interval opened before
    if i < 0:
        return None
    interval = sessions.starts[i], sessions.ends[i]
    minute = min(interval[1], before) - 1
    if next(_quiet_minutes(symbol, seed, interval, minute, minute + 1), None) is not None:
        minute -= 1
    return minute


def bar_at(symbol: str, seed: int, minute: int) -> Bar:
    """The bar opening at ``minute``, without generating the rest of its day."""
    day, offset = divmod(minute, MINUTES_PER_DAY)
    return _day_bars(symbol, seed, day).slice(offset, offset + 1)[0]


def as_utc(dt: datetime) -> datetime:
    # Naive datetimes are taken to be UTC, the only zone this API speaks.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _ceil_minute(dt: datetime) -> int:
    return -((_UNIX_EPOCH - as_utc(dt)) // _ONE_MINUTE)


def floor_minute(dt: datetime) -> int:
    """The minute (since the epoch) that ``dt`` falls in; naive = UTC."""
    return (as_utc(dt) - _UNIX_EPOCH) // _ONE_MINUTE


def generate_bars(
    symbol: str,
    start: datetime,
    end: datetime,
    *,
    seed: int = 0,
    calendar: str | None = None,
) -> list[dict]:
    """1-minute bars whose open time t satisfies ``start <= t < end`` (naive = UTC).

    ``calendar`` (an exchange_calendars name such as ``"XNYS"``) keeps only the minutes the
    symbol trades on it; None trades 24/7. Not clipped to "now": this is the ground truth
    the server pages through.
    """
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError("invalid symbol")
    if calendar is not None:
        check_calendar(calendar)
    first, stop = _ceil_minute(start), _ceil_minute(end)
    if first >= stop:
        return []
    if first < MIN_MINUTE or stop > MAX_MINUTE:
        raise ValueError(f"window outside the supported range {SUPPORTED_RANGE}")
    return bars_between(symbol, seed, first, stop, calendar=calendar)
