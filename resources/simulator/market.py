"""Deterministic fake market-data API served over real HTTP on loopback.

The simulator stands in for a rate-limited vendor API in tests and in the demo. It is a
``ThreadingHTTPServer`` so the client code under test exercises real sockets, real status
codes and real protocol failures (truncated bodies, bad JSON) instead of mocks.

Data is a pure function of ``(symbol, minute, seed)``: every UTC day gets its own
``random.Random`` seeded from a SHA-256 digest, and the day's opening price comes from a
per-symbol daily random walk anchored at 2020-01-01. That makes paging, overlapping
windows and separate processes agree byte for byte.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import functools
import hashlib
import hmac
import json
import logging
import math
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from resources.simulator.loopback import LoopbackHTTPServer, QuietHandler

__all__ = [
    "FAULT_NAMES",
    "SYMBOL_PATTERN",
    "FaultSpec",
    "MarketSimulator",
    "SimulatorConfig",
    "generate_bars",
    "serve_forever_from_args",
]

logger = logging.getLogger(__name__)

SYMBOL_PATTERN: re.Pattern[str] = re.compile(r"^[A-Z0-9]{1,10}([.-][A-Z0-9]{1,5})?$")

# Order matters: faults are considered in this order and at most one fires per request.
FAULT_NAMES: tuple[str, ...] = (
    "rate_limited",
    "server_error",
    "truncated_body",
    "malformed_json",
    "throttle_body",
    "schema_drift",
)

_MINUTES_PER_DAY = 1440
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX_DATE = date(1970, 1, 1)
# Anchor of the daily price walk; days before it walk backwards with their own stream.
_WALK_EPOCH_DAY = (date(2020, 1, 1) - _UNIX_DATE).days
# Supported data range. Bounded so a request for year 9999 cannot make us walk millions
# of days (the daily walk is sequential and cached in memory).
_MIN_MINUTE = 0
_MAX_MINUTE = (date(2100, 1, 1) - _UNIX_DATE).days * _MINUTES_PER_DAY
_ONE_MINUTE = timedelta(minutes=1)

_MAX_BODY_BYTES = 64 * 1024
_MAX_PARAM_LEN = 64
_CURSOR_RE = re.compile(r"^v1:(\d{1,12})$")
_JSON_SEPARATORS = (",", ":")


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultSpec:
    """Probability and budget of one fault kind on ``/v1/bars``."""

    rate: float = 0.0  # probability 0..1 that a /v1/bars request gets this fault
    count: int | None = None  # at most this many injections (None = unlimited)

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.rate) <= 1.0) or math.isnan(float(self.rate)):
            raise ValueError(f"fault rate must be within 0..1, got {self.rate!r}")
        if self.count is not None and (isinstance(self.count, bool) or self.count < 0):
            raise ValueError(f"fault count must be None or >= 0, got {self.count!r}")


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 = ephemeral
    api_keys: frozenset[str] | None = None  # None = no auth required
    quota_requests: int | None = None  # per key per quota window; None = unlimited
    quota_window_s: float = 1.0
    # With a burst the quota is a token bucket (GCRA): quota_requests per quota_window_s on
    # average, at most quota_burst back to back. Without one it is a fixed window.
    quota_burst: int | None = None
    # Retry-After (seconds) sent by the injected "rate_limited" fault.
    fault_retry_after_s: int = 2
    page_limit_max: int = 1000
    seed: int = 0
    now: datetime | None = None  # fixed "now" (UTC) for tests; None = wall clock
    # A provider that publishes late and then catches up: its clock starts clock_lag_s behind
    # the wall clock and runs clock_speed times faster until it has caught up. End-to-end tests
    # use it to see new hourly windows close every few seconds, all in Dagster's past.
    clock_lag_s: float = 0.0
    clock_speed: float = 1.0
    clock_anchor: float | None = None  # epoch the lag is counted from (None = start-up)
    latency_ms: int = 0  # added to every /v1 response
    faults: dict[str, FaultSpec] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------------------


def _digest_int(text: str) -> int:
    # sha256, never hash(): str hashes are salted per process and would break determinism.
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "big")


def _unit(text: str) -> float:
    """A deterministic float in [0, 1) derived from ``text``."""
    return (_digest_int(text) >> 75) / float(1 << 53)


class _DailyWalk:
    """Log opening price per UTC day for one (symbol, seed): a mean-reverting walk.

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


