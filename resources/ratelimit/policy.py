"""A quota: ``limit`` units per ``window_s`` seconds, and the margin the pacer keeps under it."""

from __future__ import annotations

from dataclasses import dataclass

# Pace at 99.8 % of the quota's rate. Measured with benchmarks/rate_limit.py (a strict token
# bucket, 1-8 processes) and benchmarks/quota_learning.py (fixed windows): see
# benchmarks/README.md. A margin is still needed: the server counts arrivals, and a request
# that waited on a busy machine can arrive right behind the next one.
SAFETY_RATE = 0.998
# Requests sent on schedule can still reach the server bunched up by this much (a slow first
# connection, the server's own scheduling): the least arrival jitter the pacer allows for.
# Measured: see benchmarks/README.md. On top of it the pacer allows for how late this key's
# requests actually leave their slots, measured as they go (``Learning.late_s``): a busy host
# keeps a process off the CPU for tens of milliseconds (resources/ratelimit/learning.py).
ARRIVAL_JITTER_S = 0.02
MAX_JITTER_S = 0.25  # beyond this a host is too busy for any margin: sent_late moves slots on


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

    def paced(self, jitter_s: float = ARRIVAL_JITTER_S) -> tuple[float, float]:
        """(seconds per unit, burst in units) the pacer actually uses: a margin under the
        quota for ``jitter_s``, how far apart requests sent on schedule may reach the server.

        - The rate is at most ``SAFETY_RATE`` of the quota's.
        - A token bucket (``burst`` > 1) absorbs jitter in its burst: the pacer uses
          ``jitter_s`` less of it, and the server's tolerance takes a request that arrives
          that much early after one that arrived late.
        - A window (``burst`` 1: fixed, rolling, or learned) does not: ``limit`` units must be
          more than ``window_s`` apart even when one of them arrives ``jitter_s`` late, so the
          units are spaced ``(window_s + jitter_s) / limit`` at least (3 s + 20 ms for a
          rolling 15 per 3 s, where 99.8 % of the rate left 6 ms).

        Under a fixed window, units sent at ``SAFETY_RATE`` of the rate after a burst of ``b``
        number at most ``b + SAFETY_RATE * limit`` in any window, so a policy for a
        fixed-window server keeps its burst at most ``(1 - SAFETY_RATE) * limit`` (learned
        policies use 1); under a token bucket the server's own burst is what it accepts."""
        interval = 1.0 / (self.rate * SAFETY_RATE)
        if self.burst == 1:
            interval = max(interval, (self.window_s + jitter_s) / self.limit)
        return interval, self.burst - min(float(self.burst), jitter_s / interval)

    def describe(self) -> str:
        return f"{self.limit:g}/{self.window_s:g}s burst {self.burst} ({self.source})"


def lower_quota(a: QuotaPolicy | None, b: QuotaPolicy | None) -> QuotaPolicy | None:
    """The quota that allows the lower rate (the other one, when one is unknown)."""
    if a is None or b is None:
        return a or b
    return b if b.rate < a.rate else a
