"""Polygon/Massive ``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}``,
``GET /stocks/v1/splits`` and ``GET /stocks/v1/dividends`` on loopback.

Follows https://polygon.io/docs/stocks/get_v2_aggs_ticker__stocksticker__range__multiplier___timespan___from___to
for 1-minute aggregates, and with ``roll_ups=True`` any ``multiplier`` of ``minute`` or
``hour``. Data comes from ``resources.simulator.generate_bars`` with "quiet" minutes (no
trades, so no bar) dropped deterministically, or from fixture bars.

Roll-ups are Massive's: "Our base aggregates are minute and daily bars ... A request with a
multiplier 1 and resolution hour that spans from 2pm to 4pm will cover 120 base minute bars,
but return 2 1-hour bars", and ``limit`` counts those base bars
(https://polygon.io/blog/aggs-api-updates). Windows "snap" to the clock in Eastern Time:
"minute bars begin at the top of the minute (9:30:00), hour bars begin at the top of the hour
(9:00:00)" (https://massive.com/knowledge-base/article/how-does-massive-treat-hourly-bars-when-querying-regular-trading-hours),
so the 9:00 ET hour bar holds the session's 9:30-9:59 minutes and ``t`` is 9:00 ET; ``from``
snaps down to its window's start and ``to`` up to its window's end. A bar is rolled up from
the window's served minute bars (what the provider stores): first ``o``, last ``c``, max
``h``, min ``l``, summed ``v`` and ``n``, ``vw`` weighted by ``v`` and rounded to 4 decimals
like every ``vw``; a window without minute bars has no bar; ``queryCount`` is the number of
base bars used. A page ends at a whole window: the bar ``limit`` would cut goes to the next
page. This is written independently of ``resources/tables/intervals.py``, which tests compare
with it. (Off by default: the emulator's first tests expect other multipliers refused.)

A plain stock ticker (no ``X:``/``C:``/``I:``/``O:`` prefix) given an exchange calendar
(``calendars={"AAPL": "XNYS"}``) trades in its sessions, as on the simulator, and has the
simulator's corporate actions (``resources/simulator/actions.py``: the same schedule, the same
results and envelopes). Its aggregates honour ``adjusted``: by default, as documented, "adjusted
for splits" as of the request (every split executed by then, after the bar's day); ``false``
what traded. Prices are rounded to 4 decimals and volumes to whole shares either way. Without
a calendar a ticker has no corporate actions. ``announce(...)`` publishes actions after the
fact, as the simulator's ``POST /_sim/corporate_actions`` does.

* Auth: ``Authorization: Bearer <key>`` or ``?apiKey=<key>``; anything else is a 401. The
  key is never echoed: ``next_url`` carries only a ``cursor`` and clients re-attach the key.
* Rate limit like the free plan: ``calls_per_window`` calls per ``window_s`` per key,
  sliding window; over it a 429 with no Retry-After and no rate-limit headers (Polygon
  sends none). Rejected calls do not count towards the window.
* ``from``/``to``: millisecond timestamps or ``YYYY-MM-DD`` (taken as UTC days here; real
  Polygon reads dates in the exchange's zone for stocks). ``to`` is inclusive on bar start.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode
from zoneinfo import ZoneInfo

from resources.simulator.actions import (
    ACTIONS_PATHS,
    NOTHING_ANNOUNCED,
    Announced,
    InvalidQuery,
    actions_page,
    massive_error,
    new_request_id,
    parse_actions_query,
    parse_announcement,
)
from resources.simulator.data import SYMBOL_PATTERN, bars_page, checked_calendars, generate_bars
from tests.emulators.base import Clock, LoopbackEmulator, Reply, dumps

__all__ = [
    "AGGS_PATH_RE",
    "RATE_LIMITED",
    "UNKNOWN_API_KEY",
    "PolygonEmulator",
    "aggregate_bars",
    "aggs_envelope",
    "decode_cursor",
    "encode_cursor",
    "error_body",
    "is_quiet",
    "new_request_id",
    "not_authorized_body",
    "roll_up_aggs",
    "window_start_ms",
]

MINUTE_MS = 60_000
DAY_MS = 86_400_000
DEFAULT_LIMIT = 5000
MAX_LIMIT = 50_000
TIMESPAN_MINUTES = {"minute": 1, "hour": 60}
# "aggregates are in Eastern Time (ET)": roll-up windows are on the New York clock.
EASTERN = ZoneInfo("America/New_York")

AGGS_PATH_RE = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/([^/]+)/([^/]+)/([^/]+)/([^/]+)$")
TICKER_RE = re.compile(r"^[A-Z0-9][A-Z0-9.:\-]{0,23}$")
_MS_RE = re.compile(r"^[0-9]{1,15}$")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_LIMIT_RE = re.compile(r"^-?[0-9]{1,12}$")
# Supported data range of resources.simulator.generate_bars.
_MAX_MS = (date(2100, 1, 1) - date(1970, 1, 1)).days * DAY_MS

UNKNOWN_API_KEY = "Unknown API Key"
RATE_LIMITED = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your "
    "subscription to continue. https://polygon.io/pricing"
)
NOT_AUTHORIZED = (
    "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing"
)

# A minute has no bar when the first sha256 byte of "ticker|t" is below this (~5%).
QUIET_THRESHOLD = 13


def error_body(error: str, *, request_id: str | None = None, status: str = "ERROR") -> bytes:
    """``{"status": "ERROR", "request_id": ..., "error": ...}`` as Polygon sends it."""
    return dumps(massive_error(error, request_id=request_id, status=status))


def not_authorized_body(*, request_id: str | None = None) -> bytes:
    return dumps(
        {
            "status": "NOT_AUTHORIZED",
            "request_id": request_id or new_request_id(),
            "message": NOT_AUTHORIZED,
        }
    )


# --------------------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------------------


def is_quiet(ticker: str, t_ms: int) -> bool:
    """Whether generated data has no bar for the minute starting at ``t_ms``."""
    return hashlib.sha256(f"{ticker}|{t_ms}".encode()).digest()[0] < QUIET_THRESHOLD


def _generator_symbol(ticker: str) -> str:
    # generate_bars only takes plain symbols; X:BTCUSD and friends get a stable alias.
    if SYMBOL_PATTERN.fullmatch(ticker):
        return ticker
    return "Z" + hashlib.sha256(ticker.encode()).hexdigest()[:9].upper()


def _agg(bar: Mapping[str, Any]) -> dict[str, Any]:
    t_ms = int(datetime.fromisoformat(bar["t"].replace("Z", "+00:00")).timestamp()) * 1000
    return {
        "v": int(round(float(bar["v"]))),
        "vw": round(float(bar["vw"]), 4),
        "o": round(float(bar["o"]), 4),
        "c": round(float(bar["c"]), 4),
        "h": round(float(bar["h"]), 4),
        "l": round(float(bar["l"]), 4),
        "t": t_ms,
        "n": int(bar["n"]),
    }


def _iter_aggs(ticker: str, first_min: int, last_min: int, seed: int, want: int) -> list[dict]:
    """Up to ``want`` non-quiet bars for minutes ``first_min..last_min`` (inclusive)."""
    out: list[dict] = []
    symbol = _generator_symbol(ticker)
    minute = first_min
    while minute <= last_min and len(out) < want:
        need = want - len(out)
        chunk = min(last_min - minute + 1, need + need // 8 + 16)
        start = datetime.fromtimestamp(minute * 60, UTC)
        bars = generate_bars(symbol, start, start + timedelta(minutes=chunk), seed=seed)
        for bar in bars:
            agg = _agg(bar)
            if not is_quiet(ticker, agg["t"]):
                out.append(agg)
                if len(out) >= want:
                    break
        minute += chunk
    return out


def aggregate_bars(
    ticker: str,
    from_ms: int,
    to_ms: int,
    *,
    seed: int = 0,
    limit: int | None = None,
    calendar: str | None = None,
    announced: Announced = NOTHING_ANNOUNCED,
    adjusted_at: int | None = None,
) -> list[dict]:
    """Generated bars with ``from_ms <= t <= to_ms``; not clipped to now.

    Without a calendar, every minute but the quiet ones. With one (a stock), the session
    minutes that trade, as the simulator serves them: unadjusted for the ticker's splits (and
    those of ``announced``), or split-adjusted as of epoch minute ``adjusted_at``."""
    first = -(-from_ms // MINUTE_MS)
    last = to_ms // MINUTE_MS
    if last < first:
        return []
    want = limit if limit is not None else last - first + 1
    if calendar is None:
        return _iter_aggs(ticker, first, last, seed, want)
    bars, _ = bars_page(
        ticker,
        seed,
        first,
        last + 1,
        want,
        calendar=calendar,
        announced=announced,
        adjusted_at=adjusted_at,
    )
    return [_agg(bar) for bar in bars]


def window_start_ms(t_ms: int, window_minutes: int) -> int:
    """Start of the Eastern-Time clock window of ``window_minutes`` holding instant ``t_ms``."""
    offset = datetime.fromtimestamp(t_ms / 1000, EASTERN).utcoffset() or timedelta(0)
    local_ms = t_ms + offset // timedelta(milliseconds=1)
    return t_ms - local_ms % (window_minutes * MINUTE_MS)


def roll_up_aggs(minute_aggs: Sequence[Mapping[str, Any]], window_minutes: int) -> list[dict]:
    """Massive's ``window_minutes`` bars from its 1-minute bars (ascending ``t``)."""
    windows: dict[int, list[Mapping[str, Any]]] = {}
    for agg in minute_aggs:
        windows.setdefault(window_start_ms(int(agg["t"]), window_minutes), []).append(agg)
    out = []
    for start, bars in windows.items():  # insertion order: ascending
        volume = sum(int(bar["v"]) for bar in bars)
        traded = math.fsum(float(bar["vw"]) * int(bar["v"]) for bar in bars)
        out.append(
            {
                "v": volume,
                "vw": round(traded / volume, 4) if volume else round(float(bars[-1]["vw"]), 4),
                "o": bars[0]["o"],
                "c": bars[-1]["c"],
                "h": max(float(bar["h"]) for bar in bars),
                "l": min(float(bar["l"]) for bar in bars),
                "t": start,
                "n": sum(int(bar["n"]) for bar in bars),
            }
        )
    return out


