"""A quota: ``limit`` units per ``window_s`` seconds, and the margin the pacer keeps under it."""

from __future__ import annotations

from dataclasses import dataclass

SAFETY_RATE = 0.98  # pace at 98 % of the quota's rate


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

    def paced(self) -> tuple[float, int]:
        """(seconds per unit, burst) the pacer actually uses: a margin under the quota."""
        return 1.0 / (self.rate * SAFETY_RATE), max(1, self.burst - 1)

    def describe(self) -> str:
        return f"{self.limit:g}/{self.window_s:g}s burst {self.burst} ({self.source})"
