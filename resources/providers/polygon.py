"""Polygon.io aggregates, now Massive: ``GET /v2/aggs/ticker/{ticker}/range/1/minute/{from}/{to}``.

Dialect (https://polygon.io/docs/stocks/get_v2_aggs_ticker__stocksticker__range__multiplier___timespan___from___to,
now https://massive.com/docs: "Polygon.io is now Massive.com ... your APIs, accounts and
integrations continue to work"; ``api.massive.com`` is the host, ``api.polygon.io`` answers):
- key as ``Authorization: Bearer``; bars ``{t (ms), o, h, l, c, v, vw, n}``; no bar for a
  minute without trades; ``from``/``to`` in ms, ``to`` inclusive;
- the same endpoint serves every asset class, by ticker prefix: ``X:BTCUSD`` (crypto),
  ``C:EURUSD`` (forex), ``I:NDX`` (indices), ``O:SPY251219C00650000`` (options), as its own
  client libraries send them. Index bars carry no volume and no VWAP: stored as nulls;
- ``adjusted`` defaults to true: prices divided by every split known *on the day of the
  request*, so the same minute comes back in another price scale after a split. We always ask
  ``adjusted=false`` (what traded) and adjust ourselves from the corporate actions
  (``resources/providers/corporate_actions.py``, ``resources/tables/adjustment.py``);
- pagination by an absolute ``next_url`` with a cursor. We follow only its path and query,
  on the configured base URL: the bearer token is never sent to a host we were not told about;
- a plan allows N calls per minute (5 on the free plan): over it, 429 with no ``Retry-After``
  and no rate-limit headers at all, so the documented quota is the ceiling, and a 429 means
  "wait for the window" (something else, a notebook or a second instance, spent the key's
  calls): every process waits the whole window, and the quota in force is lowered.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from resources.errors import SchemaError
from resources.providers.base import ApiRequest, PageInfo, ProviderAdapter
from resources.providers.corporate_actions import MassiveCorporateActions
from resources.providers.decoding import BarField, FastBarDecoder, epoch_ms, from_epoch_ms
from resources.ratelimit.policy import QuotaPolicy

AGG_FIELDS = (
    BarField("t", "ts", "ms"),
    BarField("o", "open", "number"),
    BarField("h", "high", "number"),
    BarField("l", "low", "number"),
    BarField("c", "close", "number"),
    BarField("v", "volume", "number"),
    BarField("n", "trades", "int", required=False),
    BarField("vw", "vwap", "number", required=False),
)
KNOWN_KEYS = frozenset(str(f.source) for f in AGG_FIELDS) | {"otc"}
# "results" is absent when there is no bar at all.
PAGE_DECODER = FastBarDecoder(
    AGG_FIELDS, records="results", records_optional=True, known_keys=KNOWN_KEYS
)
# An index has no trades: no volume, no VWAP, no count. Only its bars may lack a volume.
INDEX_PREFIX = "I:"
INDEX_FIELDS = tuple(
    BarField(f.source, f.column, f.kind, required=False) if f.column == "volume" else f
    for f in AGG_FIELDS
)
INDEX_PAGE_DECODER = FastBarDecoder(
    INDEX_FIELDS, records="results", records_optional=True, known_keys=KNOWN_KEYS
)


class PolygonAdapter(ProviderAdapter):
    name = "polygon"
    bar_fields = AGG_FIELDS
    page_decoder = PAGE_DECODER
    known_keys = KNOWN_KEYS
    page_limit = 50_000
    requires_key = True
    secret_params = frozenset({"apiKey"})
    default_base_url = "https://api.massive.com"  # FIN_API_BASE_URL=https://api.polygon.io
    # Plans differ in what they answer (15-minute delayed vs real-time data, years of history).
    answers_depend_on_credential = True
    # Free plan: 5 calls a minute. Burst 1 keeps any 60 s window at or under 5.
    default_quota = QuotaPolicy(5, 60.0, 1, "Polygon free plan")
    # Unadjusted since corporate actions: the earlier versions' split-adjusted snapshots stay
    # under "bars_1m", never read again (docs/corporate-actions.md, migrating).
    bars_dataset = "bars_1m_unadjusted"
    corporate_actions = MassiveCorporateActions("polygon")

    def has_corporate_actions(self, symbol: str) -> bool:
        # X:BTCUSD, C:EURUSD, I:NDX and O:... have no splits or dividends of their own.
        return ":" not in symbol

    def bar_layout(self, symbol: str) -> tuple[tuple[BarField, ...], FastBarDecoder]:
        if symbol.startswith(INDEX_PREFIX):
            return INDEX_FIELDS, INDEX_PAGE_DECODER
        return self.bar_fields, self.page_decoder

    def _path(self, symbol: str, start: datetime, end: datetime) -> str:
        return f"/v2/aggs/ticker/{symbol}/range/1/minute/{epoch_ms(start)}/{epoch_ms(end) - 1}"

    def bars_request(self, symbol: str, *, start: datetime, end: datetime) -> ApiRequest:
        return ApiRequest(
            self._path(symbol, start, end),
            {"adjusted": "false", "sort": "asc", "limit": str(self.page_limit)},
        )

    def latest_request(self, symbol: str) -> ApiRequest:
        end = datetime.now().astimezone().replace(second=0, microsecond=0)
        return ApiRequest(
            self._path(symbol, end - timedelta(days=3), end),
            {"adjusted": "false", "sort": "desc", "limit": "1"},
        )

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiRequest:
        return request.with_headers(Authorization=f"Bearer {api_key}")

    def _results(self, payload: Any, *, symbol: str | None) -> list[Any]:
        if not isinstance(payload, dict):
            raise SchemaError(
                f"{self.name}: symbol {symbol}: expected a JSON object, got "
                f"{type(payload).__name__}",
                provider=self.name,
                symbol=symbol,
            )
        results = payload.get("results", [])  # absent when there is no bar at all
        if not isinstance(results, list):
            raise SchemaError(
                f"{self.name}: symbol {symbol}: field 'results' is not a list",
                provider=self.name,
                symbol=symbol,
                field="results",
            )
        return results

    def read_page(
        self, payload: Any, *, request: ApiRequest, start: datetime, end: datetime
    ) -> PageInfo:
        symbol = request.path.split("/")[4] if request.path.count("/") > 4 else None
        results = self._results(payload, symbol=symbol)
        page_start = request.covers_from or start
        next_url = payload.get("next_url")
        if not next_url:
            return PageInfo(page_start, end, len(results), None)
        if not results:
            raise SchemaError(
                f"{self.name}: symbol {symbol}: a page with next_url but no results",
                provider=self.name,
                symbol=symbol,
                field="next_url",
            )
        # Quiet minutes have no bar, so this page covers up to its last bar's minute.
        page_end = from_epoch_ms(int(results[-1]["t"])) + timedelta(minutes=1)
        split = urlsplit(str(next_url))
        next_request = ApiRequest(
            split.path,
            dict(parse_qsl(split.query)),
            request.headers,
            request.weight,
            covers_from=page_end,
        )
        return PageInfo(page_start, page_end, len(results), next_request)

    def parse_latest(self, payload: Any, *, symbol: str) -> datetime:
        results = self._results(payload, symbol=symbol)
        if not results or not isinstance(results[0].get("t"), int):
            raise SchemaError(
                f"{self.name}: symbol {symbol}: no bar in the last three days",
                provider=self.name,
                symbol=symbol,
                field="t",
            )
        return from_epoch_ms(results[0]["t"])

    def page_records(
        self, payload: Any, *, symbol: str, partition: str | None, where: str
    ) -> list[Any]:
        return self._results(payload, symbol=symbol)
