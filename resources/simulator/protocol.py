"""The simulator's wire format: query parameters, page cursors and JSON bodies.

Validators raise :class:`BadRequest` with a message that is safe to send back: it names the
parameter and what is expected, never echoes the input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from resources.simulator.data import (
    MAX_MINUTE,
    MIN_MINUTE,
    SUPPORTED_RANGE,
    SYMBOL_PATTERN,
    floor_minute,
)

__all__ = [
    "BadRequest",
    "Query",
    "decode_cursor",
    "dumps",
    "encode_cursor",
    "first",
    "parse_flag",
    "parse_iso",
    "parse_limit",
    "parse_minute_param",
    "require_symbol",
]

# What urllib.parse.parse_qs gives: every parameter's values, in order.
Query = dict[str, list[str]]

_MAX_PARAM_LEN = 64
_CURSOR_RE = re.compile(r"^v1:(\d{1,12})$")
_JSON_SEPARATORS = (",", ":")


class BadRequest(Exception):
    """Raised by validators; the message is safe to return (never echoes input)."""


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=_JSON_SEPARATORS).encode("utf-8")


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 UTC timestamp (``Z`` or ``+00:00``); ValueError otherwise."""
    if len(value) > _MAX_PARAM_LEN:
        raise ValueError("too long")
    # An unencoded '+' in a query string arrives as a space; restore it.
    dt = datetime.fromisoformat(value.replace(" ", "+"))
    if dt.tzinfo is None or dt.utcoffset() != timedelta(0):
        raise ValueError("not UTC")
    return dt.astimezone(UTC)


def parse_minute_param(value: str, name: str) -> int:
    try:
        dt = parse_iso(value)
    except ValueError:
        raise BadRequest(
            f"invalid {name}: expected ISO-8601 UTC timestamp like 2026-01-05T00:00:00Z"
        ) from None
    if dt.second or dt.microsecond:
        raise BadRequest(f"invalid {name}: must be aligned to a whole minute")
    minute = floor_minute(dt)
    if not MIN_MINUTE <= minute <= MAX_MINUTE:
        raise BadRequest(f"invalid {name}: outside supported range {SUPPORTED_RANGE}")
    return minute


def parse_limit(raw: str | None, limit_max: int) -> int:
    """The page size asked for, capped at ``limit_max`` (its default)."""
    if raw is None:
        return limit_max
    if len(raw) > 12 or not re.fullmatch(r"-?\d+", raw):
        raise BadRequest("invalid limit: must be an integer")
    limit = int(raw)
    if limit < 1:
        raise BadRequest("invalid limit: must be >= 1")
    return min(limit, limit_max)


def parse_flag(raw: str | None, name: str, *, default: bool) -> bool:
    """A ``true``/``false`` parameter (``default`` when absent)."""
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise BadRequest(f"invalid {name}: must be true or false")
    return raw == "true"


def encode_cursor(minute: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{minute}".encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> int:
    if not cursor or len(cursor) > _MAX_PARAM_LEN:
        raise BadRequest("invalid cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("invalid cursor") from None
    match = _CURSOR_RE.fullmatch(raw)
    if match is None:
        raise BadRequest("invalid cursor")
    minute = int(match.group(1))
    if not MIN_MINUTE <= minute < MAX_MINUTE:
        raise BadRequest("invalid cursor")
    return minute


def first(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def require_symbol(query: Query) -> str:
    symbol = first(query, "symbol")
    # fullmatch: with re.match, "$" would also accept a trailing newline.
    if symbol is None or not SYMBOL_PATTERN.fullmatch(symbol):
        raise BadRequest("invalid symbol")
    return symbol
