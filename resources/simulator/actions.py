"""Corporate actions of the simulated equities, and Massive's endpoints that list them.

Only a symbol on an exchange calendar (an equity) has corporate actions; a 24/7 symbol (crypto)
never does. Its schedule is a pure function of ``(symbol, seed, calendar)``, anchored by a
SHA-256 digest of ``(seed, symbol)`` (never ``hash()``, which is salted per process), from
:data:`HISTORY_START` to the end of the supported range:

- a 12-month split cycle starting in a month of 2020 the digest picks: a 10-for-1 forward split,
  four months later a 1-for-5 reverse split, four months after that a 1-for-2 reverse split
  (:data:`SPLIT_CYCLE`). A full cycle nets out (0.1 x 5 x 2 = 1), so decades of history stay in
  a sane price band;
- a recurring cash dividend every month (``frequency`` 12), each paying the symbol's steady
  yield (0.2-0.6 % a month, from the digest) of the previous session's unadjusted close,
  rounded to cents and at least 0.01;
- every date is a session of the symbol's calendar: a nominal day of the month (from the
  digest), moved to the first session on or after it. A split or a dividend is announced
  (a dividend's ``declaration_date``) :data:`ANNOUNCE_SESSIONS` sessions before it executes or
  goes ex; a dividend's ``record_date`` is its ex-date (T+1 settlement) and its ``pay_date``
  :data:`PAY_SESSIONS` sessions later.

Tests add actions published after the fact (:class:`Announced`, :func:`parse_announcement`):
dividends on any date, and splits that change the bars only from their execution date on.

**The price truth.** Bars are the continuous walk ``A`` of ``walk.py`` on today's share basis.
A calendar symbol's *unadjusted* bars, which ``data.py`` serves by default, are
``U = round(A x multiplier, 4)`` (o, h, l, c, vw) and ``round(V / multiplier, 2)`` (volume)
with the trade count unchanged. The multiplier of a session (:meth:`PriceBasis.multiplier`) is
``E / F``: ``F`` is the product of ``split_from / split_to`` of the cycle's splits still to
execute after that session (later full cycles multiply to 1), ``E`` that of the announced
splits executed by then. So unadjusted prices jump x0.1 at a 10-for-1 split and x5 at a 1-for-5
reverse split, and an announced split changes no bar before it. Rounding is monotone, so a
bar's ``l <= o, c, vw <= h`` survives it.

*Split-adjusted as of a moment* (Massive's ``adjusted=true``): ``U x factor`` for prices and
``V / factor`` for volume, without rounding, where the factor
(:meth:`PriceBasis.adjustment`) is the product of ``split_from / split_to`` of every split
with the bar's session before its execution date and executed by that moment. Dividends never
adjust bars.

**When things happen.** A split executes, and a dividend goes ex, overnight: as Massive puts
it, on the execution date all trading is already adjusted. One counts as executed (or ex) from
the UTC midnight of its date, or from its session's open if that comes first (an Asian session
opens the evening before its date, in UTC). An action is listed once announced (announced
actions at once), future dates included; ``historical_adjustment_factor`` counts only what has
executed.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import dataclasses
import functools
import hashlib
import math
import operator
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from resources.simulator.sessions import Sessions, sessions
from resources.simulator.walk import (
    MAX_MINUTE,
    MINUTES_PER_DAY,
    UNIX_DATE,
    Bar,
    digest_int,
    unit,
    walk_bar,
)

__all__ = [
    "ACTIONS_PATHS",
    "ANNOUNCE_SESSIONS",
    "DEFAULT_LIMIT",
    "DIVIDENDS_PATH",
    "DIVIDEND_FREQUENCY",
    "DISTRIBUTION_TYPES",
    "HISTORY_START",
    "MAX_LIMIT",
    "NOTHING_ANNOUNCED",
    "PAY_SESSIONS",
    "SCHEDULE_SALT",
    "SPLITS_PATH",
    "SPLIT_CYCLE",
    "SPLIT_TYPES",
    "ActionsQuery",
    "Announced",
    "Dividend",
    "DividendResult",
    "InvalidQuery",
    "PriceBasis",
    "Split",
    "SplitResult",
    "actions_page",
    "adjusted_bar",
    "dividend_results",
    "massive_error",
    "new_request_id",
    "parse_actions_query",
    "parse_announcement",
    "previous_close",
    "price_basis",
    "split_results",
    "unadjusted_bar",
]

# Salts the digest that places each symbol's cycle and dividend day. Any salt gives a valid
# schedule; this one is the first of "corporate-actions", "corporate-actions-1", ... under which,
# at seed 0, (1) the demo's default window (Fri 2026-01-16 .. Tue 2026-01-20, XNYS closed on
# the Monday) holds a split and a dividend of its five stocks (AMZN's 10-for-1 split and AAPL's
# dividend, both 2026-01-20), and (2) AAPL (XNYS) and VOD.L (XLON) trade on the walk's
# own basis that week, as tests/unit/test_simulator_markets.py assumes when it compares their
# bars with the 24/7 walk.
SCHEDULE_SALT = "corporate-actions-14"
# The first month of the schedule: the walk's anchor. Pricing a dividend means generating its
# previous session (~3 ms), so six years of monthly dividends cost ~0.2 s per symbol, once.
HISTORY_START = date(2020, 1, 1)
_LAST_DAY = date(2099, 12, 31)  # the last day of the supported range
# (months after the cycle's first split, split_from, split_to): the cycle nets out to 1.
SPLIT_CYCLE: tuple[tuple[int, float, float], ...] = ((0, 1.0, 10.0), (4, 5.0, 1.0), (8, 2.0, 1.0))
_CYCLE_MONTHS = 12
ANNOUNCE_SESSIONS = 10  # an action is announced (declared) this many sessions ahead
PAY_SESSIONS = 3  # a dividend is paid this many sessions after its ex-date
DIVIDEND_FREQUENCY = 12  # monthly
_YIELD_RANGE = (0.002, 0.006)  # a symbol's monthly dividend, as a fraction of the close

SPLIT_TYPES = ("forward_split", "reverse_split", "stock_dividend")
DISTRIBUTION_TYPES = ("recurring", "special", "supplemental", "irregular", "unknown")
_FACTOR_DIGITS = 6  # Massive rounds historical_adjustment_factor to 6 decimals

# Unadjusted multiplier after each split of a cycle (the product of the ratios so far), reset
# to exactly 1.0 by the cycle's last split instead of accumulating float error over decades.
_CYCLE_LEVELS: tuple[float, ...] = tuple(
    math.prod(f / t for _, f, t in SPLIT_CYCLE[:i]) for i in range(len(SPLIT_CYCLE))
)


def _day_number(day: date) -> int:
    return (day - UNIX_DATE).days


def _from_day_number(day: int) -> date:
    return UNIX_DATE + timedelta(days=day)


def _action_id(*parts: object) -> str:
    """A stable id shaped like Massive's (``E`` + hex), from what identifies the action."""
    return "E" + hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).hexdigest()[:32]


