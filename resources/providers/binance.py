"""Binance spot klines: ``GET /api/v3/klines`` (public market data, no key).

Dialect (https://developers.binance.com/docs/binance-spot-api-docs/rest-api):
- each kline is a 12-element array, prices and volumes as decimal strings, open time in ms;
- ``startTime``/``endTime`` in ms, ``endTime`` inclusive; at most 1000 klines a request, no
  cursor: the next page starts one minute after the last open time;
- quota in request *weight* (documented: 6000 per minute per IP; klines weigh 2), counted per
  IP over calendar intervals ("a 1 MINUTE interval starts every minute"), and reported after
  every request in ``X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter)`` (S, M, H, D): the weight
  *used*, not the limit. The limit is per IP, so other software on the address spends it too:
  the documented 6000 is a ceiling, and the used weight at Binance's own 429 is the limit;
- "A Retry-After header is sent with a 418 or 429 responses and will give the number of
  seconds required to wait, in the case of a 429, to prevent a ban, or, in the case of a 418,
  until the ban is over" (rest-api, LIMITS): 429 and 418 pause every process, 418 is the ban;
- "HTTP 403 return code is used when the WAF Limit (Web Application Firewall) has been
  violated" (rest-api, HTTP Return Codes): a throttle with no Retry-After, and Binance's own
  advice is that the WAF counts requests over 5 minutes (academy.binance.com, "How to Avoid
  Getting Banned by Rate Limits"), so every process waits that long.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from resources.errors import SchemaError
from resources.providers.base import ApiRequest, PageInfo, ProviderAdapter, Verdict
from resources.providers.decoding import BarField, FastBarDecoder, epoch_ms, from_epoch_ms
from resources.ratelimit.headers import RateLimitSignal
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
# X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter); the header without an interval is legacy.
USED_WEIGHT_RE = re.compile(r"^x-mbx-used-weight-([0-9]{1,4})([smhd])$", re.IGNORECASE)
INTERVAL_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
EXCHANGE_INFO_WEIGHT = 20
LIMIT_INTERVALS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
WAF_WAIT_S = 300.0  # a 403 from the web application firewall: its 5-minute count


def used_weight_signal(headers: Mapping[str, str], *, now_epoch: float) -> RateLimitSignal | None:
    """The used weight of the shortest interval Binance reports, with that interval and its
    reset (intervals are calendar-aligned: a minute starts every minute). No limit: the
    pacer knows the quota in force, or learns it from the used weight at a 429."""
    found = []
    for name, value in headers.items():
        match = USED_WEIGHT_RE.match(name)
        if match is None or not value.strip().isdigit():
            continue
        window = int(match.group(1)) * INTERVAL_SECONDS[match.group(2).lower()]
        if window > 0:
            found.append((window, float(value), name))
    if not found:
        return None
    window, used, name = min(found)
    return RateLimitSignal(
        used=used,
        window_s=float(window),
        reset_s=window - now_epoch % window,
        source=name.upper(),
    )


class BinanceAdapter(ProviderAdapter):
    name = "binance"
    bar_fields = KLINE_FIELDS
    page_decoder = KLINES_PAGE_DECODER
    page_limit = 1000
    default_base_url = "https://api.binance.com"
    # Weight, not requests. Pace under a fixed 1-minute window: the burst stays small so no
    # minute can see more than the limit (SAFETY_RATE of it spread evenly, plus the burst).
    default_quota = QuotaPolicy(WEIGHT_PER_MINUTE, 60.0, 20, "Binance documented")
    quota_unit = "weight"
    throttle_statuses = frozenset({429, 418, 403})
    ban_statuses = frozenset({418})

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

    def limits_request(self, symbol: str) -> ApiRequest | None:
        # GET /api/v3/exchangeInfo, weight 20: "rateLimits" lists REQUEST_WEIGHT, ORDERS and
        # RAW_REQUESTS limits with their interval; one symbol keeps the answer small.
        return ApiRequest(EXCHANGE_INFO_PATH, {"symbol": symbol}, weight=EXCHANGE_INFO_WEIGHT)

    def parse_limits(self, payload: Any) -> QuotaPolicy | None:
        """The REQUEST_WEIGHT limit with the lowest rate over a window of at most an hour."""
        if not isinstance(payload, dict) or not isinstance(payload.get("rateLimits"), list):
            return None
        found = []
        for item in payload["rateLimits"]:
            if not isinstance(item, dict) or item.get("rateLimitType") != "REQUEST_WEIGHT":
                continue
            unit = LIMIT_INTERVALS.get(str(item.get("interval")))
            number, limit = item.get("intervalNum"), item.get("limit")
            if unit is None or not isinstance(number, int) or not isinstance(limit, int):
                continue
            window = unit * number
            if limit > 0 and 0 < window <= 3600:
                found.append(QuotaPolicy(limit, window, 1, "Binance exchangeInfo"))
        return min(found, key=lambda policy: policy.rate, default=None)

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiRequest:
        # Market data is public; a key, if given, goes in the documented header.
        return request.with_headers(**{"X-MBX-APIKEY": api_key})

    def rate_limit_signal(
        self, headers: Mapping[str, str], *, now: datetime | None = None
    ) -> RateLimitSignal | None:
        epoch = now.timestamp() if now is not None else time.time()
        signal = used_weight_signal(headers, now_epoch=epoch)
        return signal if signal is not None else super().rate_limit_signal(headers, now=now)

    def classify(
        self,
        *,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime | None = None,
    ) -> Verdict:
        if status == 403:
            return Verdict(
                "throttled",
                f"HTTP 403 from {self.name}: its web application firewall limit "
                f"({self.error_message(body)}); every process waits {WAF_WAIT_S:g} s",
                server_wait_s=WAF_WAIT_S,
            )
        return super().classify(status=status, headers=headers, body=body, now=now)

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
