"""Binance and Polygon adapters against fixtures shaped like their documented responses."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from resources.endpoints import Feed
from resources.errors import InvalidInputError, SchemaError
from resources.providers import get_adapter
from resources.providers.base import ApiRequest
from resources.providers.binance import BinanceAdapter
from resources.providers.decoding import BAR_SCHEMA
from resources.providers.polygon import PolygonAdapter
from resources.simulator.adapter import SimulatorAdapter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HOUR = datetime(2026, 1, 5, tzinfo=UTC)
PARTITION = "2026-01-05-00:00"


def fixture(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


# -- Binance -------------------------------------------------------------------------------
def test_binance_klines_map_to_the_canonical_schema_field_by_field() -> None:
    body = fixture("binance", "klines_BTCUSDT_2026-01-05T00.json")
    parsed = BinanceAdapter().parse_bars(body, symbol="BTCUSDT", partition=PARTITION)
    frame = parsed.frame
    assert frame.schema == pl.Schema(BAR_SCHEMA)
    klines = json.loads(body)
    assert frame.height == len(klines) == 60
    for row, kline in zip(frame.iter_rows(named=True), klines, strict=True):
        assert row["symbol"] == "BTCUSDT"
        assert ms(row["ts"]) == kline[0]
        assert (row["open"], row["high"], row["low"], row["close"]) == tuple(
            float(v) for v in kline[1:5]
        )
        assert row["volume"] == float(kline[5])
        assert row["trades"] == kline[8]
        assert row["vwap"] == pytest.approx(float(kline[7]) / float(kline[5]))
    assert parsed.unknown_fields == {}


def test_binance_empty_result_is_an_empty_canonical_frame() -> None:
    parsed = BinanceAdapter().parse_bars(fixture("binance", "klines_empty.json"), symbol="BTCUSDT")
    assert parsed.frame.height == 0 and parsed.frame.schema == pl.Schema(BAR_SCHEMA)


def test_binance_paging_by_last_open_time_and_partial_last_page() -> None:
    adapter = BinanceAdapter()
    end = HOUR + timedelta(days=1)
    first = adapter.bars_request("BTCUSDT", start=HOUR, end=end)
    assert first.params["endTime"] == str(ms(end) - 1)  # endTime is inclusive
    assert first.weight == 2
    full_page = [[ms(HOUR) + i * 60_000, "1", "1", "1", "1", "1", 0, "1", 1] for i in range(1000)]
    page = adapter.read_page(full_page, request=first, start=HOUR, end=end)
    assert page.coverage_start == HOUR
    assert page.coverage_end == HOUR + timedelta(minutes=1000)
    assert page.next_request is not None
    assert page.next_request.params["startTime"] == str(ms(HOUR) + 1000 * 60_000)
    partial = json.loads(fixture("binance", "klines_partial_last_page.json"))
    assert 0 < len(partial) < 1000
    last = adapter.read_page(partial, request=page.next_request, start=HOUR, end=end)
    assert last.next_request is None
    assert (last.coverage_start, last.coverage_end) == (HOUR + timedelta(minutes=1000), end)


def test_binance_error_bodies_and_the_ban() -> None:
    adapter = BinanceAdapter()
    invalid = adapter.classify(
        status=400, headers={}, body=fixture("binance", "error_invalid_symbol.json")
    )
    assert invalid.kind == "fatal" and "Invalid symbol." in invalid.reason
    too_many = adapter.classify(
        status=429, headers={"retry-after": "30"}, body=fixture("binance", "error_429.json")
    )
    assert too_many.kind == "throttled" and too_many.server_wait_s == 30
    banned = adapter.classify(
        status=418, headers={"retry-after": "120"}, body=fixture("binance", "error_418.json")
    )
    assert banned.kind == "throttled" and banned.server_wait_s == 120
    assert "IP banned" in banned.reason


def test_binance_used_weight_header_becomes_a_quota_signal() -> None:
    now = datetime(2026, 1, 5, 0, 0, 45, tzinfo=UTC)
    signal = BinanceAdapter().rate_limit_signal({"x-mbx-used-weight-1m": "6000"}, now=now)
    assert signal is not None
    # The header says what is used, not the limit: that is the quota in force's business.
    assert (signal.used, signal.window_s, signal.limit, signal.remaining) == (6000, 60, None, None)
    assert signal.reset_s == pytest.approx(15.0)  # the weight window is the calendar minute
    # X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter): any interval, the shortest one wins.
    other = BinanceAdapter().rate_limit_signal(
        {"x-mbx-used-weight-1h": "900", "x-mbx-used-weight-10s": "12"}, now=now
    )
    assert other is not None and (other.used, other.window_s) == (12, 10)
    assert other.reset_s == pytest.approx(5.0)


def test_binance_drift_names_the_field() -> None:
    klines = json.loads(fixture("binance", "klines_BTCUSDT_2026-01-05T00.json"))
    klines[3][4] = 307.1  # close as a number, not a decimal string
    with pytest.raises(SchemaError) as info:
        BinanceAdapter().parse_bars(
            json.dumps(klines).encode(), symbol="BTCUSDT", partition=PARTITION
        )
    assert info.value.field == "4"
    assert "binance: symbol BTCUSDT, partition 2026-01-05-00:00: field 4 in bar 3" in str(
        info.value
    )


# -- Polygon -------------------------------------------------------------------------------
def test_polygon_aggregates_map_to_the_canonical_schema_field_by_field() -> None:
    body = fixture("polygon", "aggs_AAPL_2026-01-05T00.json")
    payload = json.loads(body)
    parsed = PolygonAdapter().parse_bars(body, symbol="AAPL", partition=PARTITION)
    assert parsed.frame.schema == pl.Schema(BAR_SCHEMA)
    assert parsed.frame.height == payload["resultsCount"] < 60  # quiet minutes have no bar
    for row, bar in zip(parsed.frame.iter_rows(named=True), payload["results"], strict=True):
        assert ms(row["ts"]) == bar["t"]
        assert (row["open"], row["high"], row["low"], row["close"]) == (
            bar["o"],
            bar["h"],
            bar["l"],
            bar["c"],
        )
        assert (row["volume"], row["vwap"], row["trades"]) == (bar["v"], bar["vw"], bar["n"])


def test_polygon_empty_result_has_no_results_key() -> None:
    body = fixture("polygon", "aggs_empty.json")
    assert "results" not in json.loads(body)
    parsed = PolygonAdapter().parse_bars(body, symbol="AAPL")
    assert parsed.frame.height == 0


def test_polygon_next_url_is_followed_on_our_base_url_only() -> None:
    adapter = PolygonAdapter()
    end = HOUR + timedelta(days=1)
    first = adapter.authenticate(adapter.bars_request("AAPL", start=HOUR, end=end), "k")
    assert first.headers["Authorization"] == "Bearer k"
    assert first.path == f"/v2/aggs/ticker/AAPL/range/1/minute/{ms(HOUR)}/{ms(end) - 1}"
    payload = json.loads(fixture("polygon", "aggs_first_page_with_next_url.json"))
    page = adapter.read_page(payload, request=first, start=HOUR, end=end)
    nxt = page.next_request
    assert nxt is not None
    assert payload["next_url"].startswith("https://api.polygon.io/")
    assert nxt.path.startswith("/v2/aggs/ticker/AAPL/range/1/minute/")  # path only, no host
    assert "cursor" in nxt.params
    last_bar = datetime.fromtimestamp(payload["results"][-1]["t"] / 1000, UTC)
    assert page.coverage_end == nxt.covers_from == last_bar + timedelta(minutes=1)
    partial = json.loads(fixture("polygon", "aggs_partial_last_page.json"))
    last = adapter.read_page(partial, request=nxt, start=HOUR, end=end)
    assert last.next_request is None
    assert (last.coverage_start, last.coverage_end) == (nxt.covers_from, end)


def test_polygon_error_bodies() -> None:
    adapter = PolygonAdapter()
    unknown = adapter.classify(
        status=401, headers={}, body=fixture("polygon", "error_unknown_api_key.json")
    )
    assert unknown.kind == "fatal" and "Unknown API Key" in unknown.reason
    limited = adapter.classify(status=429, headers={}, body=fixture("polygon", "error_429.json"))
    assert limited.kind == "throttled" and limited.server_wait_s is None  # no Retry-After
    assert "maximum requests per minute" in limited.reason
    denied = adapter.classify(
        status=403, headers={}, body=fixture("polygon", "error_not_authorized.json")
    )
    assert denied.kind == "fatal" and "not entitled" in denied.reason


def test_polygon_drift_names_the_field() -> None:
    payload = json.loads(fixture("polygon", "aggs_AAPL_2026-01-05T00.json"))
    del payload["results"][7]["c"]
    with pytest.raises(SchemaError) as info:
        PolygonAdapter().parse_bars(
            json.dumps(payload).encode(), symbol="AAPL", partition=PARTITION
        )
    assert info.value.field == "c"
    assert "polygon: symbol AAPL, partition 2026-01-05-00:00: field 'c' missing in bar 7" in str(
        info.value
    )


# -- selection by configuration --------------------------------------------------------------
def test_provider_is_chosen_by_configuration_with_its_documented_quota(tmp_path: Path) -> None:
    defs = build_definitions({"FIN_PROVIDER": "binance", "FIN_DATA_DIR": str(tmp_path)})
    api = defs.resources["market_api"]
    assert api.provider == "binance"  # type: ignore[attr-defined]
    assert api.base_url == "https://api.binance.com"  # type: ignore[attr-defined]
    assert api.policy().describe() == "6000/60s burst 20 (Binance documented)"  # type: ignore[attr-defined]
    assert defs.resolve_assets_def(dg.AssetKey(["raw", "bars"])).op.pool == "provider_binance"


def test_a_missing_key_is_a_load_time_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="polygon needs an API key: set FIN_API_KEY"):
        build_definitions({"FIN_PROVIDER": "polygon", "FIN_DATA_DIR": str(tmp_path)})
    with pytest.raises(InvalidInputError, match="unknown provider 'nyse'"):
        build_definitions({"FIN_PROVIDER": "nyse", "FIN_DATA_DIR": str(tmp_path)})


def test_quota_override_wins_over_the_documented_one(tmp_path: Path) -> None:
    defs = build_definitions(
        {
            "FIN_PROVIDER": "polygon",
            "FIN_API_KEY": "k",
            "FIN_DATA_DIR": str(tmp_path),
            "FIN_QUOTA_REQUESTS": "100",
            "FIN_QUOTA_WINDOW_SECONDS": "60",
        }
    )
    policy = defs.resources["market_api"].policy()  # type: ignore[attr-defined]
    assert (policy.limit, policy.window_s, policy.burst) == (100, 60, 1)
    assert get_adapter("polygon").default_quota.limit == 5  # type: ignore[union-attr]
    assert isinstance(PolygonAdapter().bars_request("AAPL", start=HOUR, end=HOUR), ApiRequest)


# -- providers' realities (issue 12, point 7) --------------------------------------------------
def test_polygon_is_massive_now_and_its_old_host_is_still_configurable() -> None:
    import httpx

    from resources.http.client import MarketApiClient

    assert PolygonAdapter().default_base_url == "https://api.massive.com"
    hosts = []

    def answer(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(200, content=fixture("polygon", "aggs_empty.json"))

    for base_url in (PolygonAdapter.default_base_url, "https://api.polygon.io"):
        with MarketApiClient(
            PolygonAdapter(), base_url=base_url, api_key="pk", transport=httpx.MockTransport(answer)
        ) as client:
            list(client.iter_pages("AAPL", start=HOUR, end=HOUR + timedelta(hours=1)))
    assert hosts == ["api.massive.com", "api.polygon.io"]


@pytest.mark.parametrize(
    "ticker", ["X:BTCUSD", "C:EURUSD", "I:NDX", "I:SPX", "O:SPY251219C00650000", "X:1INCHUSD"]
)
def test_polygon_tickers_of_other_asset_classes_are_accepted_for_polygon_only(
    ticker: str,
) -> None:
    from resources.validation import parse_symbols, symbol_path_part, validate_symbol

    assert validate_symbol(ticker, provider="polygon") == ticker
    assert parse_symbols(f"AAPL,{ticker}", provider="polygon") == ("AAPL", ticker)
    for other in (None, "binance", "simulator"):
        with pytest.raises(InvalidInputError, match="X:BTCUSD"):
            validate_symbol(ticker, provider=other)
    # The colon never reaches a path: some tools read "X:" as a drive or a scheme.
    assert symbol_path_part(ticker, provider="polygon") == ticker.replace(":", "_")
    request = PolygonAdapter().bars_request(ticker, start=HOUR, end=HOUR + timedelta(hours=1))
    assert request.path.startswith(f"/v2/aggs/ticker/{ticker}/range/1/minute/")


@pytest.mark.parametrize(
    "ticker",
    ["X:btcusd", "C:EURUSDX", "I:", "O:SPY251219C0065000", "Q:AAPL", "X:BTC/USD", "I:NDX\n"],
)
def test_polygon_prefixed_tickers_are_as_strict_as_any_other_symbol(ticker: str) -> None:
    from resources.validation import validate_symbol

    with pytest.raises(InvalidInputError):
        validate_symbol(ticker, provider="polygon")


def test_a_prefixed_ticker_has_its_own_snapshot_directory_without_a_colon(tmp_path: Path) -> None:
    from resources.raw.snapshots import SnapshotStore

    store = SnapshotStore(tmp_path)
    where = {"dataset": "bars", "start": HOUR, "end": HOUR + timedelta(hours=1), "meta": {}}
    polygon, binance = Feed("polygon", "api.massive.com"), Feed("binance", "api.binance.com")
    ref = store.write(feed=polygon, symbol="X:BTCUSD", body=b"{}", **where)  # type: ignore[arg-type]
    assert ref.symbol == "X:BTCUSD"
    assert ref.path.startswith("raw/polygon@api.massive.com/bars/X_BTCUSD/")
    assert ":" not in ref.path
    with pytest.raises(InvalidInputError):
        store.write(feed=binance, symbol="X:BTCUSD", body=b"{}", **where)  # type: ignore[arg-type]


def test_index_bars_without_volume_or_vwap_are_stored_with_nulls() -> None:
    body = json.dumps(
        {
            "ticker": "I:NDX",
            "results": [
                {"o": 21000.5, "h": 21010.0, "l": 20990.25, "c": 21005.0, "t": ms(HOUR)},
                {"o": 21005.0, "h": 21020.0, "l": 21000.0, "c": 21015.5, "t": ms(HOUR) + 60_000},
            ],
            "status": "OK",
        }
    ).encode()
    parsed = PolygonAdapter().parse_bars(body, symbol="I:NDX", partition=PARTITION)
    assert parsed.frame.schema == pl.Schema(BAR_SCHEMA)
    assert parsed.frame["close"].to_list() == [21005.0, 21015.5]
    assert parsed.frame["volume"].null_count() == 2
    assert parsed.frame["vwap"].null_count() == 2 and parsed.frame["trades"].null_count() == 2
    # A stock bar without its volume is still a schema change, named, never a silent null.
    with pytest.raises(SchemaError) as info:
        PolygonAdapter().parse_bars(body.replace(b"I:NDX", b"AAPL"), symbol="AAPL")
    assert info.value.field == "v"


def test_binance_403_is_its_web_application_firewall_every_process_waits_its_5_minutes() -> None:
    import httpx

    from resources.errors import WaitBudgetExceededError
    from resources.http.client import MarketApiClient
    from resources.ratelimit.pacer import SharedPacer
    from resources.ratelimit.stores import MemoryQuotaStore

    verdict = BinanceAdapter().classify(status=403, headers={}, body=b"")
    assert verdict.kind == "throttled" and verdict.server_wait_s == 300.0
    assert "web application firewall" in verdict.reason
    store, sleeps = MemoryQuotaStore(), []
    client = MarketApiClient(
        BinanceAdapter(),
        base_url="https://api.binance.test",
        pacer=SharedPacer(store, "k", policy=BinanceAdapter.default_quota, clock=lambda: 1e9),
        transport=httpx.MockTransport(lambda request: httpx.Response(403, text="")),
        sleep=sleeps.append,
        max_wait_s=120,
    )
    request = BinanceAdapter().latest_request("BTCUSDT")
    with pytest.raises(WaitBudgetExceededError) as info:
        client.get(request, what="latest bar of BTCUSDT")
    client.close()
    assert info.value.seconds_to_wait == 300.0  # rescheduled, not failed for good
    assert store.paused_until("k")[0] == pytest.approx(1e9 + 300.0)
    assert store.learned("k") is None  # no used weight, no count: nothing to learn from


def test_an_adapter_registers_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider kept in another package joins the registry through the
    ``fin_assets.providers`` entry-point group, as the simulator does; a wrong one is refused
    naming the entry point."""
    from importlib.metadata import EntryPoint

    import resources.providers as registry

    class EchoAdapter(SimulatorAdapter):
        name = "echo"

    def fake(entries: list[EntryPoint]) -> None:
        monkeypatch.setattr(registry, "entry_points", lambda group: entries)
        registry._registry.cache_clear()

    monkeypatch.setattr(sys.modules[__name__], "EchoAdapter", EchoAdapter, raising=False)
    try:
        fake([EntryPoint("echo", f"{__name__}:EchoAdapter", registry.ENTRY_POINT_GROUP)])
        assert registry.provider_names() == ["binance", "echo", "polygon"]
        assert isinstance(registry.get_adapter("echo"), EchoAdapter)
        fake([EntryPoint("other", f"{__name__}:EchoAdapter", registry.ENTRY_POINT_GROUP)])
        with pytest.raises(InvalidInputError, match="entry point other = .*names itself 'echo'"):
            registry.provider_names()
    finally:
        monkeypatch.undo()
        registry._registry.cache_clear()
    assert "simulator" in registry.provider_names()  # the real metadata again


