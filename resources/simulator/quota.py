"""The simulator's server-side quota: what a vendor enforces per API key.

A fixed window (``requests`` per ``window_s``), or with a ``burst`` a token bucket (GCRA):
``requests`` per ``window_s`` on average, at most ``burst`` back to back. Every answer carries
the ``X-RateLimit-*`` headers and the IETF draft ``RateLimit``/``RateLimit-Policy`` pair, and a
rejection a ``Retry-After``.

The bucket is deliberately not ``resources.ratelimit.gcra.gcra_book``, although a booking that
is allowed here is one ``gcra_book`` would send at once. This is the strict server the client
is tested against: it rejects instead of booking a wait, and it must stay an independent
oracle, so a mistake in the client's arithmetic (a burst off by one, say) shows up as a 429 in
the tests instead of being mirrored by the server.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["QuotaDecision", "ServerQuota"]


@dataclass(frozen=True)
class QuotaDecision:
    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)


class ServerQuota:
    """Per-label quota state; ``check`` decides a request and says so in headers."""

    def __init__(
        self,
        *,
        requests: int | None,
        window_s: float,
        burst: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests is not None and requests < 0:
            raise ValueError("quota_requests must be None or >= 0")
        if not window_s > 0:
            raise ValueError("quota_window_s must be > 0")
        if burst is not None and (burst < 1 or not requests):
            raise ValueError("quota_burst needs quota_requests > 0 and must be >= 1")
        self.requests, self.window_s, self.burst = requests, window_s, burst
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # label -> [window_start, used]
        self._tats: dict[str, float] = {}  # label -> GCRA theoretical arrival time

    def reset(self) -> None:
        """Forget every window and bucket: all keys start with a full quota."""
        with self._lock:
            self._windows = {}
            self._tats = {}

    def check(self, label: str, *, consume: bool) -> QuotaDecision:
        """Whether ``label`` may send now; ``consume`` books the request if so."""
        if self.requests is None:
            return QuotaDecision(True)
        if self.burst is not None:
            return self._bucket_check(label, consume=consume)
        return self._window_check(label, self.requests, consume=consume)

    def _policy_headers(self, remaining: int, reset_s: float) -> dict[str, str]:
        """The IETF draft headers, next to the X-RateLimit-* family every quota sends."""
        return {
            "RateLimit-Policy": f'"default";q={self.requests};w={self.window_s:g}',
            "RateLimit": f'"default";r={remaining};t={max(0, math.ceil(reset_s))}',
        }

    def _bucket_check(self, label: str, *, consume: bool) -> QuotaDecision:
        """Token-bucket quota (GCRA): rate requests/window_s, burst ``burst``."""
        assert self.requests and self.burst
        interval = self.window_s / self.requests
        tolerance = self.burst * interval
        now = self._clock()
        with self._lock:
            tat = max(self._tats.get(label, now), now)
            allowed = tat + interval - now <= tolerance + 1e-9
            if allowed and consume:
                tat += interval
                self._tats[label] = tat
        remaining = max(0, math.floor((tolerance - (tat - now)) / interval + 1e-9))
        headers = {
            "X-RateLimit-Limit": str(self.requests),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(max(0, math.ceil(tat - now))),  # until the bucket is full
            **self._policy_headers(remaining, tat - now),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(tat + interval - tolerance - now)))
        return QuotaDecision(allowed, headers)

    def _window_check(self, label: str, limit: int, *, consume: bool) -> QuotaDecision:
        """Fixed-window quota: ``limit`` requests per window, counted from a key's first."""
        window_s = self.window_s
        now = self._clock()
        with self._lock:
            state = self._windows.get(label)
            if state is not None and now >= state[0] + window_s:
                state = None
            if state is None:
                if consume:
                    state = self._windows[label] = [now, 0.0]
                used, reset_in = 0, window_s
            else:
                used, reset_in = int(state[1]), state[0] + window_s - now
            allowed = used < limit
            if allowed and consume and state is not None:
                state[1] += 1
                used += 1
        reset_s = max(1, math.ceil(reset_in))
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(reset_s),
            **(self._policy_headers(max(0, limit - used), reset_in) if limit else {}),
        }
        if not allowed:
            headers["Retry-After"] = str(reset_s)
        return QuotaDecision(allowed, headers)
