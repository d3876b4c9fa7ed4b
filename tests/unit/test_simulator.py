"""Tests for the loopback market-data simulator, over real HTTP with httpx."""

from __future__ import annotations

import hashlib
import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest

from resources.quality import check_jumps
from resources.simulator.data import SYMBOL_PATTERN, generate_bars
from resources.simulator.faults import FAULT_NAMES, FaultSpec
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.helpers import PROJECT_ROOT

DAY = datetime(2026, 1, 5, tzinfo=UTC)
NOW = datetime(2026, 1, 7, 12, 34, 56, tzinfo=UTC)  # well after DAY, so DAY is fully closed


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def day_params(symbol: str = "AAPL", **extra: str | int) -> dict[str, str | int]:
    return {"symbol": symbol, "start": iso(DAY), "end": iso(DAY + timedelta(days=1)), **extra}


@pytest.fixture
def make_sim() -> Iterator:
    started: list[MarketSimulator] = []

    def factory(**overrides: object) -> MarketSimulator:
        cfg = SimulatorConfig(port=0, now=NOW, **overrides)  # type: ignore[arg-type]
        sim = MarketSimulator(cfg).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim) -> MarketSimulator:
    return make_sim()


@pytest.fixture
def client(sim: MarketSimulator) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy configured in the environment must not intercept loopback.
    with httpx.Client(base_url=sim.url, trust_env=False, timeout=5.0) as c:
        yield c


def new_client(sim: MarketSimulator) -> httpx.Client:
    return httpx.Client(base_url=sim.url, trust_env=False, timeout=5.0)


# --------------------------------------------------------------------------------------
# Data determinism and shape
# --------------------------------------------------------------------------------------


def test_same_request_returns_identical_bytes(client: httpx.Client) -> None:
    first = client.get("/v1/bars", params=day_params(limit=500))
    second = client.get("/v1/bars", params=day_params(limit=500))
    assert first.status_code == 200
    assert first.content == second.content
    assert first.headers["content-type"] == "application/json"
    # Compact JSON with the documented key order.
    assert first.content.startswith(
        b'{"symbol":"AAPL","interval":"1m","window":{"start":"2026-01-05T00:00:00Z",'
        b'"end":"2026-01-05T08:20:00Z"},"bars":[{"t":"2026-01-05T00:00:00Z","o":'
    )
    assert b" " not in first.content
    bar = first.json()["bars"][0]
    assert list(bar) == ["t", "o", "h", "l", "c", "v", "n", "vw"]


def test_determinism_across_server_instances(make_sim) -> None:
    a, b = make_sim(), make_sim()
    with new_client(a) as ca, new_client(b) as cb:
        assert ca.get("/v1/bars", params=day_params()).content == (
            cb.get("/v1/bars", params=day_params()).content
        )
    c = make_sim(seed=1)
    with new_client(c) as cc:
        other_seed = cc.get("/v1/bars", params=day_params()).json()["bars"]
    assert other_seed != generate_bars("AAPL", DAY, DAY + timedelta(days=1))[:1000]