# (o, h, l, c, v, n, vw) — tuples keep the per-day cache small and immutable.
_Bar = tuple[float, float, float, float, float, int, float]


class _DayBars:
    """Minute bars of one UTC day, generated lazily up to the highest minute asked for.

    Minute m only depends on minutes 0..m of the same day, so asking for the last closed
    minute (``/v1/latest``) never forces generating the rest of the day.
    """

    def __init__(self, symbol: str, seed: int, day: int) -> None:
        day_iso = (_UNIX_DATE + timedelta(days=day)).isoformat()
        self.day_prefix = f"{day_iso}T"
        self._rng = random.Random(_digest_int(f"{seed}|{symbol}|{day_iso}"))
        walk = _daily_walk(symbol, seed)
        self._log_price = walk.log_open(day - _WALK_EPOCH_DAY)
        # Scale so the intraday walk's variance over a day matches the daily volatility.
        self._sigma = walk.daily_vol / math.sqrt(_MINUTES_PER_DAY)
        self._prev_close = round(math.exp(self._log_price), 4)
        self._weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        self._bars: list[_Bar] = []
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
        # Busier during the US cash session and quieter at weekends, purely for realism.
        quiet_trades = 20.0 * (0.2 if self._weekend else 1.0)
        busy_trades = 5.0 * quiet_trades
        log = math.log
        for minute_of_day in range(len(bars), stop):
            log_price += gauss(0.0, sigma)
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

    def slice(self, first: int, stop: int) -> list[_Bar]:
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
    f"{m // 60:02d}:{m % 60:02d}:00Z" for m in range(_MINUTES_PER_DAY)
)


def _minute_iso(minute: int) -> str:
    day, minute_of_day = divmod(minute, _MINUTES_PER_DAY)
    return f"{(_UNIX_DATE + timedelta(days=day)).isoformat()}T{_TIME_SUFFIXES[minute_of_day]}"


def _iter_bars(symbol: str, seed: int, first: int, stop: int) -> Iterator[tuple[str, _Bar]]:
    """(ISO open time, bar) for every minute in [first, stop)."""
    minute = first
    while minute < stop:
        day, offset = divmod(minute, _MINUTES_PER_DAY)
        day_stop = min(_MINUTES_PER_DAY, offset + (stop - minute))
        day_bars = _day_bars(symbol, seed, day)
        prefix = day_bars.day_prefix
        for i, bar in enumerate(day_bars.slice(offset, day_stop), start=offset):
            yield prefix + _TIME_SUFFIXES[i], bar
        minute += day_stop - offset


