"""The provider hook surface: one adapter per API, owning everything that differs between them.

An adapter builds requests (path, params, auth), decides what a response means (ok, retry,
throttled, fatal — including throttles a provider reports inside a 200 body), reads the page
envelope for pagination and coverage, and maps bars to the canonical schema. The client,
the rate-limit engine and the storage layers never know which provider they talk to.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import polars as pl

from resources.errors import MissingApiKeyError
from resources.http.retry import parse_retry_after
from resources.providers.decoding import (
    BAR_SCHEMA,
    PAGE_COLUMN,
    BarField,
    FastBarDecoder,
    ParsedBars,
    ParsedPages,
    canonical_bars,
    decode_json,
    frame_from_records,
)
from resources.ratelimit.headers import RateLimitSignal, parse_rate_limit_headers
from resources.ratelimit.policy import QuotaPolicy

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
    # True where the answers depend on the credential (a plan's delay or history depth): its
    # snapshots are then kept per credential, not only per endpoint (``resources/endpoints``).
    answers_depend_on_credential: bool = False
    # True when a page's envelope states the window it covers, cut at what the provider has
    # published (the simulator's "window"); otherwise a short last page may be quiet minutes or
    # data not published yet, and ingest asks the provider's latest bar (its watermark).
    reports_coverage: bool = False
    # Statuses that mean "slow down" (Binance adds 418, its IP ban): they pause every process.
    throttle_statuses: frozenset[int] = frozenset({429})
    # Those of them that are a ban: every process waits, but the quota learns nothing from it.
    ban_statuses: frozenset[int] = frozenset()
    # What the provider's quota and its headers count: "weight" (each request's
    # ``ApiRequest.weight``, as Binance's used weight) or "requests" (one per request, as
    # ``X-RateLimit-*`` and the IETF draft's default unit). The pacer books that unit.
    quota_unit: Literal["weight", "requests"] = "requests"
    # The raw dataset its 1-minute bars are kept under. A provider whose bars could once be
    # asked split-adjusted names its unadjusted ones apart, so snapshots fetched adjusted by an
    # earlier version are never read as unadjusted (docs/corporate-actions.md).
    bars_dataset: str = "bars_1m"
    # Splits and cash dividends of its equities: a MassiveCorporateActions
    # (resources/providers/corporate_actions.py, which imports this module: hence Any); None:
    # the provider has none, as crypto.
    corporate_actions: Any = None

    def has_corporate_actions(self, symbol: str) -> bool:
        """Whether ``symbol`` can have corporate actions at this provider (a stock, not a
        crypto pair, a currency or an index)."""
        return self.corporate_actions is not None

    def check_api_key(self, api_key: str | None, *, variable: str = "FIN_API_KEY") -> None:
        """Refuse to start without a key where the provider needs one (before any request);
        ``variable`` is the environment variable that should hold it."""
        if self.requires_key and not api_key:
            raise MissingApiKeyError(
                f"provider {self.name} needs an API key: set {variable}", provider=self.name
            )

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

    # Where a page keeps each value of a bar, the page's typed decoder, and the keys of a bar
    # object we know (None: bars are arrays, or unknown keys are not counted).
    bar_fields: tuple[BarField, ...]
    page_decoder: FastBarDecoder
    known_keys: frozenset[str] | None = None

    @abstractmethod
    def page_records(
        self, payload: Any, *, symbol: str, partition: str | None, where: str
    ) -> Sequence[Any]:
        """The bar records of a decoded page; a SchemaError if its envelope is not the
        provider's (``where`` names provider, symbol and partition for the message)."""

    def bar_layout(self, symbol: str) -> tuple[tuple[BarField, ...], FastBarDecoder]:
        """The fields and the decoder of ``symbol``'s bars (one layout for every symbol,
        unless an asset class sends fewer fields: Polygon's indices have no volume)."""
        return self.bar_fields, self.page_decoder

    def finish_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Columns the provider does not send but its values give (Binance's VWAP)."""
        return frame

    def parse_bars(self, body: bytes, *, symbol: str, partition: str | None = None) -> ParsedBars:
        """Map one verbatim response body to canonical bar columns (strict: errors name fields).

        The typed decoder takes a clean page in one pass; anything else (a wrong type, a null,
        a new key, a body that is not JSON) goes through the precise per-value checks, which
        name the problem or count the unknown key."""
        fields, decoder = self.bar_layout(symbol)
        frame = decoder.frame(body, provider=self.name, symbol=symbol, partition=partition)
        unknown: dict[str, int] = {}
        if frame is None:
            where = f"{self.name}: symbol {symbol}" + (
                f", partition {partition}" if partition else ""
            )
            records = self.page_records(
                decode_json(body, provider=self.name, what=where),
                symbol=symbol,
                partition=partition,
                where=where,
            )
            frame, unknown = frame_from_records(
                records,
                fields,
                provider=self.name,
                symbol=symbol,
                partition=partition,
                known_keys=self.known_keys,
            )
        return ParsedBars(canonical_bars(self.finish_frame(frame), symbol=symbol), unknown)

    @abstractmethod
    def parse_latest(self, payload: Any, *, symbol: str) -> datetime: ...

    def parse_pages(
        self, pages: Sequence[tuple[str, bytes]], *, partition: str | None = None
    ) -> ParsedPages:
        """``(symbol, body)`` pages, each through ``parse_bars``, as one frame.

        Page by page on purpose: decoding a page and building its columns while its values are
        still in the CPU cache measured 1.6x faster than decoding many pages into shared
        columns first (fewer calls, but every value fetched from memory again)."""
        frames = []
        unknown: Counter[str] = Counter()
        for index, (symbol, body) in enumerate(pages):
            parsed = self.parse_bars(body, symbol=symbol, partition=partition)
            unknown.update(parsed.unknown_fields)
            page = pl.Series(PAGE_COLUMN, [index], dtype=pl.UInt32())
            frames.append(parsed.frame.hstack([page.new_from_index(0, parsed.frame.height)]))
        if not frames:
            return ParsedPages(pl.DataFrame(schema={**BAR_SCHEMA, PAGE_COLUMN: pl.UInt32()}), {})
        return ParsedPages(pl.concat(frames), dict(unknown))

    def classify(
        self,
        *,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime | None = None,
    ) -> Verdict:
        """Decide what a response means. Override ``body_throttle`` for in-body throttles.

        ``server_wait_s`` is ``Retry-After`` read as RFC 9110 says; a zero or invalid value
        is no hint (the client then waits for the quota window, or backs off)."""
        if status in self.throttle_statuses:
            return Verdict(
                "throttled",
                f"HTTP {status} from {self.name}: {self.error_message(body)}",
                server_wait_s=parse_retry_after(headers.get("retry-after"), now=now),
            )
        if status == 403 and (wait := self.rate_limited_403(headers, now=now)) is not None:
            return Verdict(
                "throttled",
                f"HTTP 403 from {self.name} with its rate limit spent: {self.error_message(body)}",
                server_wait_s=wait or None,
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

    def limits_request(self, symbol: str) -> ApiRequest | None:
        """Where the provider publishes the limits in force for the caller (Binance's
        ``exchangeInfo.rateLimits``); None: it does not. Read once per client, before its first
        data request, so the quota is known instead of slow-started."""
        return None

    def parse_limits(self, payload: Any) -> QuotaPolicy | None:
        """The quota to pace by from ``limits_request``'s answer (None: nothing usable)."""
        return None

    def rate_limited_403(
        self, headers: Mapping[str, str], *, now: datetime | None = None
    ) -> float | None:
        """Whether a 403 is a rate limit rather than "forbidden", and then how long to wait.

        GitHub answers a spent quota with 403 as well as 429: "If you exceed your primary rate
        limit, you will receive a 403 Forbidden or 429 Too Many Requests response, and the
        x-ratelimit-remaining header will be 0 ... you should not make another request until
        after the time specified by the x-ratelimit-reset header"; and "If the retry-after
        response header is present, you should not retry your request until after that many
        seconds has elapsed" (docs.github.com, REST API, troubleshooting: rate limit errors).
        So a 403 is a rate limit when it says so in its headers: a ``Retry-After``, or a
        remaining of 0 in any rate-limit field (``X-RateLimit-Remaining``,
        ``RateLimit-Remaining``, an IETF ``RateLimit`` item with ``r=0``). Then the wait is the
        Retry-After, else the reset (0.0: said spent without a reset; the client backs off).
        A 403 without them (a key without the plan, a forbidden path) is None: fatal at once,
        as before. A secondary limit GitHub states in its body only is not told apart from a
        forbidden here."""
        retry_after = parse_retry_after(headers.get("retry-after"), now=now)
        if retry_after:
            return retry_after
        signal = parse_rate_limit_headers(
            headers, now_epoch=None if now is None else now.timestamp()
        )
        if signal is None:
            return None
        spent = [item.reset_s for item in signal.limits if item.remaining == 0]
        if signal.remaining == 0:
            spent.append(signal.reset_s)
        if not spent:
            return None
        return max((reset for reset in spent if reset), default=0.0)

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