def test_paging_through_a_day_matches_generate_bars(client: httpx.Client) -> None:
    expected = generate_bars("AAPL", DAY, DAY + timedelta(days=1))
    assert len(expected) == 1440

    pages = []
    params = day_params(limit=1000)
    while True:
        resp = client.get("/v1/bars", params=params)
        assert resp.status_code == 200
        pages.append(resp.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            break
        params = {**day_params(limit=1000), "cursor": cursor}
        assert len(pages) < 5

    assert [len(p["bars"]) for p in pages] == [1000, 440]
    assert [b for p in pages for b in p["bars"]] == expected
    # Windows are contiguous and cover exactly the requested day.
    assert pages[0]["window"] == {"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T16:40:00Z"}
    assert pages[1]["window"] == {"start": "2026-01-05T16:40:00Z", "end": "2026-01-06T00:00:00Z"}
    for page in pages:
        assert page["bars"][0]["t"] == page["window"]["start"]


def test_different_windows_agree_on_shared_minutes(client: httpx.Client) -> None:
    day = generate_bars("MSFT", DAY, DAY + timedelta(days=1))
    sub = generate_bars("MSFT", DAY + timedelta(hours=10), DAY + timedelta(hours=10, minutes=30))
    assert sub == day[600:630]
    # A window straddling midnight agrees with both days generated separately.
    next_day = generate_bars("MSFT", DAY + timedelta(days=1), DAY + timedelta(days=2))
    straddle = generate_bars("MSFT", DAY + timedelta(hours=23), DAY + timedelta(days=1, hours=1))
    assert straddle == day[-60:] + next_day[:60]
    # And the server serves the same bytes for those minutes.
    resp = client.get(
        "/v1/bars",
        params={
            "symbol": "MSFT",
            "start": "2026-01-05T10:00:00+00:00",
            "end": "2026-01-05T10:30:00Z",
        },
    )
    assert resp.json()["bars"] == sub


@pytest.mark.parametrize("symbol", ["AAPL", "MSFT", "BRK.B", "X", "RDS-A"])
@pytest.mark.parametrize("day", [DAY, datetime(2020, 1, 1, tzinfo=UTC), datetime(2015, 6, 6)])
def test_bar_invariants(symbol: str, day: datetime) -> None:
    bars = generate_bars(symbol, day, day + timedelta(days=1), seed=7)
    assert len(bars) == 1440
    start = day.replace(tzinfo=UTC)
    for i, bar in enumerate(bars):
        assert bar["t"] == iso(start + timedelta(minutes=i))
        o, h, low, c, vw = bar["o"], bar["h"], bar["l"], bar["c"], bar["vw"]
        assert low <= min(o, c) and h >= max(o, c)
        assert low > 0
        assert low <= vw <= h
        assert isinstance(bar["v"], float) and bar["v"] >= 0
        assert isinstance(bar["n"], int) and bar["n"] >= 1
        for key in ("o", "h", "l", "c", "vw"):
            assert round(bar[key], 4) == bar[key]
        assert round(bar["v"], 2) == bar["v"]


def test_generate_bars_edge_cases() -> None:
    assert generate_bars("AAPL", DAY, DAY) == []
    with pytest.raises(ValueError):
        generate_bars("../etc", DAY, DAY + timedelta(minutes=5))
    # Non-aligned bounds: bars whose open time t satisfies start <= t < end.
    bars = generate_bars("AAPL", DAY + timedelta(seconds=1), DAY + timedelta(minutes=3))
    assert [b["t"] for b in bars] == ["2026-01-05T00:01:00Z", "2026-01-05T00:02:00Z"]


def closes_frame(symbol: str, bars: list[dict]) -> pl.DataFrame:
    """The columns check_jumps reads, from simulator bars."""
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(bars),
            "ts": [datetime.fromisoformat(b["t"].replace("Z", "+00:00")) for b in bars],
            "close": [b["c"] for b in bars],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("symbol", ["AAPL", "BTCUSD", "RDS-A"])
def test_the_price_walk_is_continuous_across_midnight(symbol: str, seed: int) -> None:
    # Each day used to open from a separate daily walk, so every 00:00 bar jumped away from
    # the 23:59 close and the project's own price-jump check flagged the demo's data.
    start = datetime(2025, 12, 30, tzinfo=UTC)
    bars = generate_bars(symbol, start, start + timedelta(days=8), seed=seed)
    for before, after in zip(bars, bars[1:], strict=False):
        # The same rule at every minute, midnight included: a bar opens at the last close.
        assert after["o"] == before["c"], after["t"]
    midnights = [i for i, b in enumerate(bars) if b["t"].endswith("T00:00:00Z")][1:]
    assert len(midnights) == 7
    # Days generated on their own (as paging does) agree with the long window.
    for i in midnights:
        day = datetime.fromisoformat(bars[i]["t"].replace("Z", "+00:00"))
        assert generate_bars(symbol, day - timedelta(minutes=1), day, seed=seed) == [bars[i - 1]]
        assert generate_bars(symbol, day, day + timedelta(minutes=1), seed=seed) == [bars[i]]
    two_days = generate_bars(symbol, DAY, DAY + timedelta(days=2), seed=seed)
    outcome = check_jumps(closes_frame(symbol, two_days))
    assert outcome.passed, outcome.summary


@pytest.mark.parametrize(
    ("calendar", "day", "count"),
    [
        (None, DAY, 1440),
        # An equity's session: its corporate actions' schedule (built on the way) and share
        # basis, looked up once per trading range, must not slow the hot path down.
        ("XNYS", datetime(2026, 1, 20, tzinfo=UTC), 390),
    ],
)
def test_full_day_generates_quickly(calendar: str | None, day: datetime, count: int) -> None:
    # Loading the exchange calendar (0.1 s, once per process) is not what is timed.
    generate_bars("AMZN", day, day + timedelta(minutes=1), calendar=calendar)
    # A seed nothing else uses, so neither the daily walk nor the day is cached.
    start = time.perf_counter()
    bars = generate_bars("AMZN", day, day + timedelta(days=1), seed=987_654, calendar=calendar)
    elapsed = time.perf_counter() - start
    assert count - 14 <= len(bars) <= count
    # Target is well under 50 ms; the bound is loose so a loaded CI box does not flake.
    assert elapsed < 0.2, f"day generation took {elapsed * 1000:.1f} ms"


# --------------------------------------------------------------------------------------
# Clock, validation, latest
# --------------------------------------------------------------------------------------


def test_end_is_clipped_to_now(client: httpx.Client) -> None:
    today = datetime(2026, 1, 7, tzinfo=UTC)
    resp = client.get(
        "/v1/bars",
        params={"symbol": "AAPL", "start": iso(today), "end": iso(today + timedelta(days=1))},
    )
    body = resp.json()
    # now = 12:34:56, so the last closed minute opened at 12:33.
    assert body["window"] == {"start": "2026-01-07T00:00:00Z", "end": "2026-01-07T12:34:00Z"}
    assert len(body["bars"]) == 12 * 60 + 34
    assert body["bars"][-1]["t"] == "2026-01-07T12:33:00Z"
    assert body["next_cursor"] is None


def test_window_entirely_in_the_future_is_empty(client: httpx.Client) -> None:
    resp = client.get(
        "/v1/bars",
        params={"symbol": "AAPL", "start": "2026-01-07T12:34:00Z", "end": "2026-01-08T00:00:00Z"},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["bars"] == [] and body["next_cursor"] is None


def test_latest(client: httpx.Client) -> None:
    resp = client.get("/v1/latest", params={"symbol": "AAPL"})
    assert resp.status_code == 200
    minute = datetime(2026, 1, 7, 12, 33, tzinfo=UTC)
    expected = generate_bars("AAPL", minute, minute + timedelta(minutes=1))[0]
    assert resp.content == (
        b'{"symbol":"AAPL","t":"2026-01-07T12:33:00Z","c":' + str(expected["c"]).encode() + b"}"
    )


@pytest.mark.parametrize("symbol", ["../etc", "A;DROP", "aapl", "", "AAPL\n", "<script>"])
def test_invalid_symbol_is_400(client: httpx.Client, symbol: str) -> None:
    for path, params in (("/v1/bars", day_params(symbol)), ("/v1/latest", {"symbol": symbol})):
        resp = client.get(path, params=params)
        assert resp.status_code == 400
        assert resp.json() == {"error": "invalid symbol"}


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"start": "2026-01-05T00:00:30Z"}, "start"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-01-05T00:00:00+05:00"}, "start"),
        ({"start": "2026-01-06T00:00:00Z"}, "start"),  # not before end
        ({"end": "2026-01-06T00:00:01Z"}, "end"),
        ({"end": None}, "end"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"cursor": "djE6YWJj"}, "cursor"),  # base64 of "v1:abc"
        ({"adjusted": "yes"}, "adjusted"),
        ({"adjusted": "True"}, "adjusted"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: httpx.Client, overrides: dict[str, str | None], param: str
) -> None:
    params = {k: v for k, v in {**day_params(), **overrides}.items() if v is not None}
    resp = client.get("/v1/bars", params=params)
    assert resp.status_code == 400
    assert param in resp.json()["error"]


