"""The provider hook surface: one adapter per API, owning everything that differs between them.

An adapter builds requests (path, params, auth), decides what a response means (ok, retry,
throttled, fatal — including throttles a provider reports inside a 200 body), reads the page
envelope for pagination and coverage, and maps bars to the canonical schema. The client,
the rate-limit engine and the storage layers never know which provider they talk to.
"""

from __future__ import annotations

import email.utils
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from resources.errors import ResponseFormatError, SchemaError
from resources.ratelimit import QuotaPolicy, RateLimitSignal, parse_rate_limit_headers

VerdictKind = Literal["ok", "retry", "throttled", "fatal"]


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP GET, relative to the provider's base URL. ``weight`` is its quota cost."""

    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    # For a continuation page: where its coverage starts (the previous page's end).
    covers_from: datetime | None = None

    def with_params(self, **params: str) -> ApiRequest:
        return replace(self, params={**self.params, **params})

    def with_headers(self, **headers: str) -> ApiRequest:
        return replace(self, headers={**self.headers, **headers})


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reason: str
    # Seconds the server told us to wait (Retry-After or a body hint); None = use backoff.
    server_wait_s: float | None = None
    payload: Any = None


@dataclass(frozen=True)
class PageInfo:
    """What one page of bars covers, and how to ask for the next one."""

    coverage_start: datetime
    coverage_end: datetime
    bar_count: int
    next_request: ApiRequest | None


@dataclass(frozen=True)
class ParsedBars:
    frame: pl.DataFrame  # columns: BAR_COLUMNS
    unknown_fields: Mapping[str, int]


# Canonical columns an adapter produces; provider and ingested_at are added from the snapshot.
BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "trades": pl.Int64(),
    "vwap": pl.Float64(),
}


FieldKind = Literal["iso", "ms", "number", "decimal", "int"]
_EXPECTED = {
    "iso": "an ISO-8601 UTC string",
    "ms": "an integer of epoch milliseconds",
    "number": "a number",
    "decimal": "a decimal number in a string",
    "int": "an integer",
}
ISO_FMT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class BarField:
    """Where a provider keeps one value of a bar (a key, or a position in an array) and how
    it is typed; ``column`` is the canonical column it becomes (``_name`` = helper column)."""

    source: str | int
    column: str
    kind: FieldKind
    required: bool = True


