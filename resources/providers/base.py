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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from resources.errors import ResponseFormatError
from resources.ratelimit import QuotaPolicy, RateLimitSignal, parse_rate_limit_headers

VerdictKind = Literal["ok", "retry", "throttled", "fatal"]


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP GET, relative to the provider's base URL. ``weight`` is its quota cost."""

    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1


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
        if status == 429:
            return Verdict(
                "throttled",
                f"HTTP 429 from {self.name}",
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