def test_limit_is_clipped_to_page_max(make_sim) -> None:
    sim = make_sim(page_limit_max=100)
    with new_client(sim) as c:
        body = c.get("/v1/bars", params=day_params(limit=5000)).json()
        assert len(body["bars"]) == 100
        assert body["next_cursor"] is not None
        assert len(c.get("/v1/bars", params=day_params(limit=7)).json()["bars"]) == 7


def test_unknown_path_is_404(client: httpx.Client) -> None:
    resp = client.get("/v2/<script>")
    assert resp.status_code == 404
    assert b"script" not in resp.content


# --------------------------------------------------------------------------------------
# Auth and quota
# --------------------------------------------------------------------------------------

SECRET = "s3cret-key-123"


def test_auth(make_sim) -> None:
    sim = make_sim(api_keys=frozenset({SECRET, "other"}))
    with new_client(sim) as c:
        missing = c.get("/v1/bars", params=day_params())
        wrong = c.get("/v1/bars", params=day_params(apikey="wrong-key"))
        wrong_header = c.get("/v1/latest", params={"symbol": "AAPL"}, headers={"X-API-Key": "x"})
        for resp in (missing, wrong, wrong_header):
            assert resp.status_code == 401
            assert resp.json() == {"error": "invalid or missing api key"}
        by_query = c.get("/v1/bars", params=day_params(apikey=SECRET))
        by_header = c.get("/v1/bars", params=day_params(), headers={"X-API-Key": SECRET})
        assert by_query.status_code == by_header.status_code == 200
        assert by_query.content == by_header.content
        for resp in (missing, wrong, by_query, by_header):
            assert SECRET not in resp.text
            assert all(SECRET not in v for v in resp.headers.values())
        stats_text = c.get("/_sim/stats").text
    assert SECRET not in stats_text
    stats = json.loads(stats_text)
    label = hashlib.sha256(SECRET.encode()).hexdigest()[:8]
    assert stats["requests_by_key"] == {"anonymous": 1, "invalid": 2, label: 2}


