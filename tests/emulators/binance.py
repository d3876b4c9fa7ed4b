"""Binance spot ``GET /api/v3/klines`` on loopback, with REQUEST_WEIGHT limits and IP bans.

Follows https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints
(kline/candlestick data) and the spot error-code list. Data comes from
``resources.simulator.generate_bars`` so it is deterministic, or from fixture rows.

Intervals: ``1m``, and with ``intervals=`` any of :data:`KLINE_MINUTES` (``5m``, ``15m``,
``1h``, ...; 1m only by default, which is what the tests written first expect of an unknown
interval). A longer kline is Binance's own roll-up of that interval's 1-minute klines: open
times on multiples of the interval since the epoch in UTC ("If timeZone provided, kline
intervals are interpreted in that timezone instead of UTC"; we take no timeZone), the first
open, highest high, lowest low, last close, summed volumes (base, quote, taker) and trade
counts, close time = open + interval - 1 ms. Sums are exact decimals of the minutes' 8-decimal
strings, as the exchange's own are of its trades. It is written independently of
``resources/tables/intervals.py``, which tests compare with it. Only klines whose whole
interval has closed are served, as for 1m.

Rate limiting (one client IP, as all loopback clients share 127.0.0.1):

* a fixed window of ``window_s`` aligned to the clock (``floor(now / window_s)``, i.e. the
  wall-clock minute by default) with ``weight_limit`` REQUEST_WEIGHT; every klines request
  costs ``request_weight``; every klines response carries ``X-MBX-USED-WEIGHT-1m``;
* ``GET /api/v3/exchangeInfo`` (weight 20) lists "rateLimits": REQUEST_WEIGHT of this
  emulator's limit and window, and the documented ORDERS and RAW_REQUESTS limits;
* over the limit: 429 with ``Retry-After`` = seconds until the window resets (ceil, >= 1);
  rejected requests cost no weight;
* a request that arrives before a 429's Retry-After period has ended gets the IP banned
  for ``ban_s``: 418 with ``Retry-After`` = remaining ban seconds, on every request until
  the ban ends (those are counted in ``requests_during_ban``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from email.message import Message
from typing import Any

from resources.simulator.data import SYMBOL_PATTERN, generate_bars
from tests.emulators.base import Clock, LoopbackEmulator, Reply, dumps

__all__ = [
    "INVALID_INTERVAL",
    "INVALID_PARAMETER",
    "INVALID_SYMBOL",
    "KLINES_PATH",
    "KLINE_MINUTES",
    "START_AFTER_END",
    "BinanceEmulator",
    "ban_body",
    "error_body",
    "interval_kline_rows",
    "kline_rows",
    "rate_limit_body",
]

KLINES_PATH = "/api/v3/klines"
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
EXCHANGE_INFO_WEIGHT = 20  # the spot docs' weight of exchangeInfo
MINUTE_MS = 60_000
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
# Binance's minute, hour and day intervals (all divide a day, so epoch multiples are UTC-aligned).
KLINE_MINUTES: dict[str, int] = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
}

BINANCE_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
_DIGITS_RE = re.compile(r"^[0-9]{1,20}$")
_LIMIT_RE = re.compile(r"^-?[0-9]{1,12}$")

RATE_LIMIT_MSG = (
    "Too many requests; current limit of IP(127.0.0.1) is {limit} requests per minute. "
    "Please use the websocket for live updates to avoid polling the API."
)
BAN_BODY_TEMPLATE = (
    "Way too much request weight used; IP banned until {until_ms}. "
    "Please use WebSocket Streams for live updates to avoid bans."
)


def error_body(code: int, msg: str) -> bytes:
    return dumps({"code": code, "msg": msg})


def rate_limit_body(limit: int = 6000) -> bytes:
    """The 429 body Binance sends when REQUEST_WEIGHT is exceeded."""
    return error_body(-1003, RATE_LIMIT_MSG.format(limit=limit))


def ban_body(until_ms: int) -> bytes:
    """The 418 body Binance sends to a banned IP."""
    return error_body(-1003, BAN_BODY_TEMPLATE.format(until_ms=until_ms))


def _mandatory(name: str) -> bytes:
    return error_body(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _illegal(name: str) -> bytes:
    return error_body(
        -1100,
        f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
    )


INVALID_SYMBOL = error_body(-1121, "Invalid symbol.")
INVALID_INTERVAL = error_body(-1120, "Invalid interval.")
INVALID_PARAMETER = error_body(-1130, "Invalid data sent for a parameter.")
START_AFTER_END = error_body(-1023, "Start time is greater than end time.")


# --------------------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------------------


def _generator_symbol(symbol: str) -> str:
    # generate_bars accepts at most 10 base characters; longer Binance symbols (e.g.
    # 1000SHIBUSDT) get a stable alias so every valid symbol still has data.
    if SYMBOL_PATTERN.fullmatch(symbol):
        return symbol
    return "Z" + hashlib.sha256(symbol.encode()).hexdigest()[:9].upper()


def _unit(text: str) -> float:
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:7], "big") / float(1 << 56)


def _f8(x: float) -> str:
    return f"{x:.8f}"


def _kline(symbol: str, bar: Mapping[str, Any]) -> list[Any]:
    open_ms = int(datetime.fromisoformat(bar["t"].replace("Z", "+00:00")).timestamp()) * 1000
    v, vw = float(bar["v"]), float(bar["vw"])
    # Takers bought 30..70% of the volume, deterministically per (symbol, minute).
    taker_base = round(v * (0.3 + 0.4 * _unit(f"{symbol}|{open_ms}|taker")), 8)
    return [
        open_ms,
        _f8(bar["o"]),
        _f8(bar["h"]),
        _f8(bar["l"]),
        _f8(bar["c"]),
        _f8(v),
        open_ms + MINUTE_MS - 1,
        _f8(vw * v),
        int(bar["n"]),
        _f8(taker_base),
        _f8(taker_base * vw),
        "0",
    ]


def kline_rows(symbol: str, first_open_ms: int, last_open_ms: int, *, seed: int = 0) -> list[list]:
    """Klines for every minute with ``first_open_ms <= open <= last_open_ms`` (both inclusive).

    Not clipped to "now". Values derive from ``generate_bars`` (o, h, l, c, v, n, vw).
    """
    first = -(-first_open_ms // MINUTE_MS)
    last = last_open_ms // MINUTE_MS
    if last < first:
        return []
    start = datetime.fromtimestamp(first * 60, UTC)
    end = datetime.fromtimestamp((last + 1) * 60, UTC)
    bars = generate_bars(_generator_symbol(symbol), start, end, seed=seed)
    return [_kline(symbol, bar) for bar in bars]


def _roll_up(rows: Sequence[Sequence[Any]], open_ms: int, interval_ms: int) -> list[Any]:
    """One kline from the 1-minute klines of its interval, as Binance builds it."""

    def total(index: int) -> str:
        return _f8(sum((Decimal(row[index]) for row in rows), Decimal(0)))

    return [
        open_ms,
        rows[0][1],
        _f8(max(Decimal(row[2]) for row in rows)),
        _f8(min(Decimal(row[3]) for row in rows)),
        rows[-1][4],
        total(5),
        open_ms + interval_ms - 1,
        total(7),
        sum(int(row[8]) for row in rows),
        total(9),
        total(10),
        "0",
    ]


def interval_kline_rows(
    symbol: str, minutes: int, first_open_ms: int, last_open_ms: int, *, seed: int = 0
) -> list[list]:
    """``minutes``-minute klines with ``first_open_ms <= open <= last_open_ms``, opens on
    multiples of the interval since the epoch (UTC), rolled up from :func:`kline_rows`."""
    interval_ms = minutes * MINUTE_MS
    first = -(-first_open_ms // interval_ms) * interval_ms
    last = last_open_ms // interval_ms * interval_ms
    if last < first:
        return []
    minute_rows = kline_rows(symbol, first, last + interval_ms - MINUTE_MS, seed=seed)
    windows: dict[int, list[list]] = {}
    for row in minute_rows:
        windows.setdefault(row[0] // interval_ms * interval_ms, []).append(row)
    # Generated data has every minute; a window without any would have no kline.
    return [_roll_up(rows, open_ms, interval_ms) for open_ms, rows in sorted(windows.items())]


# --------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class _Invalid(Exception):
    def __init__(self, body: bytes) -> None:
        super().__init__("invalid request")
        self.body = body


class BinanceEmulator(LoopbackEmulator):
    """Binance spot klines. See the module docstring for the rate-limit model."""

    server_header = "nginx"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        now: datetime | None = None,
        klines: Mapping[str, Sequence[Sequence[Any]]] | None = None,
        symbols: set[str] | frozenset[str] | None = None,
        weight_limit: int = 6000,
        window_s: float = 60.0,
        request_weight: int = 2,
        ban_s: float = 120.0,
        seed: int = 0,
        clock: Clock | None = None,
        log_size: int = 50_000,
        intervals: Collection[str] = ("1m",),
    ) -> None:
        unknown = sorted(set(intervals) - set(KLINE_MINUTES))
        if unknown:
            raise ValueError(f"intervals {unknown} not emulated; known: {sorted(KLINE_MINUTES)}")
        if weight_limit < 0 or request_weight < 0:
            raise ValueError("weight_limit and request_weight must be >= 0")
        if not window_s > 0 or ban_s < 0:
            raise ValueError("window_s must be > 0 and ban_s >= 0")
        super().__init__(host=host, port=port, clock=clock, log_size=log_size)
        self.now = now
        self.fixture_klines: dict[str, list[list[Any]]] = {
            sym: [list(row) for row in rows] for sym, rows in (klines or {}).items()
        }
        self.symbols = frozenset(symbols) if symbols is not None else None
        self.weight_limit = weight_limit
        self.window_s = float(window_s)
        self.request_weight = request_weight
        self.ban_s = float(ban_s)
        self.seed = seed
        self.intervals = frozenset(intervals) | {"1m"}
        self._reset_state()

    # -- state -------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._window_start = -math.inf
        self._used = 0
        self._retry_until = -math.inf  # end of the latest 429's Retry-After period
        self._ban_until = -math.inf
        self._weight_total = 0
        self._klines_requests = 0
        self._rejected_429 = 0
        self._rejected_418 = 0
        self._during_ban = 0
        self._bans = 0

    def stats(self) -> dict[str, Any]:
        base = super().stats()
        with self._lock:
            base.update(
                klines_requests=self._klines_requests,
                weight_used_total=self._weight_total,
                weight_used_window=self._current_used(self.clock()),
                rejected_429=self._rejected_429,
                rejected_418=self._rejected_418,
                requests_during_ban=self._during_ban,
                bans=self._bans,
                banned_until=self._ban_until if self._ban_until > -math.inf else None,
            )
        return base

    def used_weight(self) -> int:
        """REQUEST_WEIGHT used in the current window."""
        with self._lock:
            return self._current_used(self.clock())

    def _current_used(self, now: float) -> int:
        start = math.floor(now / self.window_s) * self.window_s
        return self._used if start == self._window_start else 0

    def _roll_window(self, now: float) -> None:
        start = math.floor(now / self.window_s) * self.window_s
        if start != self._window_start:
            self._window_start, self._used = start, 0

    def _ban(self, now: float, seconds: float) -> Reply:
        self._ban_until = now + seconds
        self._bans += 1
        return self._ban_reply(now)

    def _ban_reply(self, now: float) -> Reply:
        self._rejected_418 += 1
        retry = max(1, math.ceil(self._ban_until - now))
        headers = {
            "Retry-After": str(retry),
            "X-MBX-USED-WEIGHT-1m": str(self._current_used(now)),
        }
        return 418, headers, ban_body(round(self._ban_until * 1000))

    # -- hooks -------------------------------------------------------------------------

    def is_data_path(self, path: str) -> bool:
        return path == KLINES_PATH

    def _on_injected(self, reply: Reply) -> Reply:
        status, headers, body = reply
        now = self.clock()
        retry_after = _retry_after_seconds(headers)
        if status == 418:
            self._ban_until = now + (retry_after if retry_after is not None else self.ban_s)
            self._bans += 1
            self._rejected_418 += 1
        elif status == 429:
            self._rejected_429 += 1
            if retry_after is not None:
                self._retry_until = max(self._retry_until, now + retry_after)
        if not any(name.lower() == "x-mbx-used-weight-1m" for name in headers):
            headers = {**headers, "X-MBX-USED-WEIGHT-1m": str(self._current_used(now))}
        return status, headers, body

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Message
    ) -> Reply:
        if path not in (KLINES_PATH, EXCHANGE_INFO_PATH):
            return 404, {}, dumps({"code": -1000, "msg": "Not found."})
        if method != "GET":
            return 405, {"Allow": "GET"}, dumps({"code": -1000, "msg": "Method not allowed."})
        with self._lock:
            now = self.clock()
            self._klines_requests += 1
            if now < self._ban_until:
                self._during_ban += 1
                return self._ban_reply(now)
            self._roll_window(now)
            if now < self._retry_until:
                # Sent again inside a 429's Retry-After period: auto-ban.
                return self._ban(now, self.ban_s)
            if self._used + self.request_weight > self.weight_limit:
                self._rejected_429 += 1
                window_end = self._window_start + self.window_s
                self._retry_until = max(self._retry_until, window_end)
                retry = max(1, math.ceil(window_end - now))
                rl_headers = {"Retry-After": str(retry), "X-MBX-USED-WEIGHT-1m": str(self._used)}
                return 429, rl_headers, rate_limit_body(self.weight_limit)
            # Weight is charged before validation: malformed requests cost weight too.
            weight = EXCHANGE_INFO_WEIGHT if path == EXCHANGE_INFO_PATH else self.request_weight
            self._used += weight
            self._weight_total += weight
            weight_header = {"X-MBX-USED-WEIGHT-1m": str(self._used)}
        if path == EXCHANGE_INFO_PATH:
            return 200, weight_header, dumps(self._exchange_info())
        try:
            rows = self._klines(query)
        except _Invalid as exc:
            return 400, weight_header, exc.body
        return 200, weight_header, dumps(rows)

    def _exchange_info(self) -> dict[str, Any]:
        """``GET /api/v3/exchangeInfo``: "rateLimits" as the spot docs list them (REQUEST_WEIGHT
        per interval, ORDERS, RAW_REQUESTS), with this emulator's own weight limit and window;
        no symbols' trading rules (nothing here reads them)."""
        window = int(self.window_s)
        for name, seconds in (("DAY", 86400), ("HOUR", 3600), ("MINUTE", 60), ("SECOND", 1)):
            if window >= seconds and window % seconds == 0:
                interval, number = name, window // seconds
                break
        return {
            "timezone": "UTC",
            "serverTime": math.floor(self.clock() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": interval,
                    "intervalNum": number,
                    "limit": self.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
            "symbols": [],
        }

    # -- klines ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        if self.now is not None:
            now = self.now if self.now.tzinfo else self.now.replace(tzinfo=UTC)
            return math.floor(now.timestamp() * 1000)
        return math.floor(self.clock() * 1000)

    def _klines(self, query: dict[str, list[str]]) -> list[list[Any]]:
        symbol = _first(query, "symbol")
        if not symbol:
            raise _Invalid(_mandatory("symbol"))
        if not BINANCE_SYMBOL_RE.fullmatch(symbol):
            raise _Invalid(INVALID_SYMBOL)
        if self.symbols is not None and symbol not in self.symbols:
            raise _Invalid(INVALID_SYMBOL)
        interval = _first(query, "interval")
        if not interval:
            raise _Invalid(_mandatory("interval"))
        if interval not in self.intervals:
            raise _Invalid(INVALID_INTERVAL)
        step = KLINE_MINUTES[interval] * MINUTE_MS
        start = self._ms_param(query, "startTime")
        end = self._ms_param(query, "endTime")
        raw_limit = _first(query, "limit")
        if raw_limit is None or raw_limit == "":
            limit = DEFAULT_LIMIT
        elif not _LIMIT_RE.fullmatch(raw_limit):
            raise _Invalid(_illegal("limit"))
        else:
            limit = int(raw_limit)
            if not 1 <= limit <= MAX_LIMIT:
                raise _Invalid(INVALID_PARAMETER)
        if start is not None and end is not None and start > end:
            raise _Invalid(START_AFTER_END)

        fixture = self.fixture_klines.get(symbol)
        if fixture is not None:
            # Fixture rows are served as given: filtered by the window and limit only.
            rows = [
                row
                for row in fixture
                if (start is None or row[0] >= start) and (end is None or row[0] <= end)
            ]
            return rows[:limit] if start is not None else rows[-limit:]

        # Only closed klines exist: open + interval <= now.
        last_closed = (self._now_ms() // step - 1) * step
        hi = last_closed if end is None else min(end, last_closed)
        if start is not None:
            first = -(-start // step) * step
            last = min(hi, first + (limit - 1) * step)
        else:
            last = hi // step * step
            first = max(0, last - (limit - 1) * step)
        if last < first:
            return []
        if step == MINUTE_MS:
            return kline_rows(symbol, first, last, seed=self.seed)
        return interval_kline_rows(symbol, step // MINUTE_MS, first, last, seed=self.seed)

    @staticmethod
    def _ms_param(query: dict[str, list[str]], name: str) -> int | None:
        raw = _first(query, name)
        if raw is None or raw == "":
            return None
        if not _DIGITS_RE.fullmatch(raw):
            raise _Invalid(_illegal(name))
        return int(raw)


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None
