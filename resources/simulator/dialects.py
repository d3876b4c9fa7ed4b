"""The simulator's ``/v1/latest`` behind other servers' rate-limit dialects, for the
quota-learning benchmark (``benchmarks/quota_learning.py``) and its tests.

The plain simulator speaks one dialect (``quota.py``: every header there is). Real providers
speak others, and each is written here from its public documentation:

- ``binance``: REQUEST_WEIGHT per IP over calendar-aligned intervals ("a 1 MINUTE interval
  starts every minute"), every response carrying
  ``X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter)``; over the limit a 429 with Retry-After
  ("the number of seconds required to wait ... to prevent a ban"), and a client that fails to
  back off after a 429 is banned: 418 with Retry-After until the ban is over
  (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits). Rejected
  requests cost no weight. The interval letter follows the window (``-3S`` for 3 s).
  ``GET /api/v3/exchangeInfo`` (weight 20, counted like any request) publishes the limit in
  ``rateLimits`` as the spot docs list it (``REQUEST_WEIGHT``, interval, intervalNum, limit).
- ``ietf``: draft-ietf-httpapi-ratelimit-headers-10: several policies in ``RateLimit-Policy``
  (``"burst";q=10;w=1, "sustained";q=24;w=4``), ``RateLimit`` with one service limit per
  policy (``r`` remaining, ``t`` seconds until more quota); each policy a fixed window aligned
  to the clock; over any of them a 429 whose ``RateLimit`` says ``r=0;t=...`` and no
  Retry-After (the draft leaves it optional).
- ``xratelimit``: GitHub's REST API: ``x-ratelimit-limit``, ``-remaining``, ``-used``,
  ``-reset`` ("the time at which the current rate limit window resets in UTC epoch seconds");
  the window starts with the first request after the last one ended (whole seconds here, so
  the epoch reset is exact); over it a 429 with remaining 0 and no Retry-After ("you should
  not retry your request until after the time specified by the x-ratelimit-reset header",
  https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api). It counts
  requests, whatever the client thinks a request weighs.
- ``none``: a fixed window aligned to the clock and no quota header at all; over it a 429
  with Retry-After (delay-seconds, RFC 9110) and nothing else.
- ``headerless``: Polygon's free plan: N calls per rolling window, over it a 429 with no
  Retry-After and no rate-limit header at all (https://polygon.io/pricing, the 429 body:
  "You've exceeded the maximum requests per minute").

Run one: ``python -m resources.simulator.dialects --dialect binance --limit 120 --window 3``
(prints ``dialect simulator listening on <url>``); ``GET /_sim/requests`` is its request log.
"""

from __future__ import annotations

import argparse
import collections
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from resources.providers.base import ApiRequest, ProviderAdapter
from resources.providers.binance import (
    EXCHANGE_INFO_PATH,
    EXCHANGE_INFO_WEIGHT,
    KLINES_WEIGHT,
    BinanceAdapter,
    used_weight_signal,
)
from resources.ratelimit.headers import RateLimitSignal
from resources.simulator.adapter import SimulatorAdapter
from resources.simulator.data import bar_at, floor_minute, minute_iso
from resources.simulator.loopback import LoopbackHTTPServer, LoopbackService, QuietHandler
from resources.simulator.protocol import dumps

__all__ = [
    "DIALECTS",
    "DialectConfig",
    "DialectSimulator",
    "Policy",
    "dialect_adapter",
]

DIALECTS = ("binance", "ietf", "xratelimit", "none", "headerless")
LATEST_PATH = "/v1/latest"
POLYGON_429 = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your "
    "subscription to continue. https://polygon.io/pricing"
)


@dataclass(frozen=True)
class Policy:
    """``limit`` units per ``window_s`` seconds, named as the IETF draft names policies."""

    name: str
    limit: int
    window_s: int


