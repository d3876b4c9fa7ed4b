"""A quota: ``limit`` units per ``window_s`` seconds, and the margin the pacer keeps under it."""

from __future__ import annotations

from dataclasses import dataclass

# Pace at 99.8 % of the quota's rate. Measured with benchmarks/rate_limit.py (a strict token
# bucket, 1-8 processes) and benchmarks/quota_learning.py (fixed windows): see
# benchmarks/README.md. A margin is still needed: the server counts arrivals, and a request
# that waited on a busy machine can arrive right behind the next one.
SAFETY_RATE = 0.998
# Requests sent on schedule can still reach the server bunched up by this much (a busy
# machine, a slow first connection): the burst the pacer uses is that much smaller, so the
# server's own burst absorbs it. Measured: see benchmarks/README.md.
ARRIVAL_JITTER_S = 0.02


# -- policies and what servers say --------------------------------------------------------------
@dataclass(frozen=True)
class QuotaPolicy:
    """``limit`` units per ``window_s`` seconds, at most ``burst`` units back to back."""

    limit: float
    window_s: float
    burst: int = 1
    source: str = "configured"

    def __post_init__(self) -> None:
        if not (self.limit > 0 and self.window_s > 0 and self.burst >= 1):
            raise ValueError(
                f"invalid quota {self.limit}/{self.window_s}s burst {self.burst}: "
                "limit and window must be positive, burst at least 1"
            )

    @property
    def rate(self) -> float:
        return self.limit / self.window_s

    def paced(self) -> tuple[float, float]:
        """(seconds per unit, burst in units) the pacer actually uses: a margin under the
        quota, ``SAFETY_RATE`` of its rate and ``ARRIVAL_JITTER_S`` less than its burst.

        Under a fixed window, units sent at ``SAFETY_RATE`` of the rate after a burst of ``b``
        number at most ``b + SAFETY_RATE * limit`` in any window, so a policy for a
        fixed-window server keeps its burst at most ``(1 - SAFETY_RATE) * limit`` (learned
        policies use 1); under a token bucket the server's own burst is what it accepts."""
        interval = 1.0 / (self.rate * SAFETY_RATE)
        return interval, self.burst - min(1.0, ARRIVAL_JITTER_S / interval)

    def describe(self) -> str:
        return f"{self.limit:g}/{self.window_s:g}s burst {self.burst} ({self.source})"


def lower_quota(a: QuotaPolicy | None, b: QuotaPolicy | None) -> QuotaPolicy | None:
    """The quota that allows the lower rate (the other one, when one is unknown)."""
    if a is None or b is None:
        return a or b
    return b if b.rate < a.rate else a