def new_request_id() -> str:
    """A fresh ``request_id`` as Massive sends one: 32 random hex digits."""
    return secrets.token_hex(16)


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """A split of ``ticker``: ``split_from`` old shares become ``split_to`` new ones at the
    open of ``execution_date``. ``announced`` is the day it was published; None for one
    announced through the admin API (listed at once)."""

    ticker: str
    execution_date: date
    split_from: float
    split_to: float
    adjustment_type: str
    id: str
    announced: date | None = None

    @property
    def ratio(self) -> float:
        """What a price before the execution date is multiplied by to be on the new basis."""
        return self.split_from / self.split_to


@dataclass(frozen=True)
class Dividend:
    """A cash dividend of ``ticker``: ``cash_amount`` per share as paid on the ex-date (not
    split-adjusted, as Massive serves it). ``announced`` as for :class:`Split`."""

    ticker: str
    ex_dividend_date: date
    cash_amount: float
    currency: str
    declaration_date: date | None
    record_date: date
    pay_date: date
    frequency: int
    distribution_type: str
    id: str
    announced: date | None = None


@dataclass(frozen=True)
class Announced:
    """Actions published after the schedule (tests: "announced after the bars were built").

    Immutable: a server swaps in ``plus(...)``'s result, so a request in flight keeps the set
    it started with."""

    splits: tuple[Split, ...] = ()
    dividends: tuple[Dividend, ...] = ()

    def plus(self, other: Announced) -> Announced:
        """Both sets; announcing the same action twice (the same id) keeps one."""
        splits = {s.id: s for s in (*self.splits, *other.splits)}
        dividends = {d.id: d for d in (*self.dividends, *other.dividends)}
        return Announced(tuple(splits.values()), tuple(dividends.values()))

    def splits_of(self, ticker: str) -> tuple[Split, ...]:
        return tuple(s for s in self.splits if s.ticker == ticker)

    def dividends_of(self, ticker: str) -> tuple[Dividend, ...]:
        return tuple(d for d in self.dividends if d.ticker == ticker)


NOTHING_ANNOUNCED = Announced()


@dataclass(frozen=True)
class SplitResult:
    """A split as listed at some moment, with Massive's cumulative factor as of then."""

    split: Split
    historical_adjustment_factor: float

    def as_json(self) -> dict[str, Any]:
        """Massive's ``/stocks/v1/splits`` result, in its field order."""
        s = self.split
        return {
            "id": s.id,
            "ticker": s.ticker,
            "execution_date": s.execution_date.isoformat(),
            "split_from": float(s.split_from),
            "split_to": float(s.split_to),
            "adjustment_type": s.adjustment_type,
            "historical_adjustment_factor": self.historical_adjustment_factor,
        }


@dataclass(frozen=True)
class DividendResult:
    """A dividend as listed at some moment, with Massive's derived fields as of then."""

    dividend: Dividend
    historical_adjustment_factor: float
    split_adjusted_cash_amount: float

    def as_json(self) -> dict[str, Any]:
        """Massive's ``/stocks/v1/dividends`` result, in its field order (no
        ``declaration_date`` when none was announced, as Massive allows)."""
        d = self.dividend
        body: dict[str, Any] = {
            "id": d.id,
            "ticker": d.ticker,
            "cash_amount": d.cash_amount,
            "currency": d.currency,
        }
        if d.declaration_date is not None:
            body["declaration_date"] = d.declaration_date.isoformat()
        body |= {
            "distribution_type": d.distribution_type,
            "ex_dividend_date": d.ex_dividend_date.isoformat(),
            "frequency": d.frequency,
            "historical_adjustment_factor": self.historical_adjustment_factor,
            "pay_date": d.pay_date.isoformat(),
            "record_date": d.record_date.isoformat(),
            "split_adjusted_cash_amount": self.split_adjusted_cash_amount,
        }
        return body


