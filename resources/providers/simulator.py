"""Adapter for the project's own market-data simulator (``fin-assets simulator``).

Its dialect: ``GET /v1/bars`` with ISO-8601 ``start``/``end``, at most 1000 bars a page, an
opaque ``next_cursor``, and each page stating the ``window`` it covers; the key travels as the
``apikey`` query parameter (like several real providers), which is why URLs are redacted.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import polars as pl

from resources.errors import SchemaError
from resources.providers.base import (
    BAR_SCHEMA,
    ApiRequest,
    PageInfo,
    ParsedBars,
    ProviderAdapter,
    Verdict,
    decode_json,
)

ISO_FMT = "%Y-%m-%dT%H:%M:%SZ"
# Field in the provider's bar -> canonical column; required fields fail loudly when absent.
REQUIRED_FIELDS = {"t": "ts", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}
OPTIONAL_FIELDS = {"n": "trades", "vw": "vwap"}
KNOWN_FIELDS = frozenset(REQUIRED_FIELDS) | frozenset(OPTIONAL_FIELDS)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(ISO_FMT)


def parse_iso(value: Any) -> datetime:
    return datetime.strptime(value, ISO_FMT).replace(tzinfo=UTC)


class SimulatorAdapter(ProviderAdapter):
    name = "simulator"
    page_limit = 1000
    secret_params = frozenset({"apikey"})

    def bars_request(self, symbol: str, *, start: datetime, end: datetime) -> ApiRequest:
        params = {
            "symbol": symbol,
            "start": iso(start),
            "end": iso(end),
            "limit": str(self.page_limit),
        }
        return ApiRequest("/v1/bars", params)

    def latest_request(self, symbol: str) -> ApiRequest:
        return ApiRequest("/v1/latest", {"symbol": symbol})

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiRequest:
        return ApiRequest(
            request.path, {**request.params, "apikey": api_key}, request.headers, request.weight
        )

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

    def parse_bars(self, body: bytes, *, symbol: str, partition: str | None = None) -> ParsedBars:
        where = f"{self.name}: symbol {symbol}" + (f", partition {partition}" if partition else "")
        payload = decode_json(body, provider=self.name, what=where)
        bars = payload.get("bars") if isinstance(payload, dict) else None
        if not isinstance(bars, list):
            raise SchemaError(
                f"{where}: field 'bars' is missing or not a list",
                provider=self.name,
                symbol=symbol,
                partition=partition,
                field="bars",
            )
        unknown: Counter[str] = Counter()
        for index, bar in enumerate(bars):
            if not isinstance(bar, dict):
                raise SchemaError(
                    f"{where}: bar {index} is not an object",
                    provider=self.name,
                    symbol=symbol,
                    partition=partition,
                )
            missing = [f for f in REQUIRED_FIELDS if f not in bar]
            if missing:
                raise SchemaError(
                    f"{where}: field {missing[0]!r} missing in bar {index} "
                    f"(bar has {sorted(bar)}); the provider's schema changed",
                    provider=self.name,
                    symbol=symbol,
                    partition=partition,
                    field=missing[0],
                )
            unknown.update(k for k in bar if k not in KNOWN_FIELDS)
        columns: dict[str, list[Any]] = {}
        for src, dst in {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}.items():
            values = [bar.get(src) for bar in bars]
            kind = str if src == "t" else (int if src == "n" else (int, float))
            for index, value in enumerate(values):
                ok = (
                    value is None
                    and src in OPTIONAL_FIELDS
                    or (isinstance(value, kind) and not isinstance(value, bool))
                )
                if not ok:
                    expected = (
                        "an ISO-8601 string"
                        if src == "t"
                        else ("an integer" if src == "n" else "a number")
                    )
                    raise SchemaError(
                        f"{where}: field {src!r} in bar {index} is {type(value).__name__} "
                        f"{value!r:.40}, expected {expected}",
                        provider=self.name,
                        symbol=symbol,
                        partition=partition,
                        field=src,
                    )
            columns[dst] = values
        frame = pl.DataFrame(
            {
                "symbol": [symbol] * len(bars),
                "ts": columns["ts"],
                **{c: columns[c] for c in ("open", "high", "low", "close", "volume")},
                "trades": columns["trades"],
                "vwap": columns["vwap"],
            },
            schema={**BAR_SCHEMA, "ts": pl.String()},
        )
        try:
            frame = frame.with_columns(
                pl.col("ts").str.to_datetime(ISO_FMT, time_unit="us", time_zone="UTC", strict=True)
            )
        except pl.exceptions.PolarsError:
            raise SchemaError(
                f"{where}: field 't' holds a timestamp not in {ISO_FMT}",
                provider=self.name,
                symbol=symbol,
                partition=partition,
                field="t",
            ) from None
        return ParsedBars(frame, dict(unknown))
