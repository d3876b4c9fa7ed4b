"""The simulator's price walk: a deterministic 1-minute bar for any symbol and minute, 24/7.

Prices are a pure function of ``(symbol, minute, seed)``, so paging, overlapping windows and
separate processes agree byte for byte:

- a per-symbol daily random walk anchored at 2020-01-01 gives the log price at every UTC
  midnight (``_DailyWalk``; sequential, but one Gaussian step per day and cached);
- within a UTC day the price is a Brownian bridge from that day's midnight price to the next
  one, drawn minute by minute from a ``random.Random`` seeded from a SHA-256 digest of the day.
  The day's last close therefore *is* the next day's first open, so the walk is continuous
  across midnight (a 00:00 return is like any other) while any day can still be generated on
  its own, without walking the minutes of the days before it.

This is the walk on today's share basis, as if no corporate action ever happened: ``data.py``
keeps a calendar symbol's minutes in its sessions and puts them on the unadjusted basis of its
splits (``actions.py``). Minutes are counted from the Unix epoch (minute 0 opens at
1970-01-01T00:00Z).
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

__all__ = [
    "MAX_MINUTE",
    "MINUTES_PER_DAY",
    "MIN_MINUTE",
    "SUPPORTED_RANGE",
    "UNIX_DATE",
    "Bar",
    "as_utc",
    "ceil_minute",
    "digest_int",
    "floor_minute",
    "minute_iso",
    "unit",
    "walk_bar",
    "walk_bars",
]

MINUTES_PER_DAY = 1440
UNIX_DATE = date(1970, 1, 1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Anchor of the daily price walk; days before it walk backwards with their own stream.
_WALK_EPOCH_DAY = (date(2020, 1, 1) - UNIX_DATE).days
# Supported data range. Bounded so a request for year 9999 cannot make us walk millions
# of days (the daily walk is sequential and cached in memory).
MIN_MINUTE = 0
MAX_MINUTE = (date(2100, 1, 1) - UNIX_DATE).days * MINUTES_PER_DAY
SUPPORTED_RANGE = "1970-01-01..2100-01-01"  # MIN_MINUTE..MAX_MINUTE, as errors name it
_ONE_MINUTE = timedelta(minutes=1)

# (o, h, l, c, v, n, vw) — tuples keep the per-day cache small and immutable.
Bar = tuple[float, float, float, float, float, int, float]


def digest_int(text: str) -> int:
    """A deterministic 128-bit integer derived from ``text``.

    sha256, never hash(): str hashes are salted per process and would break determinism."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "big")


def unit(text: str) -> float:
    """A deterministic float in [0, 1) derived from ``text``."""
    return (digest_int(text) >> 75) / float(1 << 53)


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
        self.base_log = math.log(20.0 + 480.0 * unit(f"{seed}|{symbol}|base"))
        self.daily_vol = 0.01 + 0.02 * unit(f"{seed}|{symbol}|vol")
        self._fwd_rng = random.Random(digest_int(f"{seed}|{symbol}|walk-forward"))
        self._back_rng = random.Random(digest_int(f"{seed}|{symbol}|walk-backward"))
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
        day_iso = (UNIX_DATE + timedelta(days=day)).isoformat()
        self.day_prefix = f"{day_iso}T"
        self._rng = random.Random(digest_int(f"{seed}|{symbol}|{day_iso}"))
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
    return f"{(UNIX_DATE + timedelta(days=day)).isoformat()}T{_TIME_SUFFIXES[minute_of_day]}"


def walk_bars(symbol: str, seed: int, first: int, stop: int) -> Iterator[tuple[str, Bar]]:
    """(ISO open time, bar) of the walk for every minute in [first, stop)."""
    minute = first
    while minute < stop:
        day, offset = divmod(minute, MINUTES_PER_DAY)
        day_stop = min(MINUTES_PER_DAY, offset + (stop - minute))
        day_bars = _day_bars(symbol, seed, day)
        prefix = day_bars.day_prefix
        for i, bar in enumerate(day_bars.slice(offset, day_stop), start=offset):
            yield prefix + _TIME_SUFFIXES[i], bar
        minute += day_stop - offset


def walk_bar(symbol: str, seed: int, minute: int) -> Bar:
    """The walk's bar opening at ``minute``, without generating the rest of its day."""
    day, offset = divmod(minute, MINUTES_PER_DAY)
    return _day_bars(symbol, seed, day).slice(offset, offset + 1)[0]


def as_utc(dt: datetime) -> datetime:
    # Naive datetimes are taken to be UTC, the only zone this API speaks.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def ceil_minute(dt: datetime) -> int:
    """The first minute (since the epoch) that opens at or after ``dt``; naive = UTC."""
    return -((_UNIX_EPOCH - as_utc(dt)) // _ONE_MINUTE)


def floor_minute(dt: datetime) -> int:
    """The minute (since the epoch) that ``dt`` falls in; naive = UTC."""
    return (as_utc(dt) - _UNIX_EPOCH) // _ONE_MINUTE