# --------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ScheduledDividend:
    """A scheduled dividend's dates as session indexes; its cash is priced when listed."""

    ex: int
    declared: int
    paid: int


@dataclass(frozen=True)
class _Schedule:
    splits: tuple[Split, ...]
    dividends: tuple[_ScheduledDividend, ...]
    monthly_yield: float
    declared: tuple[int, ...]  # the dividends' declaration sessions, ascending


def _month_day(month_index: int, day: int) -> date:
    """Day ``day`` of month ``month_index`` (months since year 0)."""
    return date(month_index // 12, month_index % 12 + 1, day)


@functools.lru_cache(maxsize=256)
def _schedule(symbol: str, seed: int, calendar: str) -> _Schedule:
    cal = sessions(calendar)
    bits = digest_int(f"{seed}|{symbol}|{SCHEDULE_SALT}")
    first_month = HISTORY_START.year * 12 + HISTORY_START.month - 1
    cycle_start = first_month + bits % _CYCLE_MONTHS
    split_day, dividend_day = 1 + (bits >> 8) % 28, 1 + (bits >> 16) % 28
    low, high = _YIELD_RANGE
    monthly_yield = low + (high - low) * unit(f"{seed}|{symbol}|dividend-yield")
    last_month = _LAST_DAY.year * 12 + _LAST_DAY.month - 1

    def session_on_or_after(month_index: int, day: int) -> int | None:
        index = cal.first_on_or_after(_day_number(_month_day(month_index, day)))
        # An action must be announced within the calendar's sessions too.
        return index if index is not None and index >= ANNOUNCE_SESSIONS else None

    splits: list[Split] = []
    for start in range(cycle_start, last_month + 1, _CYCLE_MONTHS):
        indexes = [session_on_or_after(start + months, split_day) for months, _, _ in SPLIT_CYCLE]
        if indexes[0] is None:
            if splits:
                break  # past the calendar's last session
            continue  # before its first: the history starts with a whole cycle
        for index, (_, split_from, split_to) in zip(indexes, SPLIT_CYCLE, strict=True):
            if index is None:  # the calendar ends mid-cycle
                break
            day = _from_day_number(cal.days[index])
            splits.append(
                Split(
                    ticker=symbol,
                    execution_date=day,
                    split_from=split_from,
                    split_to=split_to,
                    adjustment_type=_split_type(split_from, split_to),
                    id=_action_id("split", seed, symbol, day),
                    announced=_from_day_number(cal.days[index - ANNOUNCE_SESSIONS]),
                )
            )
    dividends: list[_ScheduledDividend] = []
    for month in range(first_month, last_month + 1):
        if (ex := session_on_or_after(month, dividend_day)) is None:
            continue
        if ex + PAY_SESSIONS >= len(cal.days):
            break
        dividends.append(_ScheduledDividend(ex, ex - ANNOUNCE_SESSIONS, ex + PAY_SESSIONS))
    return _Schedule(
        tuple(splits), tuple(dividends), monthly_yield, tuple(d.declared for d in dividends)
    )


def _split_type(split_from: float, split_to: float) -> str:
    return "forward_split" if split_to > split_from else "reverse_split"


# --------------------------------------------------------------------------------------
# The share basis of the bars
# --------------------------------------------------------------------------------------


def _boundary(cal: Sessions, day: date) -> int:
    """The first minute on the post-action basis: the open of the first session on or after
    ``day`` (MAX_MINUTE if the calendar has none)."""
    index = cal.first_on_or_after(_day_number(day))
    return MAX_MINUTE if index is None else cal.opens[index]


def _effective(cal: Sessions, day: date) -> int:
    """The minute from which an action dated ``day`` counts as executed (see the module
    docstring): its UTC midnight, or its session's open if that comes first."""
    return min(_day_number(day) * MINUTES_PER_DAY, _boundary(cal, day))


class PriceBasis:
    """A calendar symbol's share basis, minute by minute: what the walk's prices are multiplied
    by to be unadjusted, and what unadjusted prices are multiplied by to be split-adjusted as of
    a moment. Built by :func:`price_basis`; immutable; lookups are bisections."""

    def __init__(self, cal: Sessions, scheduled: Sequence[Split], announced: Sequence[Split]):
        marked = [(s, True) for s in scheduled] + [(s, False) for s in announced]
        marked.sort(key=lambda m: (_boundary(cal, m[0].execution_date), m[0].execution_date))
        self.splits: tuple[Split, ...] = tuple(s for s, _ in marked)
        self._bounds = [_boundary(cal, s.execution_date) for s in self.splits]
        self._effective = [_effective(cal, s.execution_date) for s in self.splits]
        self._ratios = [s.ratio for s in self.splits]
        # _levels[i]: the multiplier of minutes after the first i splits (and before the next).
        self._levels = [1.0]
        done, announced_product = 0, 1.0
        for split, is_scheduled in marked:
            if is_scheduled:
                done += 1
            else:
                announced_product *= split.ratio
            self._levels.append(_CYCLE_LEVELS[done % len(_CYCLE_LEVELS)] * announced_product)

    def multiplier(self, minute: int) -> float:
        """Unadjusted price = walk price x this, for the bar opening at ``minute``."""
        return self._levels[bisect.bisect_right(self._bounds, minute)]

    def adjustment(self, minute: int, as_of: int) -> float:
        """Split-adjusted price as of minute ``as_of`` = unadjusted price x this, for the bar
        opening at ``minute``: the splits after its session already executed at ``as_of``."""
        after = bisect.bisect_right(self._bounds, minute)
        executed = bisect.bisect_right(self._effective, as_of)
        return math.prod(self._ratios[after:executed]) if executed > after else 1.0


@functools.lru_cache(maxsize=256)
def _price_basis(symbol: str, seed: int, calendar: str, announced: tuple[Split, ...]) -> PriceBasis:
    return PriceBasis(sessions(calendar), _schedule(symbol, seed, calendar).splits, announced)


def price_basis(
    symbol: str, *, seed: int, calendar: str, announced: Announced = NOTHING_ANNOUNCED
) -> PriceBasis:
    """The share basis of ``symbol`` on ``calendar``: its scheduled splits and the announced
    ones of ``announced`` (cached; cheap to ask again)."""
    return _price_basis(symbol, seed, calendar, announced.splits_of(symbol))


def unadjusted_bar(bar: Bar, multiplier: float) -> Bar:
    """A walk bar on the unadjusted basis: prices x ``multiplier`` and volume / it, rounded
    as the walk rounds (4 and 2 decimals). Rounding is monotone: the bar stays well formed."""
    if multiplier == 1.0:
        return bar
    o, h, low, c, v, n, vw = bar
    m = multiplier
    return (
        round(o * m, 4),
        round(h * m, 4),
        round(low * m, 4),
        round(c * m, 4),
        round(v / m, 2),
        n,
        round(vw * m, 4),
    )


def adjusted_bar(bar: Bar, factor: float) -> Bar:
    """An unadjusted bar split-adjusted by ``factor``: prices x it, volume / it, unrounded."""
    if factor == 1.0:
        return bar
    o, h, low, c, v, n, vw = bar
    return (o * factor, h * factor, low * factor, c * factor, v / factor, n, vw * factor)


# --------------------------------------------------------------------------------------
# Dividends and factors as of a moment
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _walk_close(symbol: str, seed: int, minute: int) -> float:
    # A dividend's previous close costs generating most of a day: price each one once.
    return walk_bar(symbol, seed, minute)[3]


def previous_close(
    symbol: str,
    day: date,
    *,
    seed: int,
    calendar: str,
    announced: Announced = NOTHING_ANNOUNCED,
) -> float | None:
    """The unadjusted close of the last session before ``day`` (its last minute always
    trades); None if the calendar has no session before it."""
    cal = sessions(calendar)
    index = cal.last_before(_day_number(day))
    if index is None:
        return None
    minute = cal.closes[index] - 1
    multiplier = price_basis(symbol, seed=seed, calendar=calendar, announced=announced).multiplier(
        minute
    )
    return round(_walk_close(symbol, seed, minute) * multiplier, 4)


def _visible(announced_on: date | None, as_of: int) -> bool:
    return announced_on is None or _day_number(announced_on) * MINUTES_PER_DAY <= as_of


def _same_day_ratio(splits: Iterable[Split], day: date) -> float:
    """The ratio of the splits executing on ``day``: a dividend going ex that day is paid per
    post-split share."""
    return math.prod(s.ratio for s in splits if s.execution_date == day)


def split_results(
    symbol: str,
    *,
    seed: int,
    calendar: str,
    as_of: int,
    announced: Announced = NOTHING_ANNOUNCED,
) -> list[SplitResult]:
    """The splits of ``symbol`` listed at minute ``as_of`` (announced by then, future ones
    included), by execution date.

    ``historical_adjustment_factor``: the product of ``split_from / split_to`` of this split
    and of every later one (execution date on or after this one's), counting only splits
    executed at ``as_of`` (so 1.0 for one still to come); rounded to 6 decimals, as Massive
    rounds it."""
    cal = sessions(calendar)
    splits = price_basis(symbol, seed=seed, calendar=calendar, announced=announced).splits
    listed = [s for s in splits if _visible(s.announced, as_of)]
    executed = {s.id: s.ratio for s in listed if _effective(cal, s.execution_date) <= as_of}
    from_day = _products_from(
        [(s.execution_date, executed[s.id]) for s in listed if s.id in executed]
    )
    return [
        SplitResult(
            s, round(from_day[s.execution_date] if s.id in executed else 1.0, _FACTOR_DIGITS)
        )
        for s in listed
    ]


def _products_from(terms: Iterable[tuple[date, float]]) -> dict[date, float]:
    """For every date of ``terms``: the product of the terms dated on or after it."""
    by_day: dict[date, float] = {}
    for day, term in terms:
        by_day[day] = by_day.get(day, 1.0) * term
    products, running = {}, 1.0
    for day in sorted(by_day, reverse=True):
        running *= by_day[day]
        products[day] = running
    return products


def _scheduled_dividends(
    symbol: str, seed: int, calendar: str, as_of: int, announced: Announced
) -> list[Dividend]:
    """The scheduled dividends announced at ``as_of``, priced off their previous close."""
    cal = sessions(calendar)
    schedule = _schedule(symbol, seed, calendar)
    basis = price_basis(symbol, seed=seed, calendar=calendar, announced=announced)
    last_declared = bisect.bisect_right(
        schedule.declared, bisect.bisect_right(cal.days, as_of // MINUTES_PER_DAY) - 1
    )
    priced = []
    for scheduled in schedule.dividends[:last_declared]:
        ex_day = _from_day_number(cal.days[scheduled.ex])
        close = previous_close(symbol, ex_day, seed=seed, calendar=calendar, announced=announced)
        assert close is not None  # a scheduled ex-date has ANNOUNCE_SESSIONS sessions before it
        # The cash is per share as of the ex-date: after a split executing that same day.
        cash = schedule.monthly_yield * close * _same_day_ratio(basis.splits, ex_day)
        priced.append(
            Dividend(
                ticker=symbol,
                ex_dividend_date=ex_day,
                cash_amount=max(0.01, round(cash, 2)),
                currency="USD",
                declaration_date=_from_day_number(cal.days[scheduled.declared]),
                record_date=ex_day,
                pay_date=_from_day_number(cal.days[scheduled.paid]),
                frequency=DIVIDEND_FREQUENCY,
                distribution_type="recurring",
                id=_action_id("dividend", seed, symbol, ex_day),
                announced=_from_day_number(cal.days[scheduled.declared]),
            )
        )
    return priced


def dividend_results(
    symbol: str,
    *,
    seed: int,
    calendar: str,
    as_of: int,
    announced: Announced = NOTHING_ANNOUNCED,
) -> list[DividendResult]:
    """The dividends of ``symbol`` listed at minute ``as_of`` (announced by then, future ones
    included), by ex-dividend date.

    ``historical_adjustment_factor``: the product, over this dividend and every later one
    (ex-date on or after this one's) already ex at ``as_of``, of ``1 - cash_amount / previous
    close``, the previous close being the unadjusted close of the last session before the
    ex-date (the CRSP/Yahoo convention; a ratio, so the share basis does not matter, except
    that a split executing on the ex-date makes the cash per post-split share:
    ``1 - cash_amount x split_to / split_from / previous close``); 1.0 for one still to come;
    rounded to 6 decimals.

    ``split_adjusted_cash_amount``: ``cash_amount`` times the product of ``split_from /
    split_to`` of the splits executed at ``as_of`` after the ex-date (Massive's dividends are
    otherwise not adjusted for splits), rounded to 6 decimals."""
    cal = sessions(calendar)
    basis = price_basis(symbol, seed=seed, calendar=calendar, announced=announced)
    listed = _scheduled_dividends(symbol, seed, calendar, as_of, announced)
    listed += announced.dividends_of(symbol)
    listed.sort(key=lambda d: (d.ex_dividend_date, d.id))
    executed = [s for s in basis.splits if _effective(cal, s.execution_date) <= as_of]
    gone_ex: dict[str, float] = {}  # id -> 1 - cash / previous close
    for dividend in listed:
        if _effective(cal, dividend.ex_dividend_date) > as_of:
            continue
        close = previous_close(
            symbol, dividend.ex_dividend_date, seed=seed, calendar=calendar, announced=announced
        )
        on_the_day = _same_day_ratio(basis.splits, dividend.ex_dividend_date)
        # No session before it (the calendar's first): no price to adjust, a neutral term.
        gone_ex[dividend.id] = (
            1.0 if close is None else 1.0 - dividend.cash_amount / (close * on_the_day)
        )
    from_day = _products_from(
        (d.ex_dividend_date, gone_ex[d.id]) for d in listed if d.id in gone_ex
    )
    results = []
    for dividend in listed:
        factor = from_day[dividend.ex_dividend_date] if dividend.id in gone_ex else 1.0
        splits_after = math.prod(
            s.ratio for s in executed if s.execution_date > dividend.ex_dividend_date
        )
        results.append(
            DividendResult(
                dividend,
                round(factor, _FACTOR_DIGITS),
                round(dividend.cash_amount * splits_after, _FACTOR_DIGITS),
            )
        )
    return results


# --------------------------------------------------------------------------------------
# Announcing actions (the simulator's admin API, the emulator's announce())
# --------------------------------------------------------------------------------------

_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_MAX_ANNOUNCED = 1000  # per request: a test announces a handful


def _optional_date(value: object, where: str) -> date | None:
    return None if value is None else _field_date(value, where)


def _field_date(value: object, where: str) -> date:
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        raise ValueError(f"{where}: expected a date YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: expected a date YYYY-MM-DD") from None
    if not date(1970, 1, 1) <= day <= _LAST_DAY:
        raise ValueError(f"{where}: outside the supported range 1970-01-01..{_LAST_DAY}")
    return day


def _field_number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a positive number")
    number = float(value)
    if not math.isfinite(number) or number <= 0 or number > 1e9:
        raise ValueError(f"{where}: expected a positive number (at most 1e9)")
    return number


def _field_ticker(value: object, where: str, calendars: Mapping[str, str]) -> str:
    if not isinstance(value, str) or value not in calendars:
        raise ValueError(
            f"{where}: not a symbol on an exchange calendar here; only those (equities) have "
            "corporate actions (configure its calendar first)"
        )
    return value


def _record(value: object, where: str, allowed: Sequence[str], required: Sequence[str]) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object")
    unknown = set(value) - set(allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field; the fields are {', '.join(allowed)}")
    for name in required:
        if name not in value:
            raise ValueError(f"{where}.{name}: missing")
    return value


def _announced_split(raw: object, where: str, calendars: Mapping[str, str]) -> Split:
    fields = ("ticker", "execution_date", "split_from", "split_to", "adjustment_type")
    record = _record(raw, where, fields, fields[:4])
    ticker = _field_ticker(record["ticker"], f"{where}.ticker", calendars)
    day = _field_date(record["execution_date"], f"{where}.execution_date")
    split_from = _field_number(record["split_from"], f"{where}.split_from")
    split_to = _field_number(record["split_to"], f"{where}.split_to")
    if split_from == split_to:
        raise ValueError(f"{where}.split_to: must differ from split_from (a 1:1 split is none)")
    kind = record.get("adjustment_type", _split_type(split_from, split_to))
    if kind not in SPLIT_TYPES or (kind == "reverse_split") != (split_to < split_from):
        raise ValueError(
            f"{where}.adjustment_type: expected forward_split or stock_dividend (split_to > "
            "split_from) or reverse_split (split_to < split_from)"
        )
    return Split(
        ticker=ticker,
        execution_date=day,
        split_from=split_from,
        split_to=split_to,
        adjustment_type=kind,
        id=_action_id("announced-split", ticker, day, split_from, split_to),
    )


def _announced_dividend(raw: object, where: str, calendars: Mapping[str, str]) -> Dividend:
    fields = (
        "ticker",
        "ex_dividend_date",
        "cash_amount",
        "currency",
        "declaration_date",
        "record_date",
        "pay_date",
        "frequency",
        "distribution_type",
    )
    record = _record(raw, where, fields, fields[:3])
    ticker = _field_ticker(record["ticker"], f"{where}.ticker", calendars)
    ex_day = _field_date(record["ex_dividend_date"], f"{where}.ex_dividend_date")
    cash = _field_number(record["cash_amount"], f"{where}.cash_amount")
    currency = record.get("currency", "USD")
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise ValueError(f"{where}.currency: expected an ISO 4217 code such as USD")
    frequency = record.get("frequency", 0)
    if isinstance(frequency, bool) or not isinstance(frequency, int) or not 0 <= frequency <= 365:
        raise ValueError(f"{where}.frequency: expected payments a year, 0 (one-off) to 365")
    kind = record.get("distribution_type", "special")
    if kind not in DISTRIBUTION_TYPES:
        raise ValueError(
            f"{where}.distribution_type: expected one of {', '.join(DISTRIBUTION_TYPES)}"
        )
    # Unless given: recorded on the ex-date, paid PAY_SESSIONS sessions later, as scheduled.
    cal = sessions(calendars[ticker])
    ex_session = cal.first_on_or_after(_day_number(ex_day))
    paid = None if ex_session is None else ex_session + PAY_SESSIONS
    default_pay = (
        _from_day_number(cal.days[paid])
        if paid is not None and paid < len(cal.days)
        else ex_day + timedelta(days=PAY_SESSIONS)
    )
    declared = _optional_date(record.get("declaration_date"), f"{where}.declaration_date")
    record_day = _optional_date(record.get("record_date"), f"{where}.record_date")
    pay_day = _optional_date(record.get("pay_date"), f"{where}.pay_date")
    return Dividend(
        ticker=ticker,
        ex_dividend_date=ex_day,
        cash_amount=cash,
        currency=currency,
        declaration_date=declared,
        record_date=record_day or ex_day,
        pay_date=pay_day or default_pay,
        frequency=frequency,
        distribution_type=kind,
        id=_action_id("announced-dividend", ticker, ex_day, cash, currency, kind),
    )


def parse_announcement(payload: object, *, calendars: Mapping[str, str]) -> Announced:
    """``{"splits": [{ticker, execution_date, split_from, split_to, adjustment_type?}],
    "dividends": [{ticker, ex_dividend_date, cash_amount, currency?, declaration_date?,
    record_date?, pay_date?, frequency?, distribution_type?}]}`` as typed records.

    ``calendars`` (symbol -> exchange calendar) says which tickers may have actions. A
    dividend's currency defaults to USD, its record date to its ex-date, its pay date to
    PAY_SESSIONS sessions later, its frequency to 0 (one-off) and its type to special; without
    a declaration date it is listed without one. ``ValueError`` naming the field (never echoing
    its value) for anything else."""
    record = _record(payload, "body", ("splits", "dividends"), ())
    lists = {}
    for name in ("splits", "dividends"):
        items = record.get(name, [])
        if not isinstance(items, list) or len(items) > _MAX_ANNOUNCED:
            raise ValueError(f"{name}: expected a list of at most {_MAX_ANNOUNCED} objects")
        lists[name] = items
    return Announced(
        tuple(
            _announced_split(raw, f"splits[{i}]", calendars)
            for i, raw in enumerate(lists["splits"])
        ),
        tuple(
            _announced_dividend(raw, f"dividends[{i}]", calendars)
            for i, raw in enumerate(lists["dividends"])
        ),
    )


# --------------------------------------------------------------------------------------
# Massive's endpoints: GET /stocks/v1/splits and GET /stocks/v1/dividends
# --------------------------------------------------------------------------------------

SPLITS_PATH = "/stocks/v1/splits"
DIVIDENDS_PATH = "/stocks/v1/dividends"
ACTIONS_PATHS = (SPLITS_PATH, DIVIDENDS_PATH)
DEFAULT_LIMIT = 100
MAX_LIMIT = 5000

_TICKER_RE = re.compile(r"^[A-Z0-9][A-Z0-9.:\-]{0,23}$")  # Massive's tickers: BRK.B, X:BTCUSD
_MAX_ANY_OF = 250
_RANGE_OPS = ("gt", "gte", "lt", "lte")
_MAX_CURSOR_LEN = 8192
_LIMIT_RE = re.compile(r"^[0-9]{1,6}$")
_FREQUENCY_RE = re.compile(r"^[0-9]{1,3}$")


class InvalidQuery(ValueError):
    """A bad query parameter; the message names it and is safe to send (never echoes input)."""


@dataclass(frozen=True)
class _Endpoint:
    path: str
    date_column: str  # the filterable, sortable date
    extra_filters: tuple[str, ...]  # enumerated filters besides ticker and date


_ENDPOINTS = {
    SPLITS_PATH: _Endpoint(SPLITS_PATH, "execution_date", ("adjustment_type",)),
    DIVIDENDS_PATH: _Endpoint(
        DIVIDENDS_PATH, "ex_dividend_date", ("frequency", "distribution_type")
    ),
}


@dataclass(frozen=True)
class ActionsQuery:
    """A validated request to one of the endpoints; ``params`` are the recognised parameters
    as sent (what a ``next_url`` cursor carries), ``offset``/``as_of`` what a cursor adds."""

    path: str
    params: tuple[tuple[str, str], ...]
    tickers: frozenset[str] | None = None  # ticker and ticker.any_of, intersected
    ticker_bounds: tuple[tuple[str, str], ...] = ()  # (op, ticker)
    date_bounds: tuple[tuple[str, date], ...] = ()  # (op, date); op "eq" for the bare column
    equals: tuple[tuple[str, str | int], ...] = ()  # enumerated filters
    limit: int = DEFAULT_LIMIT
    sort: tuple[tuple[str, bool], ...] = ()  # (column, descending)
    offset: int = 0
    as_of: int | None = None  # the minute a first page was answered at


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _query_ticker(value: str, name: str) -> str:
    if not _TICKER_RE.fullmatch(value):
        raise InvalidQuery(f"invalid {name}: expected tickers such as AAPL or BRK.B")
    return value


def _query_date(value: str, name: str) -> date:
    try:
        if not _DATE_RE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"invalid {name}: expected a date YYYY-MM-DD") from None


def _parse_sort(raw: str, endpoint: _Endpoint) -> tuple[tuple[str, bool], ...]:
    columns = (endpoint.date_column, "ticker")
    message = (
        f"invalid sort: use {' or '.join(columns)}, each optionally .asc or .desc, comma-separated"
    )
    keys: list[tuple[str, bool]] = []
    for part in raw.split(","):
        column, _, order = part.strip().partition(".")
        if column not in columns or order not in ("", "asc", "desc") or column in dict(keys):
            raise InvalidQuery(message)
        keys.append((column, order == "desc"))
    return tuple(keys)


def parse_actions_query(path: str, query: Mapping[str, Sequence[str]]) -> ActionsQuery:
    """Massive's parameters for ``path`` (one of :data:`ACTIONS_PATHS`), validated.

    ``ticker``, ``ticker.any_of`` (comma-separated), ``ticker.gt/gte/lt/lte``; the date column
    (``execution_date`` or ``ex_dividend_date``) and its ``.gt/gte/lt/lte``; ``adjustment_type``
    (splits), ``frequency`` and ``distribution_type`` (dividends); ``limit`` (1..5000, default
    100); ``sort`` (default the date, descending). A ``cursor`` (from ``next_url``) stands for
    all of them. Other parameters (an API key) are not ours. :class:`InvalidQuery` otherwise."""
    endpoint = _ENDPOINTS[path]
    cursor = _one(query, "cursor")
    if cursor is not None:
        return _decode_cursor(path, cursor)
    return _parse_params(endpoint, query)


def _parse_params(endpoint: _Endpoint, query: Mapping[str, Sequence[str]]) -> ActionsQuery:
    params: list[tuple[str, str]] = []
    tickers: set[str] | None = None
    ticker_bounds: list[tuple[str, str]] = []
    date_bounds: list[tuple[str, date]] = []
    equals: list[tuple[str, str | int]] = []
    limit = DEFAULT_LIMIT
    sort: tuple[tuple[str, bool], ...] = ((endpoint.date_column, True),)
    for name in sorted(query):
        value = _one(query, name)
        if value is None:
            continue
        column, _, op = name.partition(".")
        if column == "ticker":
            if op == "":
                found = {_query_ticker(value, name)}
            elif op == "any_of":
                listed = value.split(",")
                if len(listed) > _MAX_ANY_OF:
                    raise InvalidQuery(f"invalid ticker.any_of: at most {_MAX_ANY_OF} tickers")
                found = {_query_ticker(t.strip(), name) for t in listed}
            elif op in _RANGE_OPS:
                ticker_bounds.append((op, _query_ticker(value, name)))
                params.append((name, value))
                continue
            else:
                raise InvalidQuery(
                    "invalid parameter: ticker takes .any_of, .gt, .gte, .lt or .lte"
                )
            tickers = found if tickers is None else tickers & found
        elif column == endpoint.date_column:
            if op not in ("", *_RANGE_OPS):
                raise InvalidQuery(
                    f"invalid parameter: {endpoint.date_column} takes .gt, .gte, .lt or .lte"
                )
            date_bounds.append((op or "eq", _query_date(value, name)))
        elif name == "adjustment_type" and name in endpoint.extra_filters:
            if value not in SPLIT_TYPES:
                raise InvalidQuery(f"invalid adjustment_type: use one of {', '.join(SPLIT_TYPES)}")
            equals.append((name, value))
        elif name == "distribution_type" and name in endpoint.extra_filters:
            if value not in DISTRIBUTION_TYPES:
                raise InvalidQuery(
                    f"invalid distribution_type: use one of {', '.join(DISTRIBUTION_TYPES)}"
                )
            equals.append((name, value))
        elif name == "frequency" and name in endpoint.extra_filters:
            if not _FREQUENCY_RE.fullmatch(value):
                raise InvalidQuery("invalid frequency: expected payments a year, e.g. 4 or 12")
            equals.append((name, int(value)))
        elif name == "limit":
            if not _LIMIT_RE.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
                raise InvalidQuery(f"invalid limit: expected an integer within 1..{MAX_LIMIT}")
            limit = int(value)
        elif name == "sort":
            sort = _parse_sort(value, endpoint)
        else:
            continue  # not ours (an API key), or unknown: ignored, as Massive does
        params.append((name, value))
    return ActionsQuery(
        path=endpoint.path,
        params=tuple(params),
        tickers=frozenset(tickers) if tickers is not None else None,
        ticker_bounds=tuple(ticker_bounds),
        date_bounds=tuple(date_bounds),
        equals=tuple(equals),
        limit=limit,
        sort=sort,
    )


def _cursor_check(raw: str) -> str:
    # Not a secret: a cursor is only a query the client could send itself. The check makes a
    # truncated or garbled one a 400 instead of an answer to some other query.
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:12]


def _encode_cursor(query: ActionsQuery, offset: int, as_of: int) -> str:
    raw = urlencode([*query.params, ("offset", str(offset)), ("as_of", str(as_of))])
    token = f"{raw}#{_cursor_check(raw)}"
    return base64.urlsafe_b64encode(token.encode("utf-8")).rstrip(b"=").decode("ascii")


def _decode_cursor(path: str, cursor: str) -> ActionsQuery:
    """The query a ``next_url`` cursor carries, validated as if sent afresh."""
    try:
        if not cursor or len(cursor) > _MAX_CURSOR_LEN:
            raise ValueError
        token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        raw, _, check = token.rpartition("#")
        if check != _cursor_check(raw):
            raise ValueError
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True, max_num_fields=64)
        fields: dict[str, list[str]] = {}
        for name, value in pairs:
            fields.setdefault(name, []).append(value)
        offset = int(fields.pop("offset")[0])
        as_of = int(fields.pop("as_of")[0])
        if "cursor" in fields or not 0 <= offset <= 10**9 or not 0 <= as_of <= MAX_MINUTE:
            raise ValueError
        parsed = _parse_params(_ENDPOINTS[path], fields)
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError):
        # InvalidQuery is a ValueError too: a cursor's own parameters are the server's doing.
        raise InvalidQuery("invalid cursor: use the next_url of the previous page as is") from None
    return dataclasses.replace(parsed, offset=offset, as_of=as_of)


