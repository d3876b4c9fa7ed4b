"""``key=value`` fields on log lines, so journald and Loki queries need no regular expressions.

A line about a wait, a retry or a throttle keeps its sentence for people and ends with fields
for machines, in logfmt (values with spaces or quotes are quoted)::

    waiting 2.00 s: Retry-After from simulator after HTTP 429 (attempt 1) provider=simulator
    source=default symbol=AAPL reason=throttled wait_s=2.000

What a low layer cannot know (the source a step works for, the symbol a page belongs to) is
set around the call by the layer that knows it (``log_context``), in a context variable, so it
follows the call into the client without being passed through every signature. Queries::

    journalctl -u fin-assets-daemon -o cat | grep 'reason=throttled'
    {unit="fin-assets-code.service"} | logfmt | reason="throttled" | wait_s > 10     (LogQL)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")

_CONTEXT: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("fin_assets_log_fields", default=())

# What a wait is for, as the ``reason`` field says it (a closed set: dashboards group by it).
WAIT_REASONS = ("pacing", "slow_start", "shared_pause", "throttled", "retry")


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every fields line logged inside carries these fields too (inner values win)."""
    merged = dict(_CONTEXT.get())
    merged.update({k: str(v) for k, v in fields.items() if v is not None})
    token = _CONTEXT.set(tuple(merged.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def with_log_context(items: Iterable[T], **fields: object) -> Iterator[T]:
    """``items`` (a generator that logs, such as the client's pages), produced inside
    ``log_context(**fields)`` without holding the context across the caller's own work."""
    iterator = iter(items)
    while True:
        with log_context(**fields):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def _value(value: object) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if not text or any(c in text for c in ' "=\\\n'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


def log_fields(**fields: object) -> str:
    """`` key=value ...``: the context's fields, then these (None values left out), with a
    leading space, to end a log line with."""
    merged: dict[str, object] = dict(_CONTEXT.get())
    merged.update({k: v for k, v in fields.items() if v is not None})
    return "".join(f" {key}={_value(value)}" for key, value in merged.items())


def wait_reason(description: str, *, default: str = "pacing") -> str:
    """The ``reason`` of a pacing wait, from the pacer's description of it."""
    if description.startswith("shared pause"):
        return "shared_pause"
    if description.startswith("slow start"):
        return "slow_start"
    return default


def wait_fields(provider: str, seconds: float, description: str, *, reason: str = "") -> str:
    """The fields of a "waiting N s: ..." line."""
    return log_fields(
        provider=provider,
        reason=reason or wait_reason(description),
        wait_s=float(seconds),
    )