def _bar_dict(t: str, bar: _Bar) -> dict[str, Any]:
    o, h, low, c, v, n, vw = bar
    return {"t": t, "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw}


def _as_utc(dt: datetime) -> datetime:
    # Naive datetimes are taken to be UTC, the only zone this API speaks.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _ceil_minute(dt: datetime) -> int:
    return -((_UNIX_EPOCH - _as_utc(dt)) // _ONE_MINUTE)


def _floor_minute(dt: datetime) -> int:
    return (_as_utc(dt) - _UNIX_EPOCH) // _ONE_MINUTE


def generate_bars(symbol: str, start: datetime, end: datetime, *, seed: int = 0) -> list[dict]:
    """1-minute bars whose open time t satisfies ``start <= t < end`` (naive = UTC).

    Not clipped to "now": this is the ground truth the server pages through.
    """
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError("invalid symbol")
    first, stop = _ceil_minute(start), _ceil_minute(end)
    if first >= stop:
        return []
    if first < _MIN_MINUTE or stop > _MAX_MINUTE:
        raise ValueError("window outside the supported range 1970-01-01..2100-01-01")
    return [_bar_dict(m, bar) for m, bar in _iter_bars(symbol, seed, first, stop)]


# --------------------------------------------------------------------------------------
# Request parsing helpers
# --------------------------------------------------------------------------------------


class _BadRequest(Exception):
    """Raised by validators; the message is safe to return (never echoes input)."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=_JSON_SEPARATORS).encode("utf-8")


def _parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 UTC timestamp (``Z`` or ``+00:00``); ValueError otherwise."""
    if len(value) > _MAX_PARAM_LEN:
        raise ValueError("too long")
    # An unencoded '+' in a query string arrives as a space; restore it.
    dt = datetime.fromisoformat(value.replace(" ", "+"))
    if dt.tzinfo is None or dt.utcoffset() != timedelta(0):
        raise ValueError("not UTC")
    return dt.astimezone(UTC)


def _parse_minute_param(value: str, name: str) -> int:
    try:
        dt = _parse_iso(value)
    except ValueError:
        raise _BadRequest(
            f"invalid {name}: expected ISO-8601 UTC timestamp like 2026-01-05T00:00:00Z"
        ) from None
    if dt.second or dt.microsecond:
        raise _BadRequest(f"invalid {name}: must be aligned to a whole minute")
    minute = _floor_minute(dt)
    if not _MIN_MINUTE <= minute <= _MAX_MINUTE:
        raise _BadRequest(f"invalid {name}: outside supported range 1970-01-01..2100-01-01")
    return minute


def _encode_cursor(minute: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{minute}".encode()).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str) -> int:
    if not cursor or len(cursor) > _MAX_PARAM_LEN:
        raise _BadRequest("invalid cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _BadRequest("invalid cursor") from None
    match = _CURSOR_RE.fullmatch(raw)
    if match is None:
        raise _BadRequest("invalid cursor")
    minute = int(match.group(1))
    if not _MIN_MINUTE <= minute < _MAX_MINUTE:
        raise _BadRequest("invalid cursor")
    return minute


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _require_symbol(query: dict[str, list[str]]) -> str:
    symbol = _first(query, "symbol")
    # fullmatch: with re.match, "$" would also accept a trailing newline.
    if symbol is None or not SYMBOL_PATTERN.fullmatch(symbol):
        raise _BadRequest("invalid symbol")
    return symbol


def _key_label(key: str) -> str:
    # Stats identify keys by a short digest so the key itself never leaves the process.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False  # send full Content-Length, write half, drop the connection


class _SimHTTPServer(LoopbackHTTPServer):
    label = "simulator"

    def __init__(self, address: tuple[str, int], sim: MarketSimulator) -> None:
        self.sim = sim
        super().__init__(address, _Handler)


class _Handler(QuietHandler):
    server: _SimHTTPServer
    server_version = "MarketSim/1.0"

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _read_body(self) -> bytes | None:
        """The request body, or None if it is unacceptable (caller answers 400)."""
        if self.headers.get("Transfer-Encoding"):
            return None
        raw_len = self.headers.get("Content-Length")
        if raw_len is None:
            return b""
        try:
            length = int(raw_len)
        except ValueError:
            return None
        if length < 0 or length > _MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        body = self._read_body()
        if body is None:
            # We could not consume the body, so the stream is out of sync: close it.
            self.close_connection = True
            resp = _Response(400, _dumps({"error": "unsupported or oversized request body"}))
        else:
            try:
                resp = self.server.sim._handle(method, self.path, self.headers, body)
            except Exception:
                logger.exception("simulator failed handling %s %s", method, path)
                resp = _Response(500, _dumps({"error": "internal simulator error"}))
        self._write(resp)
        logger.debug("simulator %s %s -> %d", method, path, resp.status)

    def _write(self, resp: _Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if resp.truncate:
            self.wfile.write(resp.body[: len(resp.body) // 2])
            self.wfile.flush()
            # Returning with close_connection set makes socketserver shut the socket
            # down, so the client sees EOF before Content-Length bytes arrived.
            self.close_connection = True
        else:
            self.wfile.write(resp.body)


# --------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------


class MarketSimulator:
    """A loopback market-data API; ``start()`` serves it from a daemon thread."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        cfg = self.config
        if cfg.page_limit_max < 1:
            raise ValueError("page_limit_max must be >= 1")
        if cfg.quota_requests is not None and cfg.quota_requests < 0:
            raise ValueError("quota_requests must be None or >= 0")
        if not cfg.quota_window_s > 0:
            raise ValueError("quota_window_s must be > 0")
        if cfg.quota_burst is not None and (cfg.quota_burst < 1 or not cfg.quota_requests):
            raise ValueError("quota_burst needs quota_requests > 0 and must be >= 1")
        self._check_faults(cfg.faults)
        self._check_latency(cfg.latency_ms)
        self._api_keys = tuple(k.encode("utf-8") for k in cfg.api_keys or ())
        self._lock = threading.Lock()
        self._server: _SimHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Mutable state, all guarded by self._lock.
        self._faults: dict[str, FaultSpec] = dict(cfg.faults)
        self._latency_ms = cfg.latency_ms
        self._fault_used: dict[str, int] = dict.fromkeys(FAULT_NAMES, 0)
        self._fault_rng = random.Random(cfg.seed)
        self._quota: dict[str, list[float]] = {}  # label -> [window_start, used]
        self._buckets: dict[str, float] = {}  # label -> GCRA theoretical arrival time
        # A restarted simulator given the same anchor continues the same clock.
        self._clock_anchor = cfg.clock_anchor if cfg.clock_anchor is not None else time.time()
        self._clear_stats()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> MarketSimulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _SimHTTPServer((self.config.host, self.config.port), self)
        self._server = server
        self._thread = server.serve_in_thread(f"market-sim-{server.server_port}")
        logger.info("market simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.stop_serving(thread)
        logger.info("market simulator stopped")

    def __enter__(self) -> MarketSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        host = self.config.host
        # A wildcard bind is reachable on loopback; hand out an address clients can use.
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- control -----------------------------------------------------------------------

    @staticmethod
    def _check_faults(faults: dict[str, FaultSpec]) -> None:
        unknown = set(faults) - set(FAULT_NAMES)
        if unknown:
            raise ValueError(f"unknown fault names {sorted(unknown)}; allowed: {FAULT_NAMES}")
        for spec in faults.values():
            if not isinstance(spec, FaultSpec):
                raise TypeError("fault values must be FaultSpec instances")

    @staticmethod
    def _check_latency(latency_ms: int) -> None:
        if isinstance(latency_ms, bool) or not 0 <= latency_ms <= 60_000:
            raise ValueError("latency_ms must be within 0..60000")

    def set_faults(self, faults: dict[str, FaultSpec], *, latency_ms: int | None = None) -> None:
        """Replace the fault set (and budgets); optionally change latency."""
        self._check_faults(faults)
        if latency_ms is not None:
            self._check_latency(latency_ms)
        with self._lock:
            self._faults = dict(faults)
            self._fault_used = dict.fromkeys(FAULT_NAMES, 0)
            if latency_ms is not None:
                self._latency_ms = latency_ms

    def reset(self) -> None:
        """Clear stats, faults, latency and quota windows; reseed the fault RNG."""
        with self._lock:
            self._clear_stats()
            self._faults = {}
            self._latency_ms = 0
            self._fault_used = dict.fromkeys(FAULT_NAMES, 0)
            self._fault_rng = random.Random(self.config.seed)
            self._quota = {}
            self._buckets = {}

    def _clear_stats(self) -> None:
        self._requests = 0
        self._by_path: dict[str, int] = {}
        self._by_key: dict[str, int] = {}
        self._rejected_429 = 0
        self._accepted = 0
        self._faults_injected: dict[str, int] = dict.fromkeys(FAULT_NAMES, 0)
        # (epoch seconds, path, status, key label) of recent /v1 requests, for tests and
        # benchmarks that check who was sending when.
        self._log: collections.deque[tuple[float, str, int, str]] = collections.deque(maxlen=50_000)

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": self._requests,
                "requests_by_path": dict(self._by_path),
                "requests_by_key": dict(self._by_key),
                "rejected_429": self._rejected_429,
                "accepted": self._accepted,
                "faults_injected": dict(self._faults_injected),
            }

    # -- request handling --------------------------------------------------------------

    def _now(self) -> datetime:
        now = self.config.now
        if now is not None:
            return _as_utc(now)
        real = time.time()
        if not self.config.clock_lag_s:
            return datetime.fromtimestamp(real, UTC)
        elapsed = real - self._clock_anchor
        lag = max(0.0, self.config.clock_lag_s - elapsed * (self.config.clock_speed - 1.0))
        return datetime.fromtimestamp(real - lag, UTC)

    def _handle(self, method: str, target: str, headers: Any, body: bytes) -> _Response:
        split = urlsplit(target)
        path = split.path
        try:
            query = parse_qs(split.query, keep_blank_values=True, max_num_fields=64)
        except ValueError:
            return _Response(400, _dumps({"error": "too many query parameters"}))
        if path.startswith("/_sim/"):
            return self._handle_admin(method, path, body)
        if path in ("/v1/bars", "/v1/latest"):
            if method != "GET":
                return _Response(405, _dumps({"error": "method not allowed"}), {"Allow": "GET"})
            return self._handle_v1(path, query, headers)
        with self._lock:
            self._requests += 1
            # Unknown paths share one bucket: arbitrary client paths must not become keys.
            self._by_path["other"] = self._by_path.get("other", 0) + 1
        return _Response(404, _dumps({"error": "not found"}))

    def _handle_admin(self, method: str, path: str, body: bytes) -> _Response:
        if path == "/_sim/stats" and method == "GET":
            return _Response(200, _dumps(self.stats()))
        if path == "/_sim/requests" and method == "GET":
            return _Response(200, _dumps({"requests": self.request_log()}))
        if path == "/_sim/health" and method == "GET":
            return _Response(200, _dumps({"status": "ok"}))
        if path == "/_sim/reset" and method == "POST":
            self.reset()
            return _Response(200, _dumps({"status": "reset"}))
        if path == "/_sim/faults" and method == "POST":
            return self._post_faults(body)
        if path in ("/_sim/stats", "/_sim/health", "/_sim/reset", "/_sim/faults", "/_sim/requests"):
            return _Response(405, _dumps({"error": "method not allowed"}))
        return _Response(404, _dumps({"error": "not found"}))

    def _post_faults(self, body: bytes) -> _Response:
        def bad(msg: str) -> _Response:
            return _Response(400, _dumps({"error": msg}))

        try:
            payload = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return bad("body must be JSON")
        if not isinstance(payload, dict):
            return bad("body must be a JSON object")
        raw_faults = payload.get("faults", {})
        if not isinstance(raw_faults, dict):
            return bad("faults must be an object")
        if set(raw_faults) - set(FAULT_NAMES):
            return _Response(
                400, _dumps({"error": "unknown fault name", "allowed": list(FAULT_NAMES)})
            )
        faults: dict[str, FaultSpec] = {}
        for name, raw in raw_faults.items():
            if not isinstance(raw, dict):
                return bad(f"fault {name} must be an object")
            rate, count = raw.get("rate", 0.0), raw.get("count")
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                return bad(f"fault {name}: rate must be a number")
            if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
                return bad(f"fault {name}: count must be an integer or null")
            try:
                faults[name] = FaultSpec(rate=float(rate), count=count)
            except ValueError:
                return bad(f"fault {name}: rate must be 0..1 and count >= 0")
        latency = payload.get("latency_ms")
        if latency is not None:
            if isinstance(latency, bool) or not isinstance(latency, int):
                return bad("latency_ms must be an integer")
            try:
                self._check_latency(latency)
            except ValueError:
                return bad("latency_ms must be within 0..60000")
        self.set_faults(faults, latency_ms=latency)
        with self._lock:
            current = {n: {"rate": s.rate, "count": s.count} for n, s in self._faults.items()}
            body_out = {"faults": current, "latency_ms": self._latency_ms}
        return _Response(200, _dumps(body_out))

    def _authenticate(self, query: dict[str, list[str]], headers: Any) -> tuple[bool, str]:
        """(authorised, stats/quota label). Never returns or logs the key itself."""
        key = _first(query, "apikey")
        if key is None:
            key = headers.get("X-API-Key")
        if self.config.api_keys is None:
            return True, "anonymous" if key is None else _key_label(key)
        if not key:
            return False, "anonymous"
        candidate = key.encode("utf-8")
        # Check every key (no early exit) with constant-time compares.
        ok = False
        for valid in self._api_keys:
            ok |= hmac.compare_digest(candidate, valid)
        # Bad keys share one label so guessing cannot grow the stats/quota tables.
        return ok, _key_label(key) if ok else "invalid"

    def request_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"t": t, "path": p, "status": s, "key": k} for t, p, s, k in self._log]

    def _policy_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        """The IETF draft headers, next to the X-RateLimit-* family every quota sends."""
        cfg = self.config
        return {
            "RateLimit-Policy": f'"default";q={cfg.quota_requests};w={cfg.quota_window_s:g}',
            "RateLimit": f'"default";r={remaining};t={max(0, math.ceil(reset_s))}',
        }

    def _bucket_check(self, label: str, *, consume: bool) -> tuple[bool, dict[str, str]]:
        """Token-bucket quota (GCRA): rate quota_requests/quota_window_s, burst quota_burst."""
        cfg = self.config
        assert cfg.quota_requests and cfg.quota_burst
        interval = cfg.quota_window_s / cfg.quota_requests
        tolerance = cfg.quota_burst * interval
        now = time.monotonic()
        with self._lock:
            tat = max(self._buckets.get(label, now), now)
            allowed = tat + interval - now <= tolerance + 1e-9
            if allowed and consume:
                tat += interval
                self._buckets[label] = tat
            elif not allowed and consume:
                self._rejected_429 += 1
        remaining = max(0, math.floor((tolerance - (tat - now)) / interval + 1e-9))
        headers = {
            "X-RateLimit-Limit": str(cfg.quota_requests),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(max(0, math.ceil(tat - now))),  # until the bucket is full
            **self._policy_headers(remaining, tat - now),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(tat + interval - tolerance - now)))
        return allowed, headers

    def _quota_check(self, label: str, *, consume: bool) -> tuple[bool, dict[str, str]]:
        """Fixed-window quota. Returns (allowed, rate-limit headers). Caller holds no lock."""
        limit = self.config.quota_requests
        if limit is None:
            return True, {}
        if self.config.quota_burst is not None:
            return self._bucket_check(label, consume=consume)
        window_s = self.config.quota_window_s
        now = time.monotonic()
        with self._lock:
            state = self._quota.get(label)
            if state is not None and now >= state[0] + window_s:
                state = None
            if state is None:
                if consume:
                    state = self._quota[label] = [now, 0.0]
                used, reset_in = 0, window_s
            else:
                used, reset_in = int(state[1]), state[0] + window_s - now
            allowed = used < limit
            if allowed and consume and state is not None:
                state[1] += 1
                used += 1
            elif not allowed and consume:
                self._rejected_429 += 1
        reset_s = max(1, math.ceil(reset_in))
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(reset_s),
            **(self._policy_headers(max(0, limit - used), reset_in) if limit else {}),
        }
        if not allowed:
            headers["Retry-After"] = str(reset_s)
        return allowed, headers

    def _handle_v1(self, path: str, query: dict[str, list[str]], headers: Any) -> _Response:
        label = self._authenticate(query, headers)[1]
        resp = self._answer_v1(path, query, headers)
        with self._lock:
            self._log.append((time.time(), path, resp.status, label))
            if resp.status == 200:
                self._accepted += 1
        return resp

    def _answer_v1(self, path: str, query: dict[str, list[str]], headers: Any) -> _Response:
        authorised, label = self._authenticate(query, headers)
        with self._lock:
            self._requests += 1
            self._by_path[path] = self._by_path.get(path, 0) + 1
            self._by_key[label] = self._by_key.get(label, 0) + 1
            latency_ms = self._latency_ms
        if latency_ms:
            time.sleep(latency_ms / 1000.0)  # outside the lock: concurrent requests overlap
        if not authorised:
            # Unauthenticated requests never touch a quota window, but still report it.
            _, rl_headers = self._quota_check(label, consume=False)
            return _Response(401, _dumps({"error": "invalid or missing api key"}), rl_headers)
        allowed, rl_headers = self._quota_check(label, consume=True)
        if not allowed:
            retry_after = int(rl_headers["Retry-After"])
            body = _dumps({"error": "rate limit exceeded", "retry_after": retry_after})
            return _Response(429, body, rl_headers)
        try:
            if path == "/v1/latest":
                resp = _Response(200, self._latest_body(query))
            else:
                resp = self._bars_response(query)
        except _BadRequest as exc:
            resp = _Response(400, _dumps({"error": str(exc)}))
        resp.headers.update(rl_headers)
        return resp

    def _latest_body(self, query: dict[str, list[str]]) -> bytes:
        symbol = _require_symbol(query)
        minute = _floor_minute(self._now()) - 1  # open time of the last closed minute
        if not _MIN_MINUTE <= minute < _MAX_MINUTE:
            raise _BadRequest("current time outside supported range")
        day, offset = divmod(minute, _MINUTES_PER_DAY)
        bar = _day_bars(symbol, self.config.seed, day).slice(offset, offset + 1)[0]
        return _dumps({"symbol": symbol, "t": _minute_iso(minute), "c": bar[3]})

    def _bars_response(self, query: dict[str, list[str]]) -> _Response:
        symbol = _require_symbol(query)
        raw_end = _first(query, "end")
        if raw_end is None:
            raise _BadRequest("missing end")
        end = _parse_minute_param(raw_end, "end")
        raw_cursor = _first(query, "cursor")
        if raw_cursor is not None:
            start = _decode_cursor(raw_cursor)
            if start >= end:
                raise _BadRequest("invalid cursor")
        else:
            raw_start = _first(query, "start")
            if raw_start is None:
                raise _BadRequest("missing start")
            start = _parse_minute_param(raw_start, "start")
            if start >= end:
                raise _BadRequest("invalid start: must be before end")
        limit_max = self.config.page_limit_max
        raw_limit = _first(query, "limit")
        if raw_limit is None:
            limit = limit_max
        else:
            if len(raw_limit) > 12 or not re.fullmatch(r"-?\d+", raw_limit):
                raise _BadRequest("invalid limit: must be an integer")
            limit = int(raw_limit)
            if limit < 1:
                raise _BadRequest("invalid limit: must be >= 1")
            limit = min(limit, limit_max)

        # Only closed minutes exist.
        clipped_end = min(end, _floor_minute(self._now()))
        if start >= clipped_end:
            page_end, bars, next_cursor = start, [], None
        else:
            page_end = min(clipped_end, start + limit)
            bars = [
                _bar_dict(m, b) for m, b in _iter_bars(symbol, self.config.seed, start, page_end)
            ]
            next_cursor = _encode_cursor(page_end) if page_end < clipped_end else None

        fault = self._pick_fault()
        if fault == "rate_limited":
            wait = self.config.fault_retry_after_s
            with self._lock:
                self._rejected_429 += 1
            return _Response(
                429,
                _dumps({"error": "rate limit exceeded", "retry_after": wait}),
                {"Retry-After": str(wait)},
            )
        if fault == "server_error":
            return _Response(503, _dumps({"error": "upstream unavailable"}))
        if fault == "throttle_body":
            throttled = {
                "status": "error",
                "code": "THROTTLED",
                "message": "Too many requests, slow down",
                "retry_after": 1,
            }
            return _Response(200, _dumps(throttled))
        if fault == "schema_drift":
            bars = [
                {
                    "t": b["t"],
                    "o": b["o"],
                    "h": b["h"],
                    "l": b["l"],
                    "close": b["c"],
                    "v": str(b["v"]),
                    "n": b["n"],
                    "vw": b["vw"],
                    "x": 1,
                }
                for b in bars
            ]
        payload = {
            "symbol": symbol,
            "interval": "1m",
            "window": {"start": _minute_iso(start), "end": _minute_iso(page_end)},
            "bars": bars,
            "next_cursor": next_cursor,
        }
        body = _dumps(payload)
        if fault == "malformed_json":
            return _Response(200, body[:-10] + b'}{"')
        return _Response(200, body, truncate=fault == "truncated_body")

    def _pick_fault(self) -> str | None:
        with self._lock:
            for name in FAULT_NAMES:
                spec = self._faults.get(name)
                if spec is None or spec.rate <= 0.0:
                    continue
                if spec.count is not None and self._fault_used[name] >= spec.count:
                    continue
                if self._fault_rng.random() < spec.rate:
                    self._fault_used[name] += 1
                    self._faults_injected[name] += 1
                    return name
        return None


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number") from None
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError("must be within 0..1")
    return rate


def _iso_arg(value: str) -> datetime:
    try:
        return _parse_iso(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected ISO-8601 UTC, e.g. 2026-01-05T00:00:00Z"
        ) from None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fin-assets simulator", description="Deterministic fake market-data API."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 = ephemeral")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accepted API key (repeatable); none = no auth",
    )
    p.add_argument("--quota", type=int, default=None, help="requests per key per window")
    p.add_argument("--quota-window", type=float, default=1.0, help="quota window seconds")
    p.add_argument(
        "--quota-burst",
        type=int,
        default=None,
        help="token-bucket quota: at most this many back to back (default: fixed window)",
    )
    p.add_argument("--page-limit", type=int, default=1000, help="max bars per page")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--now", type=_iso_arg, default=None, help="fixed 'now' (UTC ISO-8601)")
    p.add_argument(
        "--clock-lag-hours",
        type=float,
        default=0.0,
        help="start this many hours behind the wall clock (a provider publishing late)",
    )
    p.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="while lagging, the clock runs this many times faster than real time",
    )
    p.add_argument("--latency-ms", type=int, default=0)
    for flag, name in (
        ("--rate-limited-rate", "rate_limited"),
        ("--error-rate", "server_error"),
        ("--truncate-rate", "truncated_body"),
        ("--malformed-rate", "malformed_json"),
        ("--throttle-rate", "throttle_body"),
        ("--drift-rate", "schema_drift"),
    ):
        p.add_argument(flag, type=_rate, default=0.0, help=f"probability of {name}")
    return p


def serve_forever_from_args(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground until SIGINT/SIGTERM; returns the exit code."""
    args = _build_parser().parse_args(argv)
    rates = {
        "rate_limited": args.rate_limited_rate,
        "server_error": args.error_rate,
        "truncated_body": args.truncate_rate,
        "malformed_json": args.malformed_rate,
        "throttle_body": args.throttle_rate,
        "schema_drift": args.drift_rate,
    }
    try:
        config = SimulatorConfig(
            host=args.host,
            port=args.port,
            api_keys=frozenset(args.api_keys) if args.api_keys else None,
            quota_requests=args.quota,
            quota_window_s=args.quota_window,
            quota_burst=args.quota_burst,
            page_limit_max=args.page_limit,
            seed=args.seed,
            now=args.now,
            clock_lag_s=args.clock_lag_hours * 3600.0,
            clock_speed=args.clock_speed,
            latency_ms=args.latency_ms,
            faults={name: FaultSpec(rate=r) for name, r in rates.items() if r > 0},
        )
        sim = MarketSimulator(config).start()
    except (OSError, ValueError) as exc:
        print(f"simulator failed to start: {exc}", file=sys.stderr, flush=True)
        return 1

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    # signal.signal only works on the main thread; elsewhere the caller must stop us.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    print(f"simulator listening on {sim.url}", flush=True)
    try:
        # Timed waits so signal handlers get a chance to run promptly.
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
