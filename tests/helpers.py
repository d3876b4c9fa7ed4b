"""Helpers the tests share: loopback ports, polling, the CLI, and test-only pacers."""

from __future__ import annotations

import time
from collections.abc import Callable

from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import MemoryQuotaStore


class TokenBucketPacer(SharedPacer):
    """In-process pacing at a fixed rate: a ``SharedPacer`` over a private memory store."""

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
        super().__init__(
            MemoryQuotaStore(), "local", policy=_ExactPolicy(rate_per_s, 1.0, burst), clock=clock
        )


class _ExactPolicy(QuotaPolicy):
    """A policy paced exactly at its rate and burst: for in-process tests and tools."""

    def paced(self) -> tuple[float, int]:
        return 1.0 / self.rate, self.burst