def encode_cursor(*, next_from_ms: int, limit: int, adjusted: bool, sort: str = "asc") -> str:
    """Opaque continuation token (base64url of a query string, like Polygon's)."""
    raw = urlencode(
        {"from": next_from_ms, "limit": limit, "adjusted": str(adjusted).lower(), "sort": sort}
    )
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> dict[str, Any] | None:
    if not cursor or len(cursor) > 256:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        fields = {k: v[0] for k, v in parse_qs(raw, strict_parsing=True).items()}
        next_from, limit = int(fields["from"]), int(fields["limit"])
        adjusted, sort = fields["adjusted"] == "true", fields.get("sort", "asc")
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError):
        return None
    if next_from < 0 or not 1 <= limit <= MAX_LIMIT:
        return None
    return {"from": next_from, "limit": limit, "adjusted": adjusted, "sort": sort}


def aggs_envelope(
    ticker: str,
    results: Sequence[Mapping[str, Any]],
    *,
    adjusted: bool = True,
    request_id: str | None = None,
    next_url: str | None = None,
    query_count: int | None = None,
) -> dict[str, Any]:
    """The documented 200 body. No ``results`` key when empty, ``next_url`` only if given.
    ``query_count``: the base bars used ("The number of aggregates (minute or day) used to
    generate the response"), by default as many as the results."""
    body: dict[str, Any] = {
        "ticker": ticker,
        "queryCount": len(results) if query_count is None else query_count,
        "resultsCount": len(results),
        "adjusted": adjusted,
    }
    if results:
        body["results"] = [dict(r) for r in results]
    body["status"] = "OK"
    body["request_id"] = request_id or new_request_id()
    body["count"] = len(results)
    if next_url is not None:
        body["next_url"] = next_url
    return body