@dataclass
class DialectConfig:
    dialect: str
    # The quota (the first policy binds in every dialect but ietf, which enforces them all).
    policies: tuple[Policy, ...]
    host: str = "127.0.0.1"
    port: int = 0
    request_weight: int = 1  # binance: what /v1/latest weighs
    ban_s: float = 10.0  # binance: the first ban (the docs: "from 2 minutes to 3 days")
    seed: int = 0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}: expected one of {DIALECTS}")
        if not self.policies or any(p.limit < 1 or p.window_s < 1 for p in self.policies):
            raise ValueError("a dialect needs at least one policy of >= 1 unit per >= 1 s")
        if self.dialect == "binance" and self.request_weight < 1:
            raise ValueError("request_weight must be >= 1")


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class _Handler(QuietHandler):
    server: LoopbackHTTPServer[DialectSimulator]
    server_version = "DialectSim/1.0"

    def do_GET(self) -> None:  # noqa: N802
        self._reply(self.server.owner.answer("GET", self.path))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 65536:
            self.rfile.read(length)
        self._reply(self.server.owner.answer("POST", self.path))

    def _reply(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)


class DialectSimulator(LoopbackService):
    """``/v1/latest`` with one dialect's quota; ``/_sim/requests``, ``/_sim/stats`` and
    ``POST /_sim/reset`` as the simulator has them. One quota for every client (Binance counts
    per IP, and every loopback client shares one)."""

    kind = "dialect simulator"
    handler = _Handler

    def __init__(self, config: DialectConfig) -> None:
        super().__init__(config.host, config.port)
        self.config = config
        self._clock = config.clock
        self._lock = threading.Lock()
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._used: dict[tuple[str, int], int] = {}  # (policy, window index) -> units
            self._calls: collections.deque[float] = collections.deque()  # headerless log
            self._window_end = 0.0  # xratelimit: the current window's reset epoch
            self._window_used = 0
            self._no_send_until = 0.0  # binance: a 429's Retry-After
            self._banned_until = 0.0
            self._log: collections.deque[tuple[float, int, str]] = collections.deque(maxlen=200_000)

    def request_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"t": t, "path": path, "status": s} for t, s, path in self._log]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            statuses = collections.Counter(s for _, s, _ in self._log)
        return {
            "requests": sum(statuses.values()),
            "accepted": statuses[200],
            "rejected_429": statuses[429],
            "banned_418": statuses[418],
        }

    # -- requests ------------------------------------------------------------------------
    def answer(self, method: str, target: str) -> _Answer:
        split = urlsplit(target)
        if split.path == "/_sim/requests" and method == "GET":
            return _Answer(200, {}, dumps({"requests": self.request_log()}))
        if split.path == "/_sim/stats" and method == "GET":
            return _Answer(200, {}, dumps(self.stats()))
        if split.path == "/_sim/health" and method == "GET":
            return _Answer(200, {}, dumps({"status": "ok"}))
        if split.path == "/_sim/reset" and method == "POST":
            self.reset()
            return _Answer(200, {}, dumps({"status": "reset"}))
        if (
            split.path == EXCHANGE_INFO_PATH
            and method == "GET"
            and self.config.dialect == "binance"
        ):
            with self._lock:
                now = self._clock()
                status, headers, error = self._admit_binance(now, weight=EXCHANGE_INFO_WEIGHT)
                self._log.append((now, status, EXCHANGE_INFO_PATH))
            return _Answer(
                status, headers, dumps(error if status != 200 else self._exchange_info())
            )
        if split.path != LATEST_PATH or method != "GET":
            return _Answer(404, {}, dumps({"error": "not found"}))
        symbol = (parse_qs(split.query).get("symbol") or ["AAPL"])[0]
        with self._lock:
            now = self._clock()
            status, headers, error = self._admit(now)
            self._log.append((now, status, LATEST_PATH))
        if status != 200:
            return _Answer(status, headers, dumps(error))
        minute = floor_minute(datetime.fromtimestamp(now, UTC)) - 1
        body = dumps({"symbol": symbol, "t": minute_iso(minute), "c": bar_at(symbol, 0, minute)[3]})
        return _Answer(200, headers, body)

    def _admit(self, now: float) -> tuple[int, dict[str, str], Any]:
        admit = getattr(self, f"_admit_{self.config.dialect}")
        result: tuple[int, dict[str, str], Any] = admit(now)
        return result

    def _fixed(self, policy: Policy, now: float) -> tuple[int, float]:
        """(units used, seconds to the end) of ``policy``'s clock-aligned window at ``now``."""
        index = math.floor(now / policy.window_s)
        return self._used.get((policy.name, index), 0), (index + 1) * policy.window_s - now

    def _spend(self, policy: Policy, now: float, units: int) -> None:
        key = (policy.name, math.floor(now / policy.window_s))
        self._used[key] = self._used.get(key, 0) + units

    # binance ------------------------------------------------------------------------------
    def _exchange_info(self) -> dict[str, Any]:
        """``GET /api/v3/exchangeInfo``'s ``rateLimits`` as the spot docs list them: the
        REQUEST_WEIGHT limit enforced here, beside the documented ORDERS and RAW_REQUESTS."""
        policy = self.config.policies[0]
        interval, number = _limit_interval(policy.window_s)
        return {
            "timezone": "UTC",
            "serverTime": int(self._clock() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": interval,
                    "intervalNum": number,
                    "limit": policy.limit,
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

    def _admit_binance(
        self, now: float, *, weight: int | None = None
    ) -> tuple[int, dict[str, str], Any]:
        policy = self.config.policies[0]
        weight = self.config.request_weight if weight is None else weight
        used, left = self._fixed(policy, now)
        header = f"X-MBX-USED-WEIGHT-{_interval(policy.window_s)}"
        if now < self._banned_until or now < self._no_send_until:
            # "failing to back off after receiving 429s will result in an automated IP ban"
            if now >= self._banned_until:
                self._banned_until = now + self.config.ban_s
            wait = math.ceil(self._banned_until - now)
            until_ms = int(self._banned_until * 1000)
            return (
                418,
                {header: str(used), "Retry-After": str(wait)},
                {
                    "code": -1003,
                    "msg": f"Way too much request weight used; IP banned until "
                    f"{until_ms}. Please use WebSocket Streams for live updates to avoid bans.",
                },
            )
        if used + weight > policy.limit:
            wait = max(1, math.ceil(left))
            self._no_send_until = now + left
            return (
                429,
                {header: str(used), "Retry-After": str(wait)},
                {
                    "code": -1003,
                    "msg": f"Too many requests; current limit of IP(127.0.0.1) is "
                    f"{policy.limit} requests per {_interval(policy.window_s)}.",
                },
            )
        self._spend(policy, now, weight)
        return 200, {header: str(used + weight)}, None

    # ietf ---------------------------------------------------------------------------------
    def _admit_ietf(self, now: float) -> tuple[int, dict[str, str], Any]:
        policies = self.config.policies
        states = [self._fixed(p, now) for p in policies]
        over = [p.name for p, (used, _) in zip(policies, states, strict=True) if used >= p.limit]
        if not over:
            for policy in policies:
                self._spend(policy, now, 1)
            states = [self._fixed(p, now) for p in policies]
        headers = {
            "RateLimit-Policy": ", ".join(
                f'"{p.name}";q={p.limit};w={p.window_s}' for p in policies
            ),
            "RateLimit": ", ".join(
                f'"{p.name}";r={max(0, p.limit - used)};t={max(1, math.ceil(left))}'
                for p, (used, left) in zip(policies, states, strict=True)
            ),
        }
        if over:
            problem = {
                "type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
                "title": "Request cannot be satisfied as assigned quota has been exceeded",
                "violated-policies": over,
            }
            return 429, {**headers, "Content-Type": "application/problem+json"}, problem
        return 200, headers, None

    # xratelimit ---------------------------------------------------------------------------
    def _admit_xratelimit(self, now: float) -> tuple[int, dict[str, str], Any]:
        policy = self.config.policies[0]
        if now >= self._window_end:
            # GitHub: a window begins with the first request after the last one ended.
            self._window_end = float(math.floor(now) + policy.window_s)
            self._window_used = 0
        allowed = self._window_used < policy.limit
        if allowed:
            self._window_used += 1
        headers = {
            "x-ratelimit-limit": str(policy.limit),
            "x-ratelimit-remaining": str(policy.limit - self._window_used),
            "x-ratelimit-used": str(self._window_used),
            "x-ratelimit-reset": str(int(self._window_end)),
            "x-ratelimit-resource": "core",
        }
        if not allowed:
            return 429, headers, {"message": "API rate limit exceeded", "status": "429"}
        return 200, headers, None

    # none ---------------------------------------------------------------------------------
    def _admit_none(self, now: float) -> tuple[int, dict[str, str], Any]:
        policy = self.config.policies[0]
        used, left = self._fixed(policy, now)
        if used >= policy.limit:
            return 429, {"Retry-After": str(max(1, math.ceil(left)))}, {"error": "slow down"}
        self._spend(policy, now, 1)
        return 200, {}, None

    # headerless ---------------------------------------------------------------------------
    def _admit_headerless(self, now: float) -> tuple[int, dict[str, str], Any]:
        policy = self.config.policies[0]
        while self._calls and self._calls[0] <= now - policy.window_s:
            self._calls.popleft()
        if len(self._calls) >= policy.limit:
            return 429, {}, {"status": "ERROR", "request_id": "0", "error": POLYGON_429}
        self._calls.append(now)
        return 200, {}, None


def _limit_interval(window_s: int) -> tuple[str, int]:
    """exchangeInfo's (interval, intervalNum) for a window: 60 -> ("MINUTE", 1)."""
    for seconds, name in ((86400, "DAY"), (3600, "HOUR"), (60, "MINUTE")):
        if window_s % seconds == 0:
            return name, window_s // seconds
    return "SECOND", window_s


def _interval(window_s: int) -> str:
    """Binance's (intervalNum)(intervalLetter) for a window: 60 -> 1M, 3 -> 3S."""
    for seconds, letter in ((86400, "D"), (3600, "H"), (60, "M")):
        if window_s % seconds == 0:
            return f"{window_s // seconds}{letter}"
    return f"{window_s}S"


# -- the client side of each dialect ----------------------------------------------------------
class _BinanceDialect(SimulatorAdapter):
    """The simulator's endpoint with Binance's quota: weight, its used-weight header, 418."""

    quota_unit = BinanceAdapter.quota_unit
    throttle_statuses = BinanceAdapter.throttle_statuses
    ban_statuses = BinanceAdapter.ban_statuses
    default_quota = None
    limits_request = BinanceAdapter.limits_request
    parse_limits = BinanceAdapter.parse_limits

    def latest_request(self, symbol: str) -> ApiRequest:
        return ApiRequest(LATEST_PATH, {"symbol": symbol}, weight=KLINES_WEIGHT)

    def rate_limit_signal(
        self, headers: Mapping[str, str], *, now: datetime | None = None
    ) -> RateLimitSignal | None:
        epoch = now.timestamp() if now is not None else time.time()
        return used_weight_signal(headers, now_epoch=epoch)


class _CountsRequestsDialect(SimulatorAdapter):
    """A request the client thinks weighs 2, on a server that counts requests: the headers
    are in requests, so one request is one unit whatever its weight."""

    quota_unit = "requests"

    def latest_request(self, symbol: str) -> ApiRequest:
        return ApiRequest(LATEST_PATH, {"symbol": symbol}, weight=2)


def dialect_adapter(dialect: str) -> ProviderAdapter:
    """The adapter a client of ``dialect`` uses (the simulator's, with the dialect's hooks)."""
    if dialect == "binance":
        return _BinanceDialect()
    if dialect == "xratelimit":
        return _CountsRequestsDialect()
    if dialect in DIALECTS:
        return SimulatorAdapter()
    raise ValueError(f"unknown dialect {dialect!r}: expected one of {DIALECTS}")


# -- command line -----------------------------------------------------------------------------
def parse_policies(text: str) -> tuple[Policy, ...]:
    """``burst=10/1,sustained=24/4``: name=limit/window_s, comma-separated."""
    policies = []
    for part in text.split(","):
        name, _, quota = part.strip().partition("=")
        limit, _, window = quota.partition("/")
        if not name or not limit.isdigit() or not window.isdigit():
            raise ValueError(f"bad policy {part!r}: expected name=limit/window_s")
        policies.append(Policy(name, int(limit), int(window)))
    return tuple(policies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The simulator behind another rate-limit dialect.")
    parser.add_argument("--dialect", choices=DIALECTS, required=True)
    parser.add_argument("--policies", required=True, help="name=limit/window_s[,...]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--request-weight", type=int, default=1)
    parser.add_argument("--ban-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        config = DialectConfig(
            args.dialect,
            parse_policies(args.policies),
            host=args.host,
            port=args.port,
            request_weight=args.request_weight,
            ban_s=args.ban_seconds,
        )
        server = DialectSimulator(config).start()
    except (OSError, ValueError) as exc:
        print(f"dialect simulator failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"dialect simulator listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