_COMPARISONS = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _in_bounds(value: Any, bounds: Iterable[tuple[str, Any]]) -> bool:
    return all(_COMPARISONS[op](value, bound) for op, bound in bounds)


def massive_error(message: str, *, request_id: str | None = None, status: str = "ERROR") -> dict:
    """Massive's error body: ``{"status": "ERROR", "request_id": ..., "error": ...}``."""
    return {"status": status, "request_id": request_id or new_request_id(), "error": message}


def actions_page(
    query: ActionsQuery,
    *,
    universe: Mapping[str, str],
    seed: int,
    now: int,
    base_url: str,
    announced: Announced = NOTHING_ANNOUNCED,
    request_id: str | None = None,
) -> dict[str, Any]:
    """One page of Massive's answer to ``query``: ``{"status": "OK", "request_id", "results",
    "next_url"?}``, ``next_url`` (on ``base_url``, an opaque cursor only) when more follow.

    ``universe``: the tickers that have corporate actions (symbol -> exchange calendar); any
    other ticker asked for has none. ``now``: the server's clock in epoch minutes; a first page
    answers as of it, and its cursor keeps that moment so later pages agree with it."""
    as_of = now if query.as_of is None else min(query.as_of, now)
    endpoint = _ENDPOINTS[query.path]
    tickers = sorted(
        t
        for t in universe
        if (query.tickers is None or t in query.tickers) and _in_bounds(t, query.ticker_bounds)
    )
    rows: list[dict[str, Any]] = []
    for ticker in tickers:
        listing: Sequence[SplitResult | DividendResult]
        listing = (split_results if query.path == SPLITS_PATH else dividend_results)(
            ticker, seed=seed, calendar=universe[ticker], as_of=as_of, announced=announced
        )
        for result in listing:
            row = result.as_json()
            day = date.fromisoformat(row[endpoint.date_column])
            if _in_bounds(day, query.date_bounds) and all(
                row[name] == value for name, value in query.equals
            ):
                rows.append(row)
    # Stable sorts, last key first, over an order by ticker, date and id: ties are broken the
    # same way on every page, so pages never overlap.
    rows.sort(key=lambda r: (r["ticker"], r[endpoint.date_column], r["id"]))
    for column, descending in reversed(query.sort):
        rows.sort(key=operator.itemgetter(column), reverse=descending)
    end = query.offset + query.limit
    body: dict[str, Any] = {
        "status": "OK",
        "request_id": request_id or new_request_id(),
        "results": rows[query.offset : end],
    }
    if end < len(rows):
        body["next_url"] = f"{base_url}{query.path}?cursor={_encode_cursor(query, end, as_of)}"
    return body