def test_malformed_request_line_does_not_echo_the_key(sim: MarketSimulator) -> None:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
        sock.sendall(f"GET /v1/bars?apikey={SECRET} HTTP/1.1 junk\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    # An unparseable request line is answered HTTP/0.9 style (no status line), stdlib default.
    assert b"400" in reply
    assert SECRET.encode() not in reply


def test_quota_429_and_recovery(make_sim) -> None:
    sim = make_sim(quota_requests=2, quota_window_s=0.5)
    with new_client(sim) as c:
        ok = [c.get("/v1/latest", params={"symbol": "AAPL"}) for _ in range(2)]
        assert [r.status_code for r in ok] == [200, 200]
        assert ok[0].headers["X-RateLimit-Limit"] == "2"
        assert ok[0].headers["X-RateLimit-Remaining"] == "1"
        assert ok[1].headers["X-RateLimit-Remaining"] == "0"
        assert ok[1].headers["X-RateLimit-Reset"] == "1"

        limited = c.get("/v1/bars", params=day_params())
        assert limited.status_code == 429
        assert limited.json() == {"error": "rate limit exceeded", "retry_after": 1}
        assert limited.headers["Retry-After"] == "1"
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        # Another key has its own window.
        assert c.get("/v1/latest", params={"symbol": "AAPL", "apikey": "k2"}).status_code == 200

        time.sleep(0.55)
        recovered = c.get("/v1/latest", params={"symbol": "AAPL"})
        assert recovered.status_code == 200
        assert recovered.headers["X-RateLimit-Remaining"] == "1"
        # Admin endpoints are exempt.
        assert c.get("/_sim/stats").status_code == 200
    assert sim.stats()["rejected_429"] == 1


def test_rejected_requests_do_not_consume_quota(make_sim) -> None:
    sim = make_sim(quota_requests=1, quota_window_s=30)
    with new_client(sim) as c:
        assert c.get("/v1/latest", params={"symbol": "AAPL"}).status_code == 200
        for _ in range(3):
            assert c.get("/v1/latest", params={"symbol": "AAPL"}).status_code == 429
    sim.reset()  # clears quota windows
    with new_client(sim) as c:
        assert c.get("/v1/latest", params={"symbol": "AAPL"}).status_code == 200


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------


def test_server_error_with_count_limit(sim: MarketSimulator, client: httpx.Client) -> None:
    sim.set_faults({"server_error": FaultSpec(rate=1.0, count=2)})
    statuses = [client.get("/v1/bars", params=day_params(limit=5)).status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert sim.stats()["faults_injected"]["server_error"] == 2
    # latest never gets faults
    sim.set_faults({"server_error": FaultSpec(rate=1.0)})
    assert client.get("/v1/latest", params={"symbol": "AAPL"}).status_code == 200
    resp = client.get("/v1/bars", params=day_params(limit=5))
    assert resp.status_code == 503
    assert resp.json() == {"error": "upstream unavailable"}


def test_truncated_body(sim: MarketSimulator) -> None:
    sim.set_faults({"truncated_body": FaultSpec(rate=1.0, count=1)})
    with new_client(sim) as c:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            c.get("/v1/bars", params=day_params(limit=50))
        # The next request (new connection) is healthy.
        assert c.get("/v1/bars", params=day_params(limit=50)).status_code == 200
    assert sim.stats()["faults_injected"]["truncated_body"] == 1


def test_malformed_json(sim: MarketSimulator, client: httpx.Client) -> None:
    sim.set_faults({"malformed_json": FaultSpec(rate=1.0)})
    resp = client.get("/v1/bars", params=day_params(limit=50))
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) == len(resp.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)


def test_throttle_body(sim: MarketSimulator, client: httpx.Client) -> None:
    sim.set_faults({"throttle_body": FaultSpec(rate=1.0)})
    resp = client.get("/v1/bars", params=day_params(limit=50))
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "error",
        "code": "THROTTLED",
        "message": "Too many requests, slow down",
        "retry_after": 1,
    }


