"""Adapter for the project's own market-data simulator (``fin-assets simulator``).

Its dialect: ``GET /v1/bars`` with ISO-8601 ``start``/``end``, at most 1000 bars a page, an
opaque ``next_cursor``, and each page stating the ``window`` it covers; the key travels as the
``apikey`` query parameter (like several real providers), which is why URLs are redacted.
It has no documented quota: the client learns it from the RateLimit headers it sends.

Its equities (symbols on an exchange calendar) have splits and cash dividends, served at
``/stocks/v1/splits`` and ``/stocks/v1/dividends`` in Massive's format, and its bars are
unadjusted unless asked ``adjusted=true``: we ask ``adjusted=false``, explicitly, so every
snapshot's URL says what it holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from resources.errors import SchemaError
from resources.providers.base import ApiRequest, PageInfo, ProviderAdapter, Verdict
from resources.providers.corporate_actions import MassiveCorporateActions
from resources.providers.decoding import ISO_FMT, BarField, FastBarDecoder

FIELDS = (
    BarField("t", "ts", "iso"),
    BarField("o", "open", "number"),
    BarField("h", "high", "number"),
    BarField("l", "low", "number"),
    BarField("c", "close", "number"),
    BarField("v", "volume", "number"),
    BarField("n", "trades", "int", required=False),
    BarField("vw", "vwap", "number", required=False),
)
KNOWN_KEYS = frozenset(str(f.source) for f in FIELDS)
PAGE_DECODER = FastBarDecoder(FIELDS, records="bars", known_keys=KNOWN_KEYS)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(ISO_FMT)


def parse_iso(value: Any) -> datetime:
    return datetime.strptime(value, ISO_FMT).replace(tzinfo=UTC)


class SimulatorAdapter(ProviderAdapter):
    name = "simulator"
    bar_fields = FIELDS
    page_decoder = PAGE_DECODER
    known_keys = KNOWN_KEYS
    page_limit = 1000
    secret_params = frozenset({"apikey"})
    default_base_url = "http://127.0.0.1:8765"
    # The envelope's "window" ends where the simulator's published data ends (its clock).
    reports_coverage = True
    corporate_actions = MassiveCorporateActions("simulator")

    def bars_request(self, symbol: str, *, start: datetime, end: datetime) -> ApiRequest:
        params = {
            "symbol": symbol,
            "start": iso(start),
            "end": iso(end),
            "limit": str(self.page_limit),
            "adjusted": "false",
        }
        return ApiRequest("/v1/bars", params)

    def latest_request(self, symbol: str) -> ApiRequest:
        return ApiRequest("/v1/latest", {"symbol": symbol})

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiRequest:
        return request.with_params(apikey=api_key)

    def body_throttle(self, payload: Any) -> Verdict | None:
        if isinstance(payload, dict) and payload.get("code") == "THROTTLED":
            wait = payload.get("retry_after")
            return Verdict(
                "throttled",
                f"throttle message in a 200 body from {self.name}: {payload.get('message')}",
                server_wait_s=float(wait) if isinstance(wait, int | float) else None,
            )
        return None

    def read_page(
        self, payload: Any, *, request: ApiRequest, start: datetime, end: datetime
    ) -> PageInfo:
        symbol = request.params.get("symbol")
        try:
            window = payload["window"]
            coverage_start = parse_iso(window["start"])
            coverage_end = parse_iso(window["end"])
            bars = payload["bars"]
            cursor = payload["next_cursor"]
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(
                f"{self.name}: symbol {symbol}: page envelope is missing or has a bad "
                f"field {exc!s} (expected window.start, window.end, bars, next_cursor)",
                provider=self.name,
                symbol=symbol,
                field=str(exc).strip("'"),
            ) from None
        next_request = None
        if cursor is not None:
            params = {k: v for k, v in request.params.items() if k != "start"}
            next_request = ApiRequest(
                request.path, {**params, "cursor": str(cursor)}, request.headers, request.weight
            )
        return PageInfo(coverage_start, coverage_end, len(bars), next_request)

    def parse_latest(self, payload: Any, *, symbol: str) -> datetime:
        try:
            return parse_iso(payload["t"])
        except (KeyError, TypeError, ValueError):
            raise SchemaError(
                f"{self.name}: symbol {symbol}: latest-bar response has no valid field 't'",
                provider=self.name,
                symbol=symbol,
                field="t",
            ) from None

    def page_records(
        self, payload: Any, *, symbol: str, partition: str | None, where: str
    ) -> list[Any]:
        bars = payload.get("bars") if isinstance(payload, dict) else None
        if not isinstance(bars, list):
            raise SchemaError(
                f"{where}: field 'bars' is missing or not a list",
                provider=self.name,
                symbol=symbol,
                partition=partition,
                field="bars",
            )
        return bars
