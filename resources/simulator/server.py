"""The simulator's HTTP API: ``/v1/bars`` and ``/v1/latest``, Massive's corporate-actions
routes, and the ``/_sim/*`` admin API.

``MarketSimulator`` stands in for a rate-limited vendor API in tests and in the demo. It is a
``ThreadingHTTPServer`` on loopback (``resources/simulator/loopback.py``), so the client code
under test exercises real sockets, real status codes and real protocol failures (truncated
bodies, bad JSON) instead of mocks. Its data comes from ``data.py``, its per-key quota from
``quota.py`` and its injected failures from ``faults.py``.

It serves several markets at once: ``SimulatorConfig.calendars`` puts symbols on exchange
calendars (``{"AAPL": "XNYS", "VOD.L": "XLON"}``); those have bars only in session minutes
(less a few quiet ones), every other symbol trades 24/7. A page's ``window`` still covers the
requested minutes up to the clock, closed hours included (they simply hold no bars), and its
``limit`` counts bars, so a page of an equities symbol is not spent on the night.

A calendar symbol is an equity with corporate actions (``actions.py``): ``/v1/bars`` serves its
bars unadjusted (what traded; prices jump at a split) unless asked ``adjusted=true`` (split-
adjusted as of the server's clock, as Massive's aggregates default to), and
``GET /stocks/v1/splits`` and ``GET /stocks/v1/dividends`` list its actions in Massive's 2026
format. Those two are authenticated, counted, throttled and logged like ``/v1``; a 400 there
is Massive's error body (``{"status": "ERROR", "request_id", "error"}``).

Admin API (no key needed): ``GET /_sim/stats``, ``GET /_sim/requests`` (the request log),
``GET /_sim/health``, ``POST /_sim/reset`` (also forgets announced actions), ``POST
/_sim/faults`` (``{"faults": {name: {"rate", "count"}}, "latency_ms"}``), ``POST
/_sim/corporate_actions`` (``{"splits": [...], "dividends": [...]}``, see
``actions.parse_announcement``: actions published after the fact).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from resources.simulator.actions import (
    ACTIONS_PATHS,
    NOTHING_ANNOUNCED,
    Announced,
    InvalidQuery,
    actions_page,
    massive_error,
    parse_actions_query,
    parse_announcement,
)
from resources.simulator.data import (
    MAX_MINUTE,
    MIN_MINUTE,
    as_utc,
    bar_at,
    bars_page,
    checked_calendars,
    floor_minute,
    last_bar_minute,
    minute_iso,
)
from resources.simulator.faults import (
    FAULT_NAMES,
    THROTTLED_BODY,
    FaultInjector,
    FaultSpec,
    check_faults,
    drifted,
    malformed,
)
from resources.simulator.loopback import LoopbackHTTPServer, LoopbackService, QuietHandler
from resources.simulator.protocol import (
    BadRequest,
    Query,
    decode_cursor,
    dumps,
    encode_cursor,
    first,
    parse_flag,
    parse_limit,
    parse_minute_param,
    require_symbol,
)
from resources.simulator.quota import ServerQuota

__all__ = ["MarketSimulator", "SimulatorConfig"]

logger = logging.getLogger(__name__)

_MAX_BODY_BYTES = 64 * 1024
_ADMIN_PATHS = (
    "/_sim/stats",
    "/_sim/health",
    "/_sim/reset",
    "/_sim/faults",
    "/_sim/requests",
    "/_sim/corporate_actions",
)
_API_PATHS = ("/v1/bars", "/v1/latest", *ACTIONS_PATHS)


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
    latency_ms: int = 0  # added to every API response (/v1 and /stocks/v1)
    faults: dict[str, FaultSpec] = field(default_factory=dict)
    # symbol -> exchange_calendars name ("XNYS", "XLON", ...): the symbol has bars only in
    # that calendar's sessions, and corporate actions. A symbol not listed trades 24/7.
    calendars: Mapping[str, str] = field(default_factory=dict)


def _key_label(key: str) -> str:
    # Stats identify keys by a short digest so the key itself never leaves the process.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def _check_latency(latency_ms: int) -> None:
    if isinstance(latency_ms, bool) or not 0 <= latency_ms <= 60_000:
        raise ValueError("latency_ms must be within 0..60000")


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False  # send full Content-Length, write half, drop the connection


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, dumps({"error": message}), headers or {})


class _Handler(QuietHandler):
    server: LoopbackHTTPServer[MarketSimulator]
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
            resp = _error(400, "unsupported or oversized request body")
        else:
            try:
                resp = self.server.owner.handle(method, self.path, self.headers, body)
            except Exception:
                logger.exception("simulator failed handling %s %s", method, path)
                resp = _error(500, "internal simulator error")
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


class MarketSimulator(LoopbackService):
    """A loopback market-data API; ``start()`` serves it from a daemon thread."""

    kind = "simulator"
    handler = _Handler

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        cfg = self.config
        super().__init__(cfg.host, cfg.port)
        if cfg.page_limit_max < 1:
            raise ValueError("page_limit_max must be >= 1")
        self._quota = ServerQuota(
            requests=cfg.quota_requests, window_s=cfg.quota_window_s, burst=cfg.quota_burst
        )
        self._faults = FaultInjector(cfg.faults, seed=cfg.seed)
        _check_latency(cfg.latency_ms)
        self._calendars = checked_calendars(cfg.calendars)
        self._api_keys = tuple(k.encode("utf-8") for k in cfg.api_keys or ())
        self._lock = threading.Lock()
        # Mutable state, all guarded by self._lock.
        self._latency_ms = cfg.latency_ms
        # Immutable, swapped whole: a request reads one consistent set.
        self._announced: Announced = NOTHING_ANNOUNCED
        # A restarted simulator given the same anchor continues the same clock.
        self._clock_anchor = cfg.clock_anchor if cfg.clock_anchor is not None else time.time()
        self._clear_stats()

    # -- control -----------------------------------------------------------------------

    def set_faults(self, faults: dict[str, FaultSpec], *, latency_ms: int | None = None) -> None:
        """Replace the fault set (and budgets); optionally change latency."""
        check_faults(faults)
        if latency_ms is not None:
            _check_latency(latency_ms)
        self._faults.replace(faults)
        if latency_ms is not None:
            with self._lock:
                self._latency_ms = latency_ms

    def reset(self) -> None:
        """Clear stats, faults, latency, quota windows and announced corporate actions;
        reseed the fault RNG."""
        with self._lock:
            self._clear_stats()
            self._latency_ms = 0
            self._announced = NOTHING_ANNOUNCED
        self._faults.reset()
        self._quota.reset()

    def announce(self, payload: Any) -> Announced:
        """Publish corporate actions after the fact, as ``POST /_sim/corporate_actions`` does:
        ``payload`` as ``actions.parse_announcement`` reads it (ValueError naming the field).
        A split changes the bars from its execution date on, never before. Returns every
        action announced so far."""
        added = parse_announcement(payload, calendars=self._calendars)
        with self._lock:
            self._announced = self._announced.plus(added)
            return self._announced

    def announced(self) -> Announced:
        with self._lock:
            return self._announced

    def _clear_stats(self) -> None:
        self._requests = 0
        self._by_path: dict[str, int] = {}
        self._by_key: dict[str, int] = {}
        self._rejected_429 = 0
        self._accepted = 0
        # (epoch seconds, path, status, key label) of recent API requests, for tests and
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
                "faults_injected": self._faults.injected(),
            }

    def request_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"t": t, "path": p, "status": s, "key": k} for t, p, s, k in self._log]

    # -- request handling --------------------------------------------------------------

    def _now(self) -> datetime:
        now = self.config.now
        if now is not None:
            return as_utc(now)
        real = time.time()
        if not self.config.clock_lag_s:
            return datetime.fromtimestamp(real, UTC)
        elapsed = real - self._clock_anchor
        lag = max(0.0, self.config.clock_lag_s - elapsed * (self.config.clock_speed - 1.0))
        return datetime.fromtimestamp(real - lag, UTC)

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> _Response:
        split = urlsplit(target)
        path = split.path
        try:
            query = parse_qs(split.query, keep_blank_values=True, max_num_fields=64)
        except ValueError:
            return _error(400, "too many query parameters")
        if path.startswith("/_sim/"):
            return self._handle_admin(method, path, body)
        if path in _API_PATHS:
            if method != "GET":
                return _error(405, "method not allowed", {"Allow": "GET"})
            return self._handle_api(path, query, headers)
        with self._lock:
            self._requests += 1
            # Unknown paths share one bucket: arbitrary client paths must not become keys.
            self._by_path["other"] = self._by_path.get("other", 0) + 1
        return _error(404, "not found")

    def _authenticate(self, query: Query, headers: Any) -> tuple[bool, str]:
        """(authorised, stats/quota label). Never returns or logs the key itself."""
        key = first(query, "apikey")
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

    def _handle_api(self, path: str, query: Query, headers: Any) -> _Response:
        label = self._authenticate(query, headers)[1]
        resp = self._answer_api(path, query, headers)
        with self._lock:
            self._log.append((time.time(), path, resp.status, label))
            if resp.status == 200:
                self._accepted += 1
        return resp

    def _answer_api(self, path: str, query: Query, headers: Any) -> _Response:
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
            rl_headers = self._quota.check(label, consume=False).headers
            return _error(401, "invalid or missing api key", rl_headers)
        decision = self._quota.check(label, consume=True)
        rl_headers = decision.headers
        if not decision.allowed:
            with self._lock:
                self._rejected_429 += 1
            retry_after = int(rl_headers["Retry-After"])
            body = dumps({"error": "rate limit exceeded", "retry_after": retry_after})
            return _Response(429, body, rl_headers)
        try:
            if path == "/v1/latest":
                resp = _Response(200, self._latest_body(query))
            elif path == "/v1/bars":
                resp = self._bars_response(query)
            else:
                resp = self._actions_response(path, query)
        except BadRequest as exc:
            resp = _error(400, str(exc))
        resp.headers.update(rl_headers)
        return resp

    def _actions_response(self, path: str, query: Query) -> _Response:
        """Massive's splits or dividends of the calendar symbols asked for, as of the clock."""
        try:
            actions_query = parse_actions_query(path, query)
        except InvalidQuery as exc:
            return _Response(400, dumps(massive_error(str(exc))))
        now = floor_minute(self._now())
        if not MIN_MINUTE < now <= MAX_MINUTE:
            raise BadRequest("current time outside supported range")
        body = actions_page(
            actions_query,
            universe=self._calendars,
            seed=self.config.seed,
            now=now,
            base_url=self.url,
            announced=self.announced(),
        )
        return _Response(200, dumps(body))

    def _latest_body(self, query: Query) -> bytes:
        symbol = require_symbol(query)
        now = floor_minute(self._now())
        if not MIN_MINUTE < now <= MAX_MINUTE:
            raise BadRequest("current time outside supported range")
        # Open time of the last closed minute with a bar: for a symbol on a calendar, the last
        # session minute that traded (after the close, over a weekend: the session's last).
        calendar = self._calendars.get(symbol)
        minute = last_bar_minute(symbol, self.config.seed, now, calendar=calendar)
        if minute is None:
            raise BadRequest(f"no session of calendar {calendar} has opened yet")
        bar = bar_at(
            symbol, self.config.seed, minute, calendar=calendar, announced=self.announced()
        )
        return dumps({"symbol": symbol, "t": minute_iso(minute), "c": bar[3]})

    def _bars_response(self, query: Query) -> _Response:
        symbol = require_symbol(query)
        raw_end = first(query, "end")
        if raw_end is None:
            raise BadRequest("missing end")
        end = parse_minute_param(raw_end, "end")
        raw_cursor = first(query, "cursor")
        if raw_cursor is not None:
            start = decode_cursor(raw_cursor)
            if start >= end:
                raise BadRequest("invalid cursor")
        else:
            raw_start = first(query, "start")
            if raw_start is None:
                raise BadRequest("missing start")
            start = parse_minute_param(raw_start, "start")
            if start >= end:
                raise BadRequest("invalid start: must be before end")
        limit = parse_limit(first(query, "limit"), self.config.page_limit_max)
        # Our own dialect serves what traded; split-adjusted as of now only when asked.
        adjusted = parse_flag(first(query, "adjusted"), "adjusted", default=False)

        # Only closed minutes exist.
        now = floor_minute(self._now())
        clipped_end = min(end, now)
        bars: list[dict[str, Any]]
        if start >= clipped_end:
            page_end, bars, next_cursor = start, [], None
        else:
            bars, page_end = bars_page(
                symbol,
                self.config.seed,
                start,
                clipped_end,
                limit,
                calendar=self._calendars.get(symbol),
                announced=self.announced(),
                adjusted_at=now if adjusted else None,
            )
            next_cursor = encode_cursor(page_end) if page_end < clipped_end else None

        fault = self._faults.pick()
        if fault == "rate_limited":
            wait = self.config.fault_retry_after_s
            with self._lock:
                self._rejected_429 += 1
            return _Response(
                429,
                dumps({"error": "rate limit exceeded", "retry_after": wait}),
                {"Retry-After": str(wait)},
            )
        if fault == "server_error":
            return _error(503, "upstream unavailable")
        if fault == "throttle_body":
            return _Response(200, dumps(THROTTLED_BODY))
        if fault == "schema_drift":
            bars = drifted(bars)
        payload = {
            "symbol": symbol,
            "interval": "1m",
            "window": {"start": minute_iso(start), "end": minute_iso(page_end)},
            "bars": bars,
            "next_cursor": next_cursor,
        }
        body = dumps(payload)
        if fault == "malformed_json":
            return _Response(200, malformed(body))
        return _Response(200, body, truncate=fault == "truncated_body")

    # -- admin API ---------------------------------------------------------------------

    def _handle_admin(self, method: str, path: str, body: bytes) -> _Response:
        if path == "/_sim/stats" and method == "GET":
            return _Response(200, dumps(self.stats()))
        if path == "/_sim/requests" and method == "GET":
            return _Response(200, dumps({"requests": self.request_log()}))
        if path == "/_sim/health" and method == "GET":
            return _Response(200, dumps({"status": "ok"}))
        if path == "/_sim/reset" and method == "POST":
            self.reset()
            return _Response(200, dumps({"status": "reset"}))
        if path == "/_sim/faults" and method == "POST":
            return self._post_faults(body)
        if path == "/_sim/corporate_actions" and method == "POST":
            return self._post_corporate_actions(body)
        if path in _ADMIN_PATHS:
            return _error(405, "method not allowed")
        return _error(404, "not found")

    def _post_corporate_actions(self, body: bytes) -> _Response:
        try:
            payload = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body must be JSON")
        try:
            announced = self.announce(payload)
        except ValueError as exc:
            return _error(400, str(exc))
        return _Response(
            200, dumps({"splits": len(announced.splits), "dividends": len(announced.dividends)})
        )

    def _post_faults(self, body: bytes) -> _Response:
        def bad(msg: str) -> _Response:
            return _error(400, msg)

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
                400, dumps({"error": "unknown fault name", "allowed": list(FAULT_NAMES)})
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
                _check_latency(latency)
            except ValueError:
                return bad("latency_ms must be within 0..60000")
        self.set_faults(faults, latency_ms=latency)
        current = {n: {"rate": s.rate, "count": s.count} for n, s in self._faults.current().items()}
        with self._lock:
            body_out = {"faults": current, "latency_ms": self._latency_ms}
        return _Response(200, dumps(body_out))