def test_schema_drift(sim: MarketSimulator, client: httpx.Client) -> None:
    clean = client.get("/v1/bars", params=day_params(limit=50)).json()
    sim.set_faults({"schema_drift": FaultSpec(rate=1.0)})
    drifted = client.get("/v1/bars", params=day_params(limit=50)).json()
    assert drifted["window"] == clean["window"]
    assert len(drifted["bars"]) == 50
    for before, after in zip(clean["bars"], drifted["bars"], strict=True):
        assert "c" not in after and after["close"] == before["c"]
        assert after["v"] == str(before["v"])
        assert after["x"] == 1


def test_fault_rate_is_seeded_and_partial(make_sim) -> None:
    def run() -> list[int]:
        sim = make_sim(seed=42, faults={"server_error": FaultSpec(rate=0.5)})
        with new_client(sim) as c:
            return [c.get("/v1/bars", params=day_params(limit=1)).status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert 503 in first and 200 in first


def test_faults_checked_in_order_one_per_request(
    sim: MarketSimulator, client: httpx.Client
) -> None:
    sim.set_faults({name: FaultSpec(rate=1.0, count=1) for name in FAULT_NAMES})
    assert client.get("/v1/bars", params=day_params(limit=5)).status_code == 429
    assert client.get("/v1/bars", params=day_params(limit=5)).status_code == 503
    assert sum(sim.stats()["faults_injected"].values()) == 2


def test_latency(sim: MarketSimulator, client: httpx.Client) -> None:
    sim.set_faults({}, latency_ms=150)
    start = time.perf_counter()
    assert client.get("/v1/latest", params={"symbol": "AAPL"}).status_code == 200
    assert time.perf_counter() - start >= 0.15
    start = time.perf_counter()
    assert client.get("/_sim/stats").status_code == 200  # admin is not delayed
    assert time.perf_counter() - start < 0.15


def test_admin_faults_endpoint_and_reset(sim: MarketSimulator, client: httpx.Client) -> None:
    resp = client.post(
        "/_sim/faults",
        json={"faults": {"server_error": {"rate": 1.0, "count": 1}}, "latency_ms": 0},
    )
    assert resp.status_code == 200
    assert resp.json() == {"faults": {"server_error": {"rate": 1.0, "count": 1}}, "latency_ms": 0}
    assert client.get("/v1/bars", params=day_params(limit=5)).status_code == 503

    bad = client.post("/_sim/faults", json={"faults": {"meteor_strike": {"rate": 1.0}}})
    assert bad.status_code == 400
    assert client.post("/_sim/faults", json={"faults": {"server_error": {"rate": 2}}}).is_error
    assert client.post("/_sim/faults", content=b"{not json").status_code == 400
    with pytest.raises(ValueError):
        sim.set_faults({"meteor_strike": FaultSpec(rate=1.0)})

    sim.set_faults({"server_error": FaultSpec(rate=1.0)})
    assert client.post("/_sim/reset").status_code == 200
    assert client.get("/v1/bars", params=day_params(limit=5)).status_code == 200
    stats = sim.stats()
    assert stats["requests"] == 1
    assert stats["faults_injected"] == dict.fromkeys(FAULT_NAMES, 0)


def test_stats_counts(sim: MarketSimulator, client: httpx.Client) -> None:
    for _ in range(3):
        client.get("/v1/bars", params=day_params(limit=5))
    client.get("/v1/latest", params={"symbol": "AAPL"})
    client.get("/v1/latest", params={"symbol": "BAD;"})
    client.get("/nowhere")
    stats = client.get("/_sim/stats").json()
    assert stats == sim.stats()
    assert list(stats) == [
        "requests",
        "requests_by_path",
        "requests_by_key",
        "rejected_429",
        "accepted",
        "faults_injected",
    ]
    assert stats["requests"] == 6
    assert stats["requests_by_path"] == {"/v1/bars": 3, "/v1/latest": 2, "other": 1}
    assert stats["requests_by_key"] == {"anonymous": 5}
    assert stats["rejected_429"] == 0


def test_concurrent_requests_are_consistent(sim: MarketSimulator) -> None:
    results: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        with new_client(sim) as c:
            body = c.get("/v1/bars", params=day_params("ZZZ", limit=1000)).content
        with lock:
            results.append(body)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1


# --------------------------------------------------------------------------------------
# Lifecycle, symbols, CLI
# --------------------------------------------------------------------------------------


def test_context_manager_and_url() -> None:
    with MarketSimulator(SimulatorConfig(port=0)) as sim:
        assert sim.port > 0
        assert sim.url == f"http://127.0.0.1:{sim.port}"
        # Keep-alive connection left open across stop() must not hang the shutdown.
        c = new_client(sim)
        assert c.get("/_sim/health").status_code == 200
    c.close()
    with pytest.raises(RuntimeError):
        _ = sim.url


def test_symbol_pattern() -> None:
    for ok in ("AAPL", "BRK.B", "RDS-A", "X", "1234567890", "ABC.12345"):
        assert SYMBOL_PATTERN.fullmatch(ok)
    for bad in ("aapl", "../etc", "A;DROP", "", "TOOLONGSYMBOL", "A.B.C", "A..B", "A-123456"):
        assert not SYMBOL_PATTERN.fullmatch(bad)


def test_cli_serves_and_stops_on_sigterm() -> None:
    code = "import sys; from resources.simulator.cli import serve_forever_from_args as f; " + (
        "sys.exit(f(sys.argv[1:]))"
    )
    args = ["--port", "0", "--now", "2026-01-07T12:34:56Z", "--api-key", SECRET, "--seed", "0"]
    with subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 10)
            assert ready, "simulator did not announce itself"
            line = proc.stdout.readline().strip()
            assert line.startswith("simulator listening on http://127.0.0.1:")
            url = line.removeprefix("simulator listening on ")
            with httpx.Client(base_url=url, trust_env=False, timeout=5.0) as c:
                resp = c.get("/v1/latest", params={"symbol": "AAPL", "apikey": SECRET})
                assert resp.status_code == 200
                assert resp.json()["t"] == "2026-01-07T12:33:00Z"
                assert c.get("/v1/latest", params={"symbol": "AAPL"}).status_code == 401
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            _, stderr = proc.communicate()
            assert SECRET not in stderr  # no access log leaking the key
        finally:
            if proc.poll() is None:
                proc.kill()


