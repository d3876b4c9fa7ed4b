"""Strict patterns for every value that becomes a URL parameter, a path or an identifier.

Symbols, providers, table names and partition keys come from configuration and from the
Dagster UI; each is checked here before any request is made or any file is touched, and a
resolved path must stay under its root (no ``..``, no absolute parts, no symlink escapes). So
are the places configuration points at: a provider's base URL, a directory to write into.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

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
# PostgreSQL's identifiers hold 63 bytes (NAMEDATALEN - 1); a longer one is cut silently, so two
# long table names could become one. Every table, PostgreSQL or Parquet, keeps to it.
MAX_IDENTIFIER_LENGTH = 63
TABLE_RE = re.compile(rf"^[a-z][a-z0-9_]{{0,{MAX_IDENTIFIER_LENGTH - 1}}}$")
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
    if isinstance(table, str) and len(table) > MAX_IDENTIFIER_LENGTH:
        raise InvalidInputError(
            f"invalid table name {table!r}: {len(table)} characters, and PostgreSQL identifiers "
            f"hold {MAX_IDENTIFIER_LENGTH}"
        )
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


def partition_key_from_stem(stem: str) -> str:
    """The partition key of a file stem (``partition_file_stem`` undone): ``2026-01-05-0300``
    is ``2026-01-05-03:00``; a daily stem has no colon to restore."""
    if len(stem) == len("2026-01-05-0300"):
        return f"{stem[:-2]}:{stem[-2:]}"
    return stem


def safe_join(root: Path, *parts: str) -> Path:
    """Join validated parts under root and prove the result did not escape it."""
    root_resolved = root.resolve()
    path = root_resolved.joinpath(*parts).resolve()
    if path != root_resolved and root_resolved not in path.parents:
        raise InvalidInputError(f"path {path} escapes its root {root_resolved}")
    return path


def validate_http_url(url: str) -> str:
    """``url`` if it is an ``http://`` or ``https://`` URL with a host (a provider's base URL);
    anything else (``file://``, a bare host, a typo in the scheme) fails here instead of at the
    first request, where a connection error would be retried."""
    shown = url
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:  # user:password@host: never a password in a message
            shown = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and not any(c.isspace() for c in url)
            and (parts.port is None or parts.port > 0)
        )
    except (ValueError, TypeError, AttributeError):  # a port that is not a number, not text
        valid = False
    if not valid:
        raise InvalidInputError(
            f"{shown!r} is not an http(s) URL with a host: expected e.g. https://api.binance.com "
            "or http://127.0.0.1:8765"
        )
    return url


def directory_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a directory this process writes into, or None: it is one, or it
    can be created (its nearest existing parent is a writable directory). Checked without
    writing anything, so a refusal leaves no trace."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        why = "a read-only file system" if read_only else "no write permission for this user"
        return (
            f"{probe} is not writable ({why})"
            if probe == path
            else f"it does not exist and cannot be created: {probe} is not writable ({why})"
        )
    return None


def ensure_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InvalidInputError(f"naive datetime {value.isoformat()}: a UTC time is required")
    return value.astimezone(UTC)
