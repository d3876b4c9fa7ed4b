"""Strict patterns for every value that becomes a URL parameter, a path or an identifier.

Symbols, providers, table names and partition keys come from configuration and from the
Dagster UI; each is checked here before any request is made or any file is touched, and a
resolved path must stay under its root (no ``..``, no absolute parts, no symlink escapes).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from resources.errors import InvalidInputError

# Exchange tickers, crypto pairs and share classes: AAPL, BTCUSDT, BRK.B, RDS-A.
SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,10}([.-][A-Z0-9]{1,5})?$")
# Polygon's (Massive's) other asset classes on the same aggregates endpoint, as its clients
# spell them: crypto X:BTCUSD, forex C:EURUSD, indices I:NDX, options O:<underlying><YYMMDD>
# <C|P><strike x 1000, 8 digits> (O:SPY251219C00650000). Accepted for that provider only.
POLYGON_TICKER_RE = re.compile(
    r"^(X:[A-Z0-9]{2,20}|C:[A-Z]{6}|I:[A-Z0-9]{1,20}|O:[A-Z0-9]{1,6}[0-9]{6}[CP][0-9]{8})$"
)
PROVIDER_SYMBOL_RE = {"polygon": POLYGON_TICKER_RE}
PROVIDER_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
TABLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
HOURLY_KEY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}:00$")
DAILY_KEY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def validate_symbol(symbol: str, *, provider: str | None = None) -> str:
    """``symbol`` if it is a ticker (``SYMBOL_RE``), or, for a provider with prefixed tickers
    (Polygon's ``X:``, ``C:``, ``I:``, ``O:``), one of those; an InvalidInputError otherwise."""
    if isinstance(symbol, str):
        if SYMBOL_RE.fullmatch(symbol):
            return symbol
        extra = PROVIDER_SYMBOL_RE.get(provider or "")
        if extra is not None and extra.fullmatch(symbol):
            return symbol
    prefixed = (
        " or, for polygon, X:BTCUSD, C:EURUSD, I:NDX, O:SPY251219C00650000"
        if provider == "polygon" or (isinstance(symbol, str) and ":" in symbol[:2])
        else ""
    )
    raise InvalidInputError(
        f"invalid symbol {symbol!r}: expected 1-10 upper-case letters or digits, "
        f"optionally followed by '.' or '-' and 1-5 more (e.g. AAPL, BTCUSDT, BRK.B){prefixed}"
    )


def symbol_path_part(symbol: str, *, provider: str | None = None) -> str:
    """The directory name of a validated symbol: a prefixed ticker's colon becomes ``_`` (no
    plain symbol has one, so names stay distinct), because some tools read ``x:`` as a drive
    or a scheme."""
    return validate_symbol(symbol, provider=provider).replace(":", "_")


def parse_symbols(
    value: str | list[str] | tuple[str, ...], *, provider: str | None = None
) -> tuple[str, ...]:
    """Parse a comma-separated universe, refusing the whole list if any symbol is invalid."""
    items = value.split(",") if isinstance(value, str) else list(value)
    symbols = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    if not symbols:
        raise InvalidInputError("the symbol universe is empty: set FIN_SYMBOLS, e.g. AAPL,MSFT")
    for symbol in symbols:
        validate_symbol(symbol, provider=provider)
    return symbols


def validate_provider(provider: str) -> str:
    if not isinstance(provider, str) or not PROVIDER_RE.fullmatch(provider):
        raise InvalidInputError(f"invalid provider name {provider!r}: expected [a-z][a-z0-9_]*")
    return provider


def validate_table(table: str) -> str:
    if not isinstance(table, str) or not TABLE_RE.fullmatch(table):
        raise InvalidInputError(f"invalid table name {table!r}: expected [a-z][a-z0-9_]*")
    return table


def validate_partition_key(key: str) -> str:
    """Accept the hourly (``2026-01-05-03:00``) and daily (``2026-01-05``) keys we partition by."""
    if isinstance(key, str):
        try:
            if HOURLY_KEY_RE.fullmatch(key):
                datetime.strptime(key, "%Y-%m-%d-%H:%M")
                return key
            if DAILY_KEY_RE.fullmatch(key):
                datetime.strptime(key, "%Y-%m-%d")
                return key
        except ValueError:
            pass
    raise InvalidInputError(
        f"invalid partition key {key!r}: expected YYYY-MM-DD-HH:00 (hourly) or YYYY-MM-DD (daily)"
    )


def partition_file_stem(key: str) -> str:
    """File name for a partition key: the colon goes, because some tools read ``x:`` as a scheme."""
    return validate_partition_key(key).replace(":", "")


def safe_join(root: Path, *parts: str) -> Path:
    """Join validated parts under root and prove the result did not escape it."""
    root_resolved = root.resolve()
    path = root_resolved.joinpath(*parts).resolve()
    if path != root_resolved and root_resolved not in path.parents:
        raise InvalidInputError(f"path {path} escapes its root {root_resolved}")
    return path


def ensure_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidInputError(f"naive datetime {value.isoformat()}: a UTC time is required")
    return value.astimezone(UTC)
