"""Binance spot klines: ``GET /api/v3/klines`` (public market data, no key).

Dialect (https://developers.binance.com/docs/binance-spot-api-docs/rest-api):
- each kline is a 12-element array, prices and volumes as decimal strings, open time in ms;
- ``startTime``/``endTime`` in ms, ``endTime`` inclusive; at most 1000 klines a request, no
  cursor: the next page starts one minute after the last open time;
- quota in request *weight* (6000 per minute per IP; klines weigh 2), reported after every
  request in ``X-MBX-USED-WEIGHT-1m``; over it, 429 + ``Retry-After``; a client that keeps
  going gets 418 — an IP ban with ``Retry-After`` — which must stop every process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from resources.errors import SchemaError
from resources.providers.base import ApiRequest, PageInfo, ProviderAdapter
from resources.providers.decoding import BarField, FastBarDecoder, epoch_ms, from_epoch_ms
from resources.ratelimit.headers import RateLimitSignal, parse_rate_limit_headers
from resources.ratelimit.policy import QuotaPolicy

KLINE_FIELDS = (
    BarField(0, "ts", "ms"),
    BarField(1, "open", "decimal"),
    BarField(2, "high", "decimal"),
    BarField(3, "low", "decimal"),
    BarField(4, "close", "decimal"),
    BarField(5, "volume", "decimal"),
    BarField(7, "_quote_volume", "decimal"),
    BarField(8, "trades", "int"),
)
KLINES_PAGE_DECODER = FastBarDecoder(KLINE_FIELDS)  # the body is the array of klines
KLINES_WEIGHT = 2
WEIGHT_PER_MINUTE = 6000
USED_WEIGHT_HEADER = "x-mbx-used-weight-1m"


class BinanceAdapter(ProviderAdapter):
    name = "binance"
    bar_fields = KLINE_FIELDS
    page_decoder = KLINES_PAGE_DECODER
    page_limit = 1000
    default_base_url = "https://api.binance.com"
    # Weight, not requests. Pace under a fixed 1-minute window: the burst stays small so no
    # minute can see more than the limit (98 % of it spread evenly, plus the burst).
    default_quota = QuotaPolicy(WEIGHT_PER_MINUTE, 60.0, 40, "Binance documented")
    throttle_statuses = frozenset({429, 418})

    def bars_request(self, symbol: str, *, start: datetime, end: datetime) -> ApiRequest:
        return ApiRequest(
            "/api/v3/klines",
            {
                "symbol": symbol,
                "interval": "1m",
                "startTime": str(epoch_ms(start)),
                "endTime": str(epoch_ms(end) - 1),  # inclusive on open time
                "limit": str(self.page_limit),
            },
            weight=KLINES_WEIGHT,
        )

    def latest_request(self, symbol: str) -> ApiRequest:
        # The newest closed kline: limit=2 returns the open one and the one before it.
        return ApiRequest(
            "/api/v3/klines",
            {"symbol": symbol, "interval": "1m", "limit": "2"},
            weight=KLINES_WEIGHT,
        )

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiRequest:
        # Market data is public; a key, if given, goes in the documented header.
        return request.with_headers(**{"X-MBX-APIKEY": api_key})

    def rate_limit_signal(
        self, headers: Mapping[str, str], *, now: datetime | None = None
    ) -> RateLimitSignal | None:
        used = headers.get(USED_WEIGHT_HEADER)
        if used is None:
            return super().rate_limit_signal(headers, now=now)
        try:
            used_weight = float(used)
        except ValueError:
            return parse_rate_limit_headers(headers)
        epoch = now.timestamp() if now is not None else time.time()
        return RateLimitSignal(
            limit=WEIGHT_PER_MINUTE,
            remaining=WEIGHT_PER_MINUTE - used_weight,
            reset_s=60.0 - epoch % 60.0,  # the weight window is the calendar minute
            source="X-MBX-USED-WEIGHT-1m",
        )

    def _klines(self, payload: Any, *, symbol: str | None) -> list[Any]:
        if not isinstance(payload, list):
            raise SchemaError(
                f"{self.name}: symbol {symbol}: expected a JSON array of klines, got "
                f"{type(payload).__name__}",
                provider=self.name,
                symbol=symbol,
                field="klines",
            )
        return payload

    def read_page(
        self, payload: Any, *, request: ApiRequest, start: datetime, end: datetime
    ) -> PageInfo:
        symbol = request.params.get("symbol")
        klines = self._klines(payload, symbol=symbol)
        page_start = from_epoch_ms(int(request.params["startTime"]))
        if len(klines) < int(request.params["limit"]):
            return PageInfo(page_start, end, len(klines), None)
        try:
            next_start = from_epoch_ms(int(klines[-1][0])) + timedelta(minutes=1)
        except (TypeError, ValueError, IndexError):
            raise SchemaError(
                f"{self.name}: symbol {symbol}: last kline has no open time at position 0",
                provider=self.name,
                symbol=symbol,
                field="0",
            ) from None
        if next_start >= end:
            return PageInfo(page_start, end, len(klines), None)
        return PageInfo(
            page_start,
            next_start,
            len(klines),
            request.with_params(startTime=str(epoch_ms(next_start))),
        )

    def parse_latest(self, payload: Any, *, symbol: str) -> datetime:
        klines = self._klines(payload, symbol=symbol)
        now_ms = epoch_ms(datetime.now().astimezone())
        closed = [k for k in klines if isinstance(k, list) and len(k) > 6 and k[6] < now_ms]
        if not closed:
            raise SchemaError(
                f"{self.name}: symbol {symbol}: no closed kline in the latest-bar response",
                provider=self.name,
                symbol=symbol,
                field="6",
            )
        return from_epoch_ms(int(closed[-1][0]))

    def page_records(
        self, payload: Any, *, symbol: str, partition: str | None, where: str
    ) -> list[Any]:
        return self._klines(payload, symbol=symbol)

    def finish_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        # Binance has no VWAP: quote volume / base volume is exactly that minute's VWAP.
        return frame.with_columns(
            pl.when(pl.col("volume") > 0)
            .then(pl.col("_quote_volume") / pl.col("volume"))
            .otherwise(None)
            .alias("vwap")
        )