def _valid(value: Any, kind: FieldKind) -> bool:
    if isinstance(value, bool):
        return False
    if kind == "iso":
        return isinstance(value, str)
    if kind in ("ms", "int"):
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float)
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def frame_from_records(
    records: Sequence[Any],
    fields: Sequence[BarField],
    *,
    provider: str,
    symbol: str,
    partition: str | None,
    known_keys: frozenset[str] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Typed columns from a provider's bar records (objects or arrays), strictly: a missing
    required value or a value of the wrong type is a SchemaError naming provider, symbol,
    partition, field and record; object keys we do not map are counted, not fatal."""
    where = f"{provider}: symbol {symbol}" + (f", partition {partition}" if partition else "")
    unknown: dict[str, int] = {}
    by_key = bool(records) and isinstance(records[0], dict)
    for index, record in enumerate(records):
        if not isinstance(record, dict | list) or isinstance(record, dict) != by_key:
            raise SchemaError(
                f"{where}: bar {index} is a {type(record).__name__}, not like bar 0",
                provider=provider,
                symbol=symbol,
                partition=partition,
            )
        if by_key and known_keys is not None:
            for key in record:
                if key not in known_keys:
                    unknown[key] = unknown.get(key, 0) + 1
    columns: dict[str, list[Any]] = {}
    for spec in fields:
        values = []
        for index, record in enumerate(records):
            if by_key:
                value = record.get(spec.source)
                present = spec.source in record
            else:
                present = isinstance(spec.source, int) and spec.source < len(record)
                value = record[spec.source] if present else None
            if value is None:
                if spec.required:
                    state = "is null" if present else "missing"
                    raise SchemaError(
                        f"{where}: field {spec.source!r} {state} in bar {index}; "
                        "the provider's schema changed",
                        provider=provider,
                        symbol=symbol,
                        partition=partition,
                        field=str(spec.source),
                    )
            elif not _valid(value, spec.kind):
                raise SchemaError(
                    f"{where}: field {spec.source!r} in bar {index} is {type(value).__name__} "
                    f"{value!r:.40}, expected {_EXPECTED[spec.kind]}",
                    provider=provider,
                    symbol=symbol,
                    partition=partition,
                    field=str(spec.source),
                )
            elif spec.kind == "decimal":
                value = float(value)
            values.append(value)
        columns[spec.column] = values
    dtypes = {
        "iso": pl.String(),
        "ms": pl.Int64(),
        "number": pl.Float64(),
        "decimal": pl.Float64(),
        "int": pl.Int64(),
    }
    frame = pl.DataFrame(
        columns, schema={spec.column: dtypes[spec.kind] for spec in fields}, strict=False
    )
    conversions = []
    for spec in fields:
        if spec.kind == "ms":
            conversions.append(
                pl.from_epoch(pl.col(spec.column), time_unit="ms")
                .dt.cast_time_unit("us")
                .dt.replace_time_zone("UTC")
            )
        elif spec.kind == "iso":
            conversions.append(
                pl.col(spec.column).str.to_datetime(
                    ISO_FMT, time_unit="us", time_zone="UTC", strict=False
                )
            )
    if conversions:
        converted = frame.with_columns(conversions)
        for spec in fields:
            if spec.kind == "iso":
                bad = converted[spec.column].is_null() & frame[spec.column].is_not_null()
                if bad.any():
                    index = int(bad.arg_max() or 0)
                    raise SchemaError(
                        f"{where}: field {spec.source!r} in bar {index} is not a timestamp "
                        f"like 2026-01-05T00:00:00Z",
                        provider=provider,
                        symbol=symbol,
                        partition=partition,
                        field=str(spec.source),
                    )
        frame = converted
    return frame, unknown


def canonical_bars(frame: pl.DataFrame, *, symbol: str) -> pl.DataFrame:
    """Add the symbol and any optional column the provider does not have, in BAR_SCHEMA order."""
    missing = [
        pl.lit(None, dtype).alias(name)
        for name, dtype in BAR_SCHEMA.items()
        if name not in frame.columns and name != "symbol"
    ]
    return (
        frame.with_columns(pl.lit(symbol, pl.String()).alias("symbol"), *missing)
        .select(list(BAR_SCHEMA))
        .cast(BAR_SCHEMA)  # type: ignore[arg-type]
    )


def epoch_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def decode_json(body: bytes, *, provider: str, what: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResponseFormatError(
            f"{provider}: {what}: response body is not valid JSON ({exc}); "
            f"{len(body)} bytes received",
            provider=provider,
        ) from None


class ProviderAdapter(ABC):
    """Everything provider-specific. Subclasses set the class attributes and the hooks."""

    name: str
    page_limit: int
    requires_key: bool = False
    # Query parameter names whose values are secrets (redacted from every URL we record).
    secret_params: frozenset[str] = frozenset()
    # The provider's documented quota; None = learn it from the server's headers.
    default_quota: QuotaPolicy | None = None
    default_base_url: str = ""
    # Statuses that mean "slow down" (Binance adds 418, its IP ban): they pause every process.
    throttle_statuses: frozenset[int] = frozenset({429})

    @abstractmethod
    def bars_request(self, symbol: str, *, start: datetime, end: datetime) -> ApiRequest: ...

    @abstractmethod
    def latest_request(self, symbol: str) -> ApiRequest: ...

    @abstractmethod
    def authenticate(self, request: ApiRequest, api_key: str) -> ApiRequest: ...

    @abstractmethod
    def read_page(
        self, payload: Any, *, request: ApiRequest, start: datetime, end: datetime
    ) -> PageInfo:
        """Coverage and the next request from a decoded page of bars."""

    @abstractmethod
    def parse_bars(self, body: bytes, *, symbol: str, partition: str | None = None) -> ParsedBars:
        """Map one verbatim response body to canonical bar columns (strict: errors name fields)."""

    @abstractmethod
    def parse_latest(self, payload: Any, *, symbol: str) -> datetime: ...

    def classify(
        self,
        *,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime | None = None,
    ) -> Verdict:
        """Decide what a response means. Override ``body_throttle`` for in-body throttles."""
        if status in self.throttle_statuses:
            return Verdict(
                "throttled",
                f"HTTP {status} from {self.name}: {self.error_message(body)}",
                server_wait_s=parse_retry_after(headers.get("retry-after"), now=now),
            )
        if status >= 500 or status == 408:
            return Verdict(
                "retry",
                f"HTTP {status} from {self.name}",
                server_wait_s=parse_retry_after(headers.get("retry-after"), now=now),
            )
        if status >= 400:
            return Verdict("fatal", f"HTTP {status} from {self.name}: {self.error_message(body)}")
        if status >= 300:
            # We never follow redirects: a moved API is a configuration problem to fix.
            where = headers.get("location", "?")
            return Verdict(
                "fatal", f"HTTP {status} redirect from {self.name} to {where}: check the base URL"
            )
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # A body cut short by a proxy or a flaky upstream is worth another attempt.
            return Verdict("retry", f"malformed JSON body from {self.name}: field 'body' ({exc})")
        throttle = self.body_throttle(payload)
        if throttle is not None:
            return throttle
        return Verdict("ok", "ok", payload=payload)

    def rate_limit_signal(
        self, headers: Mapping[str, str], *, now: datetime | None = None
    ) -> RateLimitSignal | None:
        """Hook: what a response says about the quota. The default reads the standard
        headers; a provider with its own (e.g. a used-weight header) overrides this."""
        return parse_rate_limit_headers(
            headers, now_epoch=now.timestamp() if now is not None else None
        )

    def body_throttle(self, payload: Any) -> Verdict | None:
        """Hook: a provider that reports throttling inside a 200 body returns a Verdict here."""
        return None

    def error_message(self, body: bytes) -> str:
        """A short, safe excerpt of an error body for the exception message."""
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return body[:200].decode("utf-8", "replace")
        if isinstance(payload, dict):
            for key in ("error", "message", "msg"):
                if key in payload:
                    return str(payload[key])[:200]
        return json.dumps(payload)[:200]
