"""What servers say about their quota: ``RateLimit``/``RateLimit-Policy`` (IETF draft) and
the ``X-RateLimit-*`` family, read into a ``RateLimitSignal``."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from resources.ratelimit.policy import QuotaPolicy

EPOCH_THRESHOLD = 1_000_000_000  # a "reset" above this is a Unix time, not seconds-from-now


@dataclass(frozen=True)
class RateLimitSignal:
    """What one response said about the quota. Every field may be unknown."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None  # seconds from now until the quota is replenished
    policy: QuotaPolicy | None = None
    source: str = ""


_PARAM = re.compile(r'(?:^|;)\s*([a-z][a-z0-9_-]*)\s*=\s*("?)([^;",]*)\2', re.IGNORECASE)


def _params(item: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(3) for m in _PARAM.finditer(item)}


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def reset_to_seconds(value: float, *, now_epoch: float) -> float:
    """``X-RateLimit-Reset`` is seconds-from-now for some providers, a Unix time (s or ms) for
    others: a value past 2001-09-09 cannot be a sensible delay, so it is read as an epoch."""
    if value >= EPOCH_THRESHOLD * 1000:
        value /= 1000.0  # epoch milliseconds
    if value >= EPOCH_THRESHOLD:
        return max(0.0, value - now_epoch)
    return max(0.0, value)


def parse_rate_limit_headers(
    headers: Mapping[str, str], *, now_epoch: float | None = None
) -> RateLimitSignal | None:
    """Read the IETF draft ``RateLimit``/``RateLimit-Policy`` and the ``X-RateLimit-*`` family.

    ``RateLimit-Policy: "default";q=100;w=60`` (draft 08+) or ``100;w=60`` (draft 07) gives the
    quota itself; ``RateLimit: "default";r=50;t=30`` or ``limit=100, remaining=50, reset=30``
    and ``X-RateLimit-Limit/-Remaining/-Reset`` give the current state. Headers are matched
    case-insensitively; anything unparseable is ignored rather than trusted.
    """
    h = {k.lower(): v for k, v in headers.items()}
    now_epoch = time.time() if now_epoch is None else now_epoch
    policy = None
    limit = remaining = reset_s = None
    sources = []
    if "ratelimit-policy" in h:
        first = h["ratelimit-policy"].split(",")[0]
        params = _params(first)
        quota = _number(params.get("q")) or _number(first.split(";")[0].strip().strip('"'))
        window = _number(params.get("w"))
        if quota and window and quota > 0 and window > 0:
            burst = _number(params.get("burst"))
            policy = QuotaPolicy(quota, window, max(1, int(burst or 1)), "RateLimit-Policy")
            limit = quota
            sources.append("RateLimit-Policy")
    if "ratelimit" in h:
        value = h["ratelimit"]
        params = _params(value.replace(",", ";"))
        remaining = _number(params.get("r", params.get("remaining")))
        reset = _number(params.get("t", params.get("reset")))
        reset_s = reset_to_seconds(reset, now_epoch=now_epoch) if reset is not None else None
        limit = _number(params.get("limit")) or limit
        sources.append("RateLimit")
    for name in ("x-ratelimit-limit", "ratelimit-limit"):
        if name in h and limit is None:
            limit = _number(h[name])
    for name in ("x-ratelimit-remaining", "ratelimit-remaining"):
        if name in h and remaining is None:
            remaining = _number(h[name])
            sources.append(name)
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        if name in h and reset_s is None:
            reset = _number(h[name])
            reset_s = reset_to_seconds(reset, now_epoch=now_epoch) if reset is not None else None
    if policy is None and limit is None and remaining is None and reset_s is None:
        return None
    return RateLimitSignal(limit, remaining, reset_s, policy, "+".join(sources) or "headers")