# -- a 403 that is a rate limit (GitHub's primary limit) and one that is not -----------------
# GitHub: "If you exceed your primary rate limit, you will receive a 403 Forbidden or 429 Too
# Many Requests response, and the x-ratelimit-remaining header will be 0 ... you should not make
# another request until after the time specified by the x-ratelimit-reset header. The
# x-ratelimit-reset header is in UTC epoch seconds"; "If the retry-after response header is
# present, you should not retry your request until after that many seconds has elapsed"
# (docs.github.com, REST API, troubleshooting, rate limit errors).
NOW_403 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
RESET_403 = str(int(NOW_403.timestamp()) + 42)


@pytest.mark.parametrize(
    ("headers", "kind", "wait"),
    [
        # GitHub's primary rate limit: remaining 0, reset in UTC epoch seconds.
        (
            {
                "x-ratelimit-limit": "60",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": RESET_403,
            },
            "throttled",
            42.0,
        ),
        # GitHub's secondary rate limit with retry-after.
        ({"retry-after": "7"}, "throttled", 7.0),
        # The IETF draft's fields: a spent service limit, t seconds to its reset.
        (
            {"ratelimit-policy": '"default";q=100;w=60', "ratelimit": '"default";r=0;t=30'},
            "throttled",
            30.0,
        ),
        # Spent, no reset said: a throttle, with no hint (the client backs off).
        ({"x-ratelimit-remaining": "0"}, "throttled", None),
        # Quota left: the 403 is about something else, fatal at once.
        ({"x-ratelimit-remaining": "5", "x-ratelimit-reset": RESET_403}, "fatal", None),
        ({}, "fatal", None),
    ],
)
def test_a_403_is_a_throttle_only_when_its_rate_limit_headers_say_spent(
    headers: dict[str, str], kind: str, wait: float | None
) -> None:
    body = fixture("polygon", "error_not_authorized.json")
    verdict = PolygonAdapter().classify(status=403, headers=headers, body=body, now=NOW_403)
    assert (verdict.kind, verdict.server_wait_s) == (kind, wait)
    assert verdict.reason.startswith("HTTP 403 from polygon")
    assert "not entitled" in verdict.reason  # the provider's own words, either way
