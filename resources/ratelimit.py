"""Client-side pacing: spend the provider's quota evenly instead of sleeping a fixed time.

This is the in-process pacer of the walking skeleton: a token bucket per client. The full
engine (one quota shared by every process of the instance, learned from headers) implements
the same ``Pacer`` protocol, so ``MarketApiClient`` does not change when it lands.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Pacer(Protocol):
    def reserve(self, weight: int = 1) -> float:
        """Claim ``weight`` units of quota; return how many seconds to wait before sending."""
        ...

    def pause_for(self, seconds: float) -> None:
        """The server said stop (429, ban): nobody sends for ``seconds``."""
        ...


class NoPacer:
    def reserve(self, weight: int = 1) -> float:
        return 0.0

    def pause_for(self, seconds: float) -> None:
        return None


class TokenBucketPacer:
    """GCRA-style bucket: ``rate`` units per second with ``burst`` units of slack.

    ``reserve`` books the slot immediately, so concurrent callers queue instead of stampeding.
    """

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._interval = 1.0 / rate_per_s
        self._burst = burst
        self._clock = clock
        self._tat = clock()  # theoretical arrival time of the next unit
        self._lock = threading.Lock()

    def reserve(self, weight: int = 1) -> float:
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            allowed_at = tat + (weight - self._burst) * self._interval
            self._tat = tat + weight * self._interval
            return max(0.0, allowed_at - now)

    def pause_for(self, seconds: float) -> None:
        with self._lock:
            # Shift the schedule so the first send after the pause lands exactly at its end.
            resume = self._clock() + seconds + (self._burst - 1) * self._interval
            self._tat = max(self._tat, resume)
