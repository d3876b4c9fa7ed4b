"""Fault injection on ``/v1/bars``: which faults exist, their budgets, and which one fires.

Each fault kind has a probability and an optional budget (:class:`FaultSpec`). Draws come from
a ``random.Random`` seeded with the simulator's seed, so a run with the same faults and the same
requests meets the same failures.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FAULT_NAMES",
    "THROTTLED_BODY",
    "FaultInjector",
    "FaultSpec",
    "check_faults",
    "drifted",
    "malformed",
]

# Order matters: faults are considered in this order and at most one fires per request.
FAULT_NAMES: tuple[str, ...] = (
    "rate_limited",
    "server_error",
    "truncated_body",
    "malformed_json",
    "throttle_body",
    "schema_drift",
)

# For "throttle_body": a throttle reported inside a 200, as some providers do.
THROTTLED_BODY: dict[str, Any] = {
    "status": "error",
    "code": "THROTTLED",
    "message": "Too many requests, slow down",
    "retry_after": 1,
}


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


def check_faults(faults: Mapping[str, FaultSpec]) -> None:
    unknown = set(faults) - set(FAULT_NAMES)
    if unknown:
        raise ValueError(f"unknown fault names {sorted(unknown)}; allowed: {FAULT_NAMES}")
    for spec in faults.values():
        if not isinstance(spec, FaultSpec):
            raise TypeError("fault values must be FaultSpec instances")


class FaultInjector:
    """The fault set in force, what each fault has used of its budget, and the draws."""

    def __init__(self, faults: Mapping[str, FaultSpec], *, seed: int) -> None:
        check_faults(faults)
        self._seed = seed
        self._lock = threading.Lock()
        self._faults = dict(faults)
        self._used: dict[str, int] = dict.fromkeys(FAULT_NAMES, 0)
        self._injected: dict[str, int] = dict.fromkeys(FAULT_NAMES, 0)
        self._rng = random.Random(seed)

    def replace(self, faults: Mapping[str, FaultSpec]) -> None:
        """A new fault set with fresh budgets (the injected counts stay)."""
        check_faults(faults)
        with self._lock:
            self._faults = dict(faults)
            self._used = dict.fromkeys(FAULT_NAMES, 0)

    def reset(self) -> None:
        """No faults, fresh budgets and counts, the draws started over from the seed."""
        with self._lock:
            self._faults = {}
            self._used = dict.fromkeys(FAULT_NAMES, 0)
            self._injected = dict.fromkeys(FAULT_NAMES, 0)
            self._rng = random.Random(self._seed)

    def current(self) -> dict[str, FaultSpec]:
        with self._lock:
            return dict(self._faults)

    def injected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._injected)

    def pick(self) -> str | None:
        """The fault this request gets, if any (its budget is charged)."""
        with self._lock:
            for name in FAULT_NAMES:
                spec = self._faults.get(name)
                if spec is None or spec.rate <= 0.0:
                    continue
                if spec.count is not None and self._used[name] >= spec.count:
                    continue
                if self._rng.random() < spec.rate:
                    self._used[name] += 1
                    self._injected[name] += 1
                    return name
        return None


def drifted(bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For ``schema_drift``: ``c`` renamed ``close``, ``v`` sent as a string, an unknown ``x``."""
    return [
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


def malformed(body: bytes) -> bytes:
    """For ``malformed_json``: the body cut short and followed by garbage."""
    return body[:-10] + b'}{"'