# -- token-bucket quota, IETF headers, request log -----------------------------------------
def test_token_bucket_quota_allows_the_burst_then_the_rate(make_sim) -> None:
    sim = make_sim(quota_requests=10, quota_window_s=1.0, quota_burst=3)
    with httpx.Client(base_url=sim.url) as http:
        statuses = [http.get("/v1/latest", params={"symbol": "AAPL"}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        rejected = http.get("/v1/latest", params={"symbol": "AAPL"})
        assert rejected.status_code == 429
        assert rejected.headers["Retry-After"] == "1"
        assert rejected.headers["RateLimit-Policy"] == '"default";q=10;w=1'
        assert rejected.headers["X-RateLimit-Remaining"] == "0"
        rejected_at = time.monotonic()
        time.sleep(0.12)  # one token back (0.1 s per request)
        ok = http.get("/v1/latest", params={"symbol": "AAPL"})
        back_after = time.monotonic() - rejected_at
        assert ok.status_code == 200
        # The one token it spent was the only one back, unless a busy host slept us for longer
        # than two tokens' worth (seen under a whole make test on 4 workers: r=1).
        left = int(ok.headers["RateLimit"].split(";r=")[1].split(";")[0])
        assert left == 0 if back_after < 0.2 else 0 <= left <= 2, (left, back_after)
    stats = sim.stats()
    assert stats["rejected_429"] == 2
    assert stats["accepted"] == 4
    log = sim.request_log()
    assert [entry["status"] for entry in log] == [200, 200, 200, 429, 429, 200]
    assert all(entry["path"] == "/v1/latest" for entry in log)
    assert log == sorted(log, key=lambda e: e["t"])


def test_rate_limited_fault_sends_the_configured_retry_after(make_sim) -> None:
    sim = make_sim(fault_retry_after_s=7)
    sim.set_faults({"rate_limited": FaultSpec(rate=1.0, count=1)})
    with httpx.Client(base_url=sim.url) as http:
        first = http.get("/v1/bars", params=day_params(limit=5))
        assert first.status_code == 429 and first.headers["Retry-After"] == "7"
        assert http.get("/v1/bars", params=day_params(limit=5)).status_code == 200
        assert http.get("/_sim/requests").json()["requests"][0]["status"] == 429
    assert sim.stats()["rejected_429"] == 1
