"""Pacers: what the client asks before each request. ``SharedPacer`` books in a quota store,
learns quotas from the server and pauses every process on a 429 or a ban."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from resources.ratelimit.headers import RateLimitSignal
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import QuotaStore


# -- what the client talks to ---------------------------------------------------------------
class Pacer(Protocol):
    def reserve(self, weight: int = 1) -> float:
        """Claim ``weight`` units of quota; return how many seconds to wait before sending."""
        ...

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        """The server said stop (429, ban): nobody sends for ``seconds``."""
        ...

    def observe(self, signal: RateLimitSignal | None) -> None:
        """Learn from what a response said about the quota."""
        ...

    def describe_last_wait(self) -> str: ...

    def pause_remaining(self) -> tuple[float, str]:
        """Seconds of a shared pause still to run (set after our slot was booked), and why."""
        ...


class NoPacer:
    def reserve(self, weight: int = 1) -> float:
        return 0.0

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        return None

    def observe(self, signal: RateLimitSignal | None) -> None:
        return None

    def describe_last_wait(self) -> str:
        return "no pacing"

    def pause_remaining(self) -> tuple[float, str]:
        return 0.0, ""


class SharedPacer:
    """Pacing for one quota key over a ``QuotaStore``, configured or learning from headers."""

    def __init__(
        self,
        store: QuotaStore,
        key: str,
        *,
        policy: QuotaPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.key = key
        self.policy = policy  # None: learn it from the server
        self._clock = clock
        self._last_reason = ""
        self._window_estimate = 0.0

    def reserve(self, weight: int = 1) -> float:
        booking = self.store.reserve(self.key, weight=weight, now=self._clock(), policy=self.policy)
        self._last_reason = booking.reason
        return booking.wait_s

    def describe_last_wait(self) -> str:
        return self._last_reason

    def pause_remaining(self) -> tuple[float, str]:
        until, reason = self.store.paused_until(self.key)
        return max(0.0, until - self._clock()), reason

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        self.store.pause(
            self.key,
            until=self._clock() + seconds,
            reason=reason or "server asked to wait",
            policy=self.policy,
        )

    def observe(self, signal: RateLimitSignal | None) -> None:
        if signal is None:
            return
        if self.policy is None:
            learned = signal.policy or self._policy_from_counters(signal)
            if learned is not None and learned != self.store.learned(self.key):
                self.store.learn(self.key, learned)
        # The quota is spent (someone else may share it: another tool on the same IP or key):
        # wait for the server's reset instead of collecting a 429. Under a stated token-bucket
        # policy, remaining 0 is the normal state of a paced client, not a reason to stop.
        spent = signal.remaining is not None and signal.remaining <= 0
        if spent and signal.reset_s and signal.policy is None:
            self.pause_for(signal.reset_s, reason=f"quota spent ({signal.source})")

    def _policy_from_counters(self, signal: RateLimitSignal) -> QuotaPolicy | None:
        """``X-RateLimit-Limit`` with a reset but no policy: the longest reset seen so far is
        our estimate of the window (the first request of a window sees the whole of it)."""
        if not signal.limit or not signal.reset_s:
            return None
        self._window_estimate = max(self._window_estimate, signal.reset_s)
        return QuotaPolicy(signal.limit, self._window_estimate, 1, signal.source or "X-RateLimit")
