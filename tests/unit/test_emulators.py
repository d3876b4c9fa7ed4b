"""The Binance and Polygon loopback emulators, over real HTTP with httpx."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from resources.simulator.actions import split_results
from resources.simulator.data import generate_bars
from tests.emulators.base import LoopbackEmulator
from tests.emulators.binance import KLINES_PATH, BinanceEmulator
from tests.emulators.polygon import RATE_LIMITED, PolygonEmulator, aggregate_bars, is_quiet
from tests.fixtures.make_fixtures import build_fixtures, render

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DAY = datetime(2026, 1, 5, tzinfo=UTC)
DAY_MS = int(DAY.timestamp() * 1000)
MIN_MS = 60_000
NOW = datetime(2026, 1, 7, 12, 34, 56, tzinfo=UTC)  # DAY is fully closed
KEY = "pk_TEST_SECRET_9f8e7d"
F8 = re.compile(r"^-?\d+\.\d{8}$")


def load(rel: str) -> Any:
    return json.loads((FIXTURES / rel).read_text(encoding="utf-8"))


class FakeClock:
    """Epoch seconds that only move when told to."""

    def __init__(self, t: float = DAY.timestamp()) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def started() -> Iterator[list[LoopbackEmulator]]:
    emulators: list[LoopbackEmulator] = []
    yield emulators
    for emu in emulators:
        emu.stop()


@pytest.fixture
def binance(started: list[LoopbackEmulator]):
    def factory(**kwargs: Any) -> tuple[BinanceEmulator, httpx.Client]:
        emu = BinanceEmulator(now=kwargs.pop("now", NOW), **kwargs)
        emu.start()
        started.append(emu)
        return emu, clients.add(httpx.Client(base_url=emu.url, timeout=5))

    clients = _Clients()
    yield factory
    clients.close()


@pytest.fixture
def polygon(started: list[LoopbackEmulator]):
    def factory(**kwargs: Any) -> tuple[PolygonEmulator, httpx.Client]:
        kwargs.setdefault("api_keys", {KEY})
        kwargs.setdefault("calls_per_window", None)
        emu = PolygonEmulator(now=kwargs.pop("now", NOW), **kwargs)
        emu.start()
        started.append(emu)
        return emu, clients.add(httpx.Client(base_url=emu.url, timeout=5))

    clients = _Clients()
    yield factory
    clients.close()


class _Clients:
    def __init__(self) -> None:
        self._clients: list[httpx.Client] = []

    def add(self, client: httpx.Client) -> httpx.Client:
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


def klines(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get(KLINES_PATH, params={"symbol": "BTCUSDT", "interval": "1m", **params})


def aggs_path(ticker: str, frm: int | str, to: int | str) -> str:
    return f"/v2/aggs/ticker/{ticker}/range/1/minute/{frm}/{to}"


AUTH = {"Authorization": f"Bearer {KEY}"}


# --------------------------------------------------------------------------------------
# Fixtures on disk
# --------------------------------------------------------------------------------------


def test_fixture_files_are_up_to_date() -> None:
    for rel, doc in build_fixtures().items():
        assert (FIXTURES / rel).read_text(encoding="utf-8") == render(doc), rel
    assert len(load("binance/klines_partial_last_page.json")) == 440
    hour = load("polygon/aggs_AAPL_2026-01-05T00.json")
    assert 50 < hour["resultsCount"] < 60  # a few quiet minutes are missing


# --------------------------------------------------------------------------------------
# Binance
# --------------------------------------------------------------------------------------


def test_binance_kline_shape(binance) -> None:
    emu, client = binance()
    end_ms = DAY_MS + 59 * MIN_MS
    resp = klines(client, startTime=DAY_MS, endTime=end_ms, limit=1000)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["X-MBX-USED-WEIGHT-1m"] == "2"
    rows = resp.json()
    assert len(rows) == 60
    bars = generate_bars("BTCUSDT", DAY, DAY + timedelta(hours=1))
    for i, (row, bar) in enumerate(zip(rows, bars, strict=True)):
        assert len(row) == 12
        open_ms = DAY_MS + i * MIN_MS
        assert row[0] == open_ms and row[6] == open_ms + 59_999
        assert isinstance(row[0], int) and isinstance(row[6], int) and isinstance(row[8], int)
        for j in (1, 2, 3, 4, 5, 7, 9, 10):
            assert isinstance(row[j], str) and F8.fullmatch(row[j]), (i, j, row[j])
        assert [float(x) for x in row[1:6]] == [bar["o"], bar["h"], bar["l"], bar["c"], bar["v"]]
        assert row[8] == bar["n"]
        assert float(row[7]) == pytest.approx(bar["vw"] * bar["v"], abs=1e-6)
        assert 0 < float(row[9]) <= float(row[5])
        assert float(row[10]) == pytest.approx(float(row[9]) * bar["vw"], abs=1e-6)
        assert row[11] == "0"
    assert rows == load("binance/klines_BTCUSDT_2026-01-05T00.json")


def test_binance_pages_a_day_in_two_requests(binance) -> None:
    emu, client = binance()
    end_ms = DAY_MS + 1440 * MIN_MS - 1
    rows: list[list] = []
    start = DAY_MS
    pages = []
    while True:
        page = klines(client, startTime=start, endTime=end_ms, limit=1000).json()
        pages.append(page)
        rows.extend(page)
        if len(page) < 1000:
            break
        start = page[-1][0] + MIN_MS
    assert [len(p) for p in pages] == [1000, 440]
    assert emu.stats()["klines_requests"] == 2
    assert [r[0] for r in rows] == [DAY_MS + i * MIN_MS for i in range(1440)]
    assert pages[1] == load("binance/klines_partial_last_page.json")


def test_binance_window_semantics(binance) -> None:
    # "now" is 00:10:30: minutes 00:00..00:09 are closed, 00:10 is still open.
    emu, client = binance(now=DAY + timedelta(minutes=10, seconds=30))
    t = DAY_MS + 2 * MIN_MS
    inclusive = klines(client, startTime=t, endTime=t + 2 * MIN_MS).json()
    assert [r[0] for r in inclusive] == [t, t + MIN_MS, t + 2 * MIN_MS]
    exclusive = klines(client, startTime=t, endTime=t + 2 * MIN_MS - 1).json()
    assert [r[0] for r in exclusive] == [t, t + MIN_MS]
    # An unaligned startTime starts at the next open time.
    assert klines(client, startTime=t + 1, endTime=t + MIN_MS).json()[0][0] == t + MIN_MS
    day = klines(client, startTime=DAY_MS, endTime=DAY_MS + 1440 * MIN_MS - 1).json()
    assert [r[0] for r in day] == [DAY_MS + i * MIN_MS for i in range(10)]
    limited = klines(client, startTime=DAY_MS, limit=3).json()
    assert [r[0] for r in limited] == [DAY_MS, DAY_MS + MIN_MS, DAY_MS + 2 * MIN_MS]
    # No startTime: the most recent `limit` closed klines up to endTime (or now).
    assert [r[0] for r in klines(client, limit=2).json()] == [
        DAY_MS + 8 * MIN_MS,
        DAY_MS + 9 * MIN_MS,
    ]
    assert [r[0] for r in klines(client, endTime=t, limit=2).json()] == [t - MIN_MS, t]
    assert klines(client, startTime=DAY_MS + 10 * MIN_MS).json() == []
    latest = klines(client).json()  # default limit 500, reaching back into the previous day
    assert len(latest) == 500 and latest[-1][0] == DAY_MS + 9 * MIN_MS


def test_binance_parameter_errors(binance) -> None:
    emu, client = binance(symbols={"BTCUSDT"})
    cases = [
        ({"symbol": "btcusdt"}, -1121, "Invalid symbol."),
        ({"symbol": "ETHUSDT"}, -1121, "Invalid symbol."),
        ({"interval": "5m"}, -1120, "Invalid interval."),
        ({"limit": 1001}, -1130, "Invalid data sent for a parameter."),
        ({"limit": 0}, -1130, "Invalid data sent for a parameter."),
        ({"startTime": 2, "endTime": 1}, -1023, "Start time is greater than end time."),
    ]
    for params, code, msg in cases:
        resp = klines(client, **params)
        assert resp.status_code == 400, params
        assert resp.json() == {"code": code, "msg": msg}
    assert klines(client, symbol="btcusdt").json() == load("binance/error_invalid_symbol.json")
    missing = client.get(KLINES_PATH, params={"interval": "1m"})
    assert missing.status_code == 400 and missing.json()["code"] == -1102
    bad_start = klines(client, startTime="yesterday")
    assert bad_start.status_code == 400 and bad_start.json()["code"] == -1100
    # Malformed requests still cost weight.
    assert emu.stats()["weight_used_total"] == 2 * (len(cases) + 3)


def test_binance_serves_fixture_rows(binance) -> None:
    fixture = load("binance/klines_BTCUSDT_2026-01-05T00.json")
    emu, client = binance(klines={"BTCUSDT": fixture})
    hour = klines(client, startTime=DAY_MS, endTime=DAY_MS + 59 * MIN_MS).json()
    assert hour == fixture
    sub = klines(client, startTime=DAY_MS + 5 * MIN_MS, endTime=DAY_MS + 7 * MIN_MS).json()
    assert sub == fixture[5:8]
    assert klines(client, startTime=DAY_MS, limit=4).json() == fixture[:4]
    assert klines(client, startTime=DAY_MS + 3600_000).json() == []
    # Other symbols are still generated.
    assert len(klines(client, symbol="ETHUSDT", startTime=DAY_MS, limit=5).json()) == 5


def test_binance_weight_header_increments_by_two(binance) -> None:
    emu, client = binance()
    used = [
        klines(client, startTime=DAY_MS, limit=1).headers["X-MBX-USED-WEIGHT-1m"] for _ in range(4)
    ]
    assert used == ["2", "4", "6", "8"]
    assert emu.stats()["weight_used_total"] == 8
    assert emu.used_weight() == 8


def test_binance_window_resets(binance) -> None:
    clock = FakeClock()
    emu, client = binance(clock=clock, weight_limit=4, window_s=60.0)
    assert [klines(client).status_code for _ in range(2)] == [200, 200]
    clock.advance(60)
    resp = klines(client)
    assert resp.status_code == 200 and resp.headers["X-MBX-USED-WEIGHT-1m"] == "2"


def test_binance_429_then_418_when_retry_after_ignored(binance) -> None:
    clock = FakeClock(DAY.timestamp() + 15.2)  # window [00:00:00, 00:01:00)
    emu, client = binance(clock=clock, weight_limit=6, window_s=60.0, ban_s=2)
    assert [klines(client).status_code for _ in range(3)] == [200, 200, 200]

    limited = klines(client)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == str(math.ceil(60 - 15.2))
    assert limited.headers["X-MBX-USED-WEIGHT-1m"] == "6"
    assert limited.json() == {
        "code": -1003,
        "msg": "Too many requests; current limit of IP(127.0.0.1) is 6 requests per minute. "
        "Please use the websocket for live updates to avoid polling the API.",
    }

    clock.advance(1)  # well inside Retry-After: banned
    banned = klines(client)
    assert banned.status_code == 418
    assert banned.headers["Retry-After"] == "2"
    until_ms = round((clock.t + 2) * 1000)
    assert banned.json() == {
        "code": -1003,
        "msg": f"Way too much request weight used; IP banned until {until_ms}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
    }
    clock.advance(0.5)
    again = klines(client)
    assert again.status_code == 418 and again.headers["Retry-After"] == "2"  # ceil(1.5)
    stats = emu.stats()
    assert stats["requests_during_ban"] == 1
    assert (stats["rejected_429"], stats["rejected_418"], stats["bans"]) == (1, 2, 1)

    clock.advance(45)  # ban over and a fresh weight window
    assert klines(client).status_code == 200
    statuses = [entry["status"] for entry in emu.request_log()]
    assert statuses == [200, 200, 200, 429, 418, 418, 200]


def test_binance_client_honouring_retry_after_is_not_banned(binance) -> None:
    clock = FakeClock(DAY.timestamp() + 30)
    emu, client = binance(clock=clock, weight_limit=2, window_s=60.0)
    assert klines(client).status_code == 200
    limited = klines(client)
    assert limited.status_code == 429
    clock.advance(int(limited.headers["Retry-After"]))
    assert klines(client).status_code == 200
    assert emu.stats()["rejected_418"] == 0


def test_binance_injected_418_is_a_real_ban(binance) -> None:
    emu, client = binance()
    body = (FIXTURES / "binance/error_418.json").read_bytes()
    emu.inject(418, headers={"Retry-After": "1"}, body=body)
    first = klines(client, startTime=DAY_MS, limit=1)
    assert first.status_code == 418 and first.content == body
    assert first.headers["Retry-After"] == "1"
    assert "X-MBX-USED-WEIGHT-1m" in first.headers
    t0 = time.monotonic()
    during = klines(client, startTime=DAY_MS, limit=1)
    assert during.status_code == 418
    assert emu.stats()["requests_during_ban"] == 1
    time.sleep(max(0.0, 1.05 - (time.monotonic() - t0)))
    assert klines(client, startTime=DAY_MS, limit=1).status_code == 200
    stats = emu.stats()
    assert (stats["injected"], stats["rejected_418"], stats["requests_during_ban"]) == (1, 2, 1)


def test_injection_queue_and_request_log(binance) -> None:
    emu, client = binance()
    emu.inject(500, headers={"X-Test": "yes"}, body=b'{"code":-1000}', count=2)
    emu.inject(429, body=(FIXTURES / "binance/error_429.json").read_bytes())
    assert client.get("/api/v3/nope").status_code == 404  # only the data endpoint is affected
    assert emu.pending_injections() == 3
    headers = {"X-Client-Id": "worker-7"}
    params = {"symbol": "BTCUSDT", "interval": "1m"}
    got = [client.get(KLINES_PATH, params=params, headers=headers) for _ in range(4)]
    assert [r.status_code for r in got] == [500, 500, 429, 200]
    assert got[0].headers["X-Test"] == "yes" and got[0].content == b'{"code":-1000}'
    log = emu.request_log()
    assert [(e["path"], e["status"], e["client"]) for e in log] == [
        ("/api/v3/nope", 404, ""),
        (KLINES_PATH, 500, "worker-7"),
        (KLINES_PATH, 500, "worker-7"),
        (KLINES_PATH, 429, "worker-7"),
        (KLINES_PATH, 200, "worker-7"),
    ]
    assert all(abs(e["t"] - time.time()) < 5 for e in log)
    assert emu.stats()["by_status"] == {404: 1, 500: 2, 429: 1, 200: 1}
    emu.reset()
    assert emu.request_log() == [] and emu.stats()["requests"] == 0


# --------------------------------------------------------------------------------------
# Polygon
# --------------------------------------------------------------------------------------


def test_polygon_envelope_shape(polygon) -> None:
    emu, client = polygon()
    end_ms = DAY_MS + 59 * MIN_MS
    resp = client.get(aggs_path("AAPL", DAY_MS, end_ms), headers=AUTH)
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == [
        "ticker",
        "queryCount",
        "resultsCount",
        "adjusted",
        "results",
        "status",
        "request_id",
        "count",
    ]
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    n = len(body["results"])
    assert body["queryCount"] == body["resultsCount"] == body["count"] == n
    assert (body["ticker"], body["adjusted"], body["status"]) == ("AAPL", True, "OK")
    bars = generate_bars("AAPL", DAY, DAY + timedelta(hours=1))
    by_t = {DAY_MS + i * MIN_MS: bar for i, bar in enumerate(bars)}
    expected_ts = [t for t in by_t if not is_quiet("AAPL", t)]
    assert 0 < 60 - n < 10 and [r["t"] for r in body["results"]] == expected_ts
    for r in body["results"]:
        assert list(r) == ["v", "vw", "o", "c", "h", "l", "t", "n"]
        assert isinstance(r["v"], int) and isinstance(r["n"], int) and isinstance(r["t"], int)
        bar = by_t[r["t"]]
        assert (r["o"], r["h"], r["l"], r["c"]) == (bar["o"], bar["h"], bar["l"], bar["c"])
        assert r["v"] == round(bar["v"]) and r["vw"] == round(bar["vw"], 4) and r["n"] == bar["n"]
    fixture = load("polygon/aggs_AAPL_2026-01-05T00.json")
    assert {**body, "request_id": ""} == {**fixture, "request_id": ""}


def test_polygon_follows_next_url_through_a_day(polygon) -> None:
    emu, client = polygon()
    url: str | None = f"{emu.url}{aggs_path('AAPL', '2026-01-05', '2026-01-05')}?limit=1000"
    results: list[dict] = []
    pages = 0
    while url:
        assert url.startswith(emu.url)
        body = client.get(url, headers=AUTH).json()
        pages += 1
        results.extend(body["results"])
        url = body.get("next_url")
        if url:
            assert "cursor=" in url and KEY not in url
            assert body["resultsCount"] == 1000
    ts = [r["t"] for r in results]
    assert ts == sorted(set(ts))
    expected = aggregate_bars("AAPL", DAY_MS, DAY_MS + 1440 * MIN_MS - 1)
    assert results == expected
    assert 1300 < len(results) < 1440 and pages == 2
    assert emu.stats()["accepted"] == 2


def test_polygon_inclusive_to_and_empty(polygon) -> None:
    emu, client = polygon(now=DAY + timedelta(hours=1, seconds=5))
    # The first non-quiet minute after 00:10, used as an inclusive upper bound.
    to = next(
        t
        for t in range(DAY_MS + 10 * MIN_MS, DAY_MS + 60 * MIN_MS, MIN_MS)
        if not is_quiet("AAPL", t)
    )
    got = client.get(aggs_path("AAPL", DAY_MS, to), headers=AUTH).json()
    assert got["results"][-1]["t"] == to
    before = client.get(aggs_path("AAPL", DAY_MS, to - 1), headers=AUTH).json()
    assert before["results"][-1]["t"] < to
    assert len(before["results"]) == len(got["results"]) - 1
    # Only closed minutes exist: now is 01:00:05, so the last bar starts at or before 00:59.
    day = client.get(aggs_path("AAPL", "2026-01-05", "2026-01-05"), headers=AUTH).json()
    assert day["results"][-1]["t"] <= DAY_MS + 59 * MIN_MS
    empty = client.get(
        aggs_path("AAPL", DAY_MS + 2 * 3600_000, DAY_MS + 3 * 3600_000), headers=AUTH
    )
    assert empty.status_code == 200
    body = empty.json()
    assert "results" not in body and "next_url" not in body
    assert (body["resultsCount"], body["queryCount"], body["count"]) == (0, 0, 0)
    assert list(body) == list(load("polygon/aggs_empty.json"))


def test_polygon_serves_fixture_results_as_given(polygon) -> None:
    fixture = load("polygon/aggs_AAPL_2026-01-05T00.json")["results"]
    emu, client = polygon(results={"AAPL": fixture})
    end_ms = DAY_MS + 59 * MIN_MS
    body = client.get(aggs_path("AAPL", DAY_MS, end_ms), headers=AUTH).json()
    assert body["results"] == fixture and "next_url" not in body
    first = client.get(aggs_path("AAPL", DAY_MS, end_ms), params={"limit": 50}, headers=AUTH)
    page1 = first.json()
    recorded = load("polygon/aggs_first_page_with_next_url.json")
    assert page1["results"] == recorded["results"]
    # Same path and cursor as the recorded next_url, only the host differs.
    assert page1["next_url"].removeprefix(emu.url) == recorded["next_url"].removeprefix(
        "https://api.polygon.io"
    )
    page2 = client.get(page1["next_url"], headers=AUTH).json()
    assert page2 == {
        **load("polygon/aggs_partial_last_page.json"),
        "request_id": page2["request_id"],
    }


def test_polygon_auth_and_never_echoes_the_key(polygon) -> None:
    clock = FakeClock()
    emu, client = polygon(calls_per_window=3, window_s=60.0, clock=clock)
    path = aggs_path("AAPL", DAY_MS, DAY_MS + 59 * MIN_MS)
    responses = [
        client.get(path),
        client.get(path, headers={"Authorization": "Bearer pk_WRONG"}),
        client.get(path, params={"apiKey": KEY + "x"}),
    ]
    for resp in responses:
        assert resp.status_code == 401
        body = resp.json()
        assert list(body) == ["status", "request_id", "error"]
        assert (body["status"], body["error"]) == ("ERROR", "Unknown API Key")
    responses += [
        client.get(path, params={"apiKey": KEY, "limit": 10}),  # 200 with next_url
        client.get(path, headers=AUTH, params={"limit": "ten"}),  # 400
        client.get(path, params={"apiKey": KEY}),  # 200
        client.get(path, params={"apiKey": KEY}),  # 429
    ]
    assert [r.status_code for r in responses] == [401, 401, 401, 200, 400, 200, 429]
    assert "next_url" in responses[3].json()
    for resp in responses:
        assert KEY not in resp.text
        assert all(KEY not in f"{k}: {v}" for k, v in resp.headers.items())
    assert emu.stats()["rejected_401"] == 3
    assert all(KEY not in json.dumps(entry) for entry in emu.request_log())


def test_polygon_429_after_five_calls_sliding_window(polygon) -> None:
    clock = FakeClock()
    emu, client = polygon(calls_per_window=5, window_s=60.0, clock=clock)
    path = aggs_path("AAPL", DAY_MS, DAY_MS + 4 * MIN_MS)
    for _ in range(5):
        assert client.get(path, headers=AUTH).status_code == 200
        clock.advance(10)  # calls at t = 0, 10, 20, 30, 40
    limited = client.get(path, headers=AUTH)  # t = 50
    assert limited.status_code == 429
    body = limited.json()
    assert list(body) == ["status", "request_id", "error"]
    assert body["error"] == (
        "You've exceeded the maximum requests per minute, please wait or upgrade your "
        "subscription to continue. https://polygon.io/pricing"
    )
    assert "retry-after" not in limited.headers
    assert not [h for h in limited.headers if "ratelimit" in h.lower()]
    clock.advance(10.5)  # t = 60.5: the call at t = 0 left the window
    assert client.get(path, headers=AUTH).status_code == 200
    assert client.get(path, headers=AUTH).status_code == 429  # 10..60.5 holds 5 calls
    stats = emu.stats()
    assert (stats["accepted"], stats["rejected_429"]) == (6, 2)


def test_polygon_per_key_quota_and_bad_params(polygon) -> None:
    clock = FakeClock()
    emu, client = polygon(api_keys={KEY, "pk_OTHER"}, calls_per_window=1, clock=clock)
    path = aggs_path("AAPL", DAY_MS, DAY_MS + 4 * MIN_MS)
    assert client.get(path, headers=AUTH).status_code == 200
    assert client.get(path, headers=AUTH).status_code == 429
    assert client.get(path, params={"apiKey": "pk_OTHER"}).status_code == 200
    emu.reset()
    for bad in (
        "/v2/aggs/ticker/AAPL/range/5/minute/1/2",
        "/v2/aggs/ticker/AAPL/range/1/minute/yesterday/2",
    ):
        resp = client.get(bad, headers=AUTH)
        clock.advance(61)
        assert resp.status_code == 400 and resp.json()["status"] == "ERROR"
    assert client.get("/v2/nope", headers=AUTH).status_code == 404


# --------------------------------------------------------------------------------------
# Massive: corporate actions of a stock on a calendar
# --------------------------------------------------------------------------------------


def test_polygon_stock_on_a_calendar_has_actions_and_split_adjusted_aggregates(polygon) -> None:
    # AMZN splits 10-for-1 on Tuesday 2026-01-20 (seed 0): the demo's default window.
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    clock = FakeClock()
    emu, client = polygon(now=now, calendars={"AMZN": "XNYS"}, calls_per_window=5, clock=clock)
    splits = client.get(
        "/stocks/v1/splits",
        params={"ticker": "AMZN", "limit": 5000, "sort": "execution_date.asc"},
        headers=AUTH,
    )
    dividends = client.get(
        "/stocks/v1/dividends", params={"ticker.any_of": "AMZN,AAPL", "apiKey": KEY}
    )
    assert splits.status_code == dividends.status_code == 200
    served = splits.json()["results"]
    # The simulator's schedule and format, one module for both.
    as_of = int(now.timestamp()) // 60
    assert served == [
        r.as_json() for r in split_results("AMZN", seed=0, calendar="XNYS", as_of=as_of)
    ]
    assert {d["ticker"] for d in dividends.json()["results"]} == {"AMZN"}  # AAPL: no calendar
    split = next(s for s in served if s["execution_date"] == "2026-01-20")
    assert (split["split_from"], split["split_to"]) == (1.0, 10.0)

    path = aggs_path("AMZN", "2026-01-16", "2026-01-20")
    adjusted = client.get(path, headers=AUTH).json()  # Massive's default: adjusted=true
    raw = client.get(path, params={"adjusted": "false"}, headers=AUTH).json()
    assert (adjusted["adjusted"], raw["adjusted"]) == (True, False)
    # XNYS sessions only (Friday, then Tuesday after the weekend and MLK Day), as generated.
    start, end = datetime(2026, 1, 16, tzinfo=UTC), datetime(2026, 1, 21, tzinfo=UTC)
    truth = generate_bars("AMZN", start, end, calendar="XNYS")
    assert [r["t"] for r in raw["results"]] == [
        int(datetime.fromisoformat(b["t"].replace("Z", "+00:00")).timestamp()) * 1000 for b in truth
    ]
    assert [r["c"] for r in raw["results"]] == [b["c"] for b in truth]
    friday_ms = int(datetime(2026, 1, 17, tzinfo=UTC).timestamp()) * 1000
    for r, a in zip(raw["results"], adjusted["results"], strict=True):
        # Before the execution date: times every split executed since (independently, from
        # the served splits); from it on, as traded.
        bar_day = datetime.fromtimestamp(r["t"] / 1000, UTC).date().isoformat()
        factor = math.prod(
            s["split_from"] / s["split_to"]
            for s in served
            if bar_day < s["execution_date"] <= "2026-03-01"
        )
        assert (factor == 0.1) == (r["t"] < friday_ms)
        for key in ("o", "h", "l", "c", "vw"):
            assert a[key] == pytest.approx(r[key] * factor, abs=1.01e-4)
        # Both volumes are whole shares: the raw one's rounding scales with the factor.
        assert abs(a["v"] - r["v"] / factor) <= 0.5 / factor + 0.5 and a["n"] == r["n"]
    friday = [r for r in raw["results"] if r["t"] < friday_ms]
    tuesday = raw["results"][len(friday)]
    assert tuesday["o"] / friday[-1]["c"] == pytest.approx(0.1, rel=0.2)  # what traded jumps

    # An action announced later, and the actions routes spend the same rate limit.
    emu.announce(
        {"dividends": [{"ticker": "AMZN", "ex_dividend_date": "2026-02-02", "cash_amount": 0.07}]}
    )
    specials = client.get(
        "/stocks/v1/dividends",
        params={"ticker": "AMZN", "distribution_type": "special"},
        headers=AUTH,
    )
    assert [d["cash_amount"] for d in specials.json()["results"]] == [0.07]
    limited = client.get("/stocks/v1/splits", headers=AUTH)
    assert limited.status_code == 429 and limited.json()["error"] == RATE_LIMITED
    stats = emu.stats()
    assert (stats["actions_requests"], stats["aggs_requests"], stats["rejected_429"]) == (4, 2, 1)
    with pytest.raises(ValueError, match=r"dividends\[0\].ticker"):
        emu.announce(
            {"dividends": [{"ticker": "AAPL", "ex_dividend_date": "2026-02-02", "cash_amount": 1}]}
        )
    clock.advance(61)
    assert client.get("/stocks/v1/splits", params={"limit": "0"}, headers=AUTH).status_code == 400


def test_polygon_only_a_plain_stock_ticker_goes_on_a_calendar() -> None:
    with pytest.raises(ValueError, match="'X:BTCUSD' is not a valid symbol"):
        PolygonEmulator(api_keys={KEY}, calendars={"X:BTCUSD": "XNYS"})
    with pytest.raises(ValueError, match="symbol AAPL: unknown exchange calendar 'XNYZ'"):
        PolygonEmulator(api_keys={KEY}, calendars={"AAPL": "XNYZ"})