# --------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _parse_bound(raw: str, name: str, *, is_to: bool) -> int:
    """A from/to path segment as inclusive epoch ms (``to`` date = its last millisecond)."""
    if _MS_RE.fullmatch(raw):
        return int(raw)
    if _DATE_RE.fullmatch(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            pass
        else:
            ms = (day - date(1970, 1, 1)).days * DAY_MS
            return ms + DAY_MS - 1 if is_to else ms
    raise _Invalid(
        f"Could not parse the time parameter: '{name}'. Use YYYY-MM-DD or Unix MS Timestamps"
    )


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class PolygonEmulator(LoopbackEmulator):
    """Polygon 1-minute aggregates, and Massive's splits and dividends of the tickers with a
    calendar. See the module docstring for auth, rate limits and corporate actions."""

    server_header = "nginx/1.19.2"

    def __init__(
        self,
        *,
        api_keys: set[str] | frozenset[str],
        host: str = "127.0.0.1",
        port: int = 0,
        now: datetime | None = None,
        results: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        tickers: set[str] | frozenset[str] | None = None,
        calls_per_window: int | None = 5,
        window_s: float = 60.0,
        seed: int = 0,
        clock: Clock | None = None,
        log_size: int = 50_000,
        calendars: Mapping[str, str] | None = None,
        roll_ups: bool = False,
    ) -> None:
        if calls_per_window is not None and calls_per_window < 0:
            raise ValueError("calls_per_window must be None (unlimited) or >= 0")
        if not window_s > 0:
            raise ValueError("window_s must be > 0")
        super().__init__(host=host, port=port, clock=clock, log_size=log_size)
        self._api_keys = tuple(k.encode("utf-8") for k in api_keys)
        self.now = now
        self.fixture_results: dict[str, list[dict[str, Any]]] = {
            t: [dict(bar) for bar in bars] for t, bars in (results or {}).items()
        }
        self.tickers = frozenset(tickers) if tickers is not None else None
        self.calls_per_window = calls_per_window
        self.window_s = float(window_s)
        self.seed = seed
        # ticker -> exchange_calendars name: a stock trading in that calendar's sessions, with
        # corporate actions. Any other ticker trades every minute and has none.
        # Plain stock tickers only: an X:/C:/I:/O: ticker fails the symbol check.
        self.calendars = checked_calendars(calendars or {})
        self.roll_ups = roll_ups
        self._reset_state()

    # -- state -------------------------------------------------------------------------

    def _reset_state(self) -> None:
        # reset() forgets announced corporate actions too, as the simulator's /_sim/reset.
        self._announced: Announced = NOTHING_ANNOUNCED
        self._calls: dict[str, collections.deque[float]] = {}
        self._aggs_requests = 0
        self._actions_requests = 0
        self._accepted = 0
        self._rejected_401 = 0
        self._rejected_429 = 0

    def stats(self) -> dict[str, Any]:
        base = super().stats()
        with self._lock:
            base.update(
                aggs_requests=self._aggs_requests,
                actions_requests=self._actions_requests,
                accepted=self._accepted,
                rejected_401=self._rejected_401,
                rejected_429=self._rejected_429,
            )
        return base

    def announce(self, payload: Any) -> Announced:
        """Publish corporate actions after the fact, as the simulator's ``POST
        /_sim/corporate_actions``: ``payload`` as ``actions.parse_announcement`` reads it
        (ValueError naming the field). Returns every action announced so far."""
        added = parse_announcement(payload, calendars=self.calendars)
        with self._lock:
            self._announced = self._announced.plus(added)
            return self._announced

    # -- hooks -------------------------------------------------------------------------

    def is_data_path(self, path: str) -> bool:
        return AGGS_PATH_RE.fullmatch(path) is not None or path in ACTIONS_PATHS

    def _authenticate(self, query: dict[str, list[str]], headers: Message) -> str | None:
        """The quota label of a valid key (a digest, never the key), else None."""
        key = _first(query, "apiKey")
        if key is None:
            auth = headers.get("Authorization") or ""
            scheme, _, token = str(auth).partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            return None
        candidate = key.encode("utf-8")
        ok = False
        for valid in self._api_keys:  # no early exit: constant time over the key set
            ok |= hmac.compare_digest(candidate, valid)
        return hashlib.sha256(candidate).hexdigest()[:12] if ok else None

    def _admit(self, label: str, now: float) -> bool:
        """Sliding-window quota per key; a rejected call is not recorded."""
        if self.calls_per_window is None:
            return True
        calls = self._calls.setdefault(label, collections.deque())
        while calls and calls[0] <= now - self.window_s:
            calls.popleft()
        if len(calls) >= self.calls_per_window:
            return False
        calls.append(now)
        return True

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Message
    ) -> Reply:
        match = AGGS_PATH_RE.fullmatch(path)
        if match is None and path not in ACTIONS_PATHS:
            body = {"status": "NOT_FOUND", "request_id": new_request_id(), "message": "Not found"}
            return 404, {}, dumps(body)
        if method != "GET":
            return 405, {"Allow": "GET"}, error_body("Method not allowed")
        label = self._authenticate(query, headers)
        with self._lock:
            if match is None:
                self._actions_requests += 1
            else:
                self._aggs_requests += 1
            if label is None:
                self._rejected_401 += 1
                return 401, {}, error_body(UNKNOWN_API_KEY)
            if not self._admit(label, self.clock()):
                self._rejected_429 += 1
                return 429, {}, error_body(RATE_LIMITED)
            self._accepted += 1
            announced = self._announced
        try:
            if match is None:
                body = self._actions(path, query, announced)
            else:
                body = self._aggs([unquote(g) for g in match.groups()], query, announced)
        except (_Invalid, InvalidQuery) as exc:
            return 400, {}, error_body(str(exc))
        return 200, {}, dumps(body)

    # -- corporate actions -------------------------------------------------------------

    def _actions(
        self, path: str, query: dict[str, list[str]], announced: Announced
    ) -> dict[str, Any]:
        universe = {
            ticker: calendar
            for ticker, calendar in self.calendars.items()
            if self.tickers is None or ticker in self.tickers
        }
        return actions_page(
            parse_actions_query(path, query),
            universe=universe,
            seed=self.seed,
            now=self._now_ms() // MINUTE_MS,
            base_url=self.url,
            announced=announced,
        )

    # -- aggregates --------------------------------------------------------------------

    def _now_ms(self) -> int:
        if self.now is not None:
            now = self.now if self.now.tzinfo else self.now.replace(tzinfo=UTC)
            return math.floor(now.timestamp() * 1000)
        return math.floor(self.clock() * 1000)

    def _aggs(
        self, segments: list[str], query: dict[str, list[str]], announced: Announced
    ) -> dict[str, Any]:
        ticker, multiplier, timespan, raw_from, raw_to = segments
        window = self._window_minutes(multiplier, timespan)
        to_ms = _parse_bound(raw_to, "to", is_to=True)
        cursor_raw = _first(query, "cursor")
        cursor = decode_cursor(cursor_raw) if cursor_raw is not None else None
        if cursor_raw is not None and cursor is None:
            raise _Invalid("Invalid cursor")
        from_ms = cursor["from"] if cursor else _parse_bound(raw_from, "from", is_to=False)
        if window > 1:  # snap to whole windows
            from_ms = window_start_ms(from_ms, window)
            to_ms = window_start_ms(to_ms, window) + window * MINUTE_MS - 1

        raw_adjusted = _first(query, "adjusted")
        if raw_adjusted is None:
            adjusted = cursor["adjusted"] if cursor else True
        elif raw_adjusted in ("true", "false"):
            adjusted = raw_adjusted == "true"
        else:
            raise _Invalid("Invalid value for 'adjusted': use true or false")
        sort = _first(query, "sort") or (cursor["sort"] if cursor else "asc")
        if sort != "asc":
            raise _Invalid("This emulator supports only sort=asc")
        raw_limit = _first(query, "limit")
        if raw_limit is None or raw_limit == "":
            limit = cursor["limit"] if cursor else DEFAULT_LIMIT
        elif _LIMIT_RE.fullmatch(raw_limit) and int(raw_limit) >= 1:
            limit = min(int(raw_limit), MAX_LIMIT)  # Polygon caps silently
        else:
            raise _Invalid("Invalid value for 'limit': must be an integer >= 1")
        if from_ms > to_ms and cursor is None:
            raise _Invalid("The 'from' time must be before or equal to the 'to' time")

        known = TICKER_RE.fullmatch(ticker) is not None and (
            self.tickers is None or ticker in self.tickers
        )
        fixture = self.fixture_results.get(ticker)
        if fixture is not None:
            # Served as given: window and limit filtering only, no quiet minutes, no clip.
            page = [bar for bar in fixture if from_ms <= int(bar["t"]) <= to_ms][: limit + 1]
        elif known:
            now_minute = self._now_ms() // MINUTE_MS
            last_closed = (now_minute - 1) * MINUTE_MS
            hi = min(to_ms, last_closed, _MAX_MS - 1)
            page = aggregate_bars(
                ticker,
                from_ms,
                hi,
                seed=self.seed,
                limit=limit + 1,
                calendar=self.calendars.get(ticker),
                announced=announced,
                adjusted_at=now_minute if adjusted else None,
            )
        else:
            page = []  # Polygon answers unknown tickers with an empty OK result

        next_url = None
        if len(page) > limit:
            next_from = int(page[limit]["t"])
            page = page[:limit]
            if window > 1:  # the window limit cut goes to the next page whole
                next_from = window_start_ms(next_from, window)
                page = [bar for bar in page if int(bar["t"]) < next_from]
                if not page:
                    raise _Invalid(f"limit {limit} is less than one bar's minute bars")
            token = encode_cursor(next_from_ms=next_from, limit=limit, adjusted=adjusted)
            next_url = (
                f"{self.url}/v2/aggs/ticker/{quote(ticker, safe='')}/range/"
                f"{quote(multiplier, safe='')}/{quote(timespan, safe='')}/"
                f"{next_from}/{quote(raw_to, safe='')}?cursor={token}"
            )
        used = len(page)
        if window > 1:
            page = roll_up_aggs(page, window)
        return aggs_envelope(ticker, page, adjusted=adjusted, next_url=next_url, query_count=used)

    def _window_minutes(self, multiplier: str, timespan: str) -> int:
        if multiplier == "1" and timespan == "minute":
            return 1
        if not self.roll_ups:
            raise _Invalid("This emulator supports only multiplier 1 and timespan 'minute'")
        if timespan not in TIMESPAN_MINUTES:
            raise _Invalid(f"This emulator supports timespan 'minute' and 'hour', not {timespan!r}")
        if not _LIMIT_RE.fullmatch(multiplier) or int(multiplier) < 1:
            raise _Invalid(f"Invalid multiplier {multiplier!r}: must be an integer >= 1")
        return int(multiplier) * TIMESPAN_MINUTES[timespan]
