"""Corporate actions of the simulated equities: the schedule, the bars' share basis, and
Massive's ``/stocks/v1/splits`` and ``/stocks/v1/dividends`` as the simulator serves them.

Expectations are computed here from what the server serves (its splits, dividends and
unadjusted closes) and from exchange_calendars itself, never from the module under test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import exchange_calendars as xcals
import httpx
import pandas as pd
import pytest

from resources.simulator import actions
from resources.simulator.data import generate_bars
from resources.simulator.server import MarketSimulator
from tests.helpers import PROJECT_ROOT, simulator_get, simulators

# exchange_calendars 4.13 on pandas 3.1 warns of its own deprecated pandas use.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

DEMO = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA")
CALENDARS = {**dict.fromkeys(DEMO, "XNYS"), "VOD.L": "XLON"}
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)  # after the demo window's actions
TODAY = NOW.date()
KEY = "sk-actions-test-42"


@pytest.fixture
def make_sim() -> Iterator[Callable[..., MarketSimulator]]:
    with simulators(now=NOW, calendars=CALENDARS) as factory:
        yield factory


get = simulator_get


def every_page(sim: MarketSimulator, path: str, **params: Any) -> list[dict[str, Any]]:
    """The bodies of every page, following next_url as a client does (the key re-attached)."""
    pages = []
    with httpx.Client(trust_env=False, timeout=10.0, headers={"X-API-Key": KEY}) as client:
        resp = client.get(f"{sim.url}{path}", params=params)
        while True:
            assert resp.status_code == 200, resp.text
            pages.append(resp.json())
            next_url = pages[-1].get("next_url")
            if next_url is None:
                return pages
            assert next_url.startswith(f"{sim.url}{path}?cursor=") and "&" not in next_url
            assert len(pages) < 500
            resp = client.get(next_url)


def results(sim: MarketSimulator, path: str, **params: Any) -> list[dict[str, Any]]:
    return [r for page in every_page(sim, path, limit=5000, **params) for r in page["results"]]


def served_splits(sim: MarketSimulator, ticker: str) -> list[dict[str, Any]]:
    return results(sim, actions.SPLITS_PATH, ticker=ticker, sort="execution_date.asc")


def served_dividends(sim: MarketSimulator, ticker: str) -> list[dict[str, Any]]:
    return results(sim, actions.DIVIDENDS_PATH, ticker=ticker, sort="ex_dividend_date.asc")


def bars(
    sim: MarketSimulator, symbol: str, start: datetime, end: datetime, *, adjusted: bool
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {
        "symbol": symbol,
        "start": iso(start),
        "end": iso(end),
        "adjusted": str(adjusted).lower(),
    }
    out: list[dict[str, Any]] = []
    while True:
        body = get(sim, "/v1/bars", **params).json()
        out += body["bars"]
        if body["next_cursor"] is None:
            return out
        params = {k: v for k, v in params.items() if k != "start"} | {"cursor": body["next_cursor"]}


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def day(text: str) -> date:
    return date.fromisoformat(text)


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=UTC)


def calendar(name: str = "XNYS") -> xcals.ExchangeCalendar:
    return xcals.get_calendar(name, start="2019-01-01", end="2028-12-31")


def previous_session(cal: xcals.ExchangeCalendar, d: date) -> date:
    """The last session strictly before ``d``."""
    return cal.date_to_session(pd.Timestamp(d - timedelta(days=1)), direction="previous").date()


def split_factor(bar_day: date, splits: list[dict[str, Any]], today: date) -> float:
    """Massive's adjusted=true factor of a bar's day, from the served splits."""
    return math.prod(
        s["split_from"] / s["split_to"]
        for s in splits
        if bar_day < day(s["execution_date"]) <= today
    )


def without_request_ids(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in page.items() if k != "request_id"} for page in pages]


# --------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------

SCHEDULE_SCRIPT = """
import json, sys
from resources.simulator import actions
out = {}
for symbol, cal in (("AAPL", "XNYS"), ("VOD.L", "XLON")):
    kw = dict(seed=int(sys.argv[1]), calendar=cal, as_of=int(sys.argv[2]))
    out[symbol] = [r.as_json() for r in actions.split_results(symbol, **kw)] + [
        r.as_json() for r in actions.dividend_results(symbol, **kw)
    ]
print(json.dumps(out))
"""


@pytest.mark.parametrize("seed", [0, 3])
def test_the_schedule_is_the_same_in_another_process(seed: int) -> None:
    as_of = int(NOW.timestamp()) // 60

    def listing() -> dict[str, Any]:
        # Another interpreter, another str hash salt: only sha256 may place the actions.
        proc = subprocess.run(
            [sys.executable, "-c", SCHEDULE_SCRIPT, str(seed), str(as_of)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(proc.stdout)

    here = {
        symbol: [
            r.as_json() for r in actions.split_results(symbol, seed=seed, calendar=cal, as_of=as_of)
        ]
        + [
            r.as_json()
            for r in actions.dividend_results(symbol, seed=seed, calendar=cal, as_of=as_of)
        ]
        for symbol, cal in (("AAPL", "XNYS"), ("VOD.L", "XLON"))
    }
    assert listing() == here
    assert len(here["AAPL"]) > 70  # splits and dividends since 2020
    other_seed = actions.split_results("AAPL", seed=seed + 1, calendar="XNYS", as_of=as_of)
    assert [r.as_json() for r in other_seed] != here["AAPL"][: len(other_seed)]


@pytest.mark.parametrize(("symbol", "name"), sorted(CALENDARS.items()))
def test_every_action_is_on_a_session_and_a_year_has_each_kind(
    make_sim, symbol: str, name: str
) -> None:
    sim = make_sim(now=datetime(2026, 1, 1, tzinfo=UTC))
    cal = calendar(name)

    def is_session(d: str) -> bool:
        return bool(cal.is_session(pd.Timestamp(d)))

    splits = [s for s in served_splits(sim, symbol) if s["execution_date"] >= "2025-01-01"]
    dividends = [
        d for d in served_dividends(sim, symbol) if "2025-01-01" <= d["ex_dividend_date"] < "2026"
    ]
    assert {s["adjustment_type"] for s in splits} == {"forward_split", "reverse_split"}
    assert all(is_session(s["execution_date"]) for s in splits)
    ratios = [(s["split_from"], s["split_to"]) for s in splits[:3]]
    assert sorted(ratios) == [(1.0, 10.0), (2.0, 1.0), (5.0, 1.0)]  # one cycle nets out
    assert len(dividends) == 12  # monthly
    for d in dividends:
        assert (d["frequency"], d["distribution_type"], d["currency"]) == (12, "recurring", "USD")
        for field in ("declaration_date", "ex_dividend_date", "record_date", "pay_date"):
            assert is_session(d[field]), (field, d)
        assert d["declaration_date"] < d["ex_dividend_date"] == d["record_date"] < d["pay_date"]
        assert d["id"].startswith("E") and len(d["id"]) == 33


def test_a_24_7_symbol_or_an_unknown_ticker_has_no_actions(make_sim) -> None:
    sim = make_sim()
    for path in actions.ACTIONS_PATHS:
        for ticker in ("BTCUSD", "X:BTCUSD", "ZZZZ"):
            body = get(sim, path, ticker=ticker).json()
            assert body["status"] == "OK" and body["results"] == [] and "next_url" not in body
    # Its bars are the same adjusted or not: it has no splits to adjust for.
    start = midnight(TODAY - timedelta(days=3))
    raw = bars(sim, "BTCUSD", start, start + timedelta(days=2), adjusted=False)
    assert len(raw) == 2 * 1440
    assert bars(sim, "BTCUSD", start, start + timedelta(days=2), adjusted=True) == raw


def test_the_demo_window_holds_a_split_and_a_dividend(make_sim) -> None:
    # actions.SCHEDULE_SALT's promise: the demo's default window (Fri 2026-01-16 .. Tue
    # 2026-01-20, Monday an XNYS holiday) has corporate actions to show.
    sim = make_sim()
    window = {"execution_date.gte": "2026-01-16", "execution_date.lte": "2026-01-20"}
    splits = results(sim, actions.SPLITS_PATH, **{"ticker.any_of": ",".join(DEMO)}, **window)
    dividends = results(
        sim,
        actions.DIVIDENDS_PATH,
        **{"ticker.any_of": ",".join(DEMO)},
        **{"ex_dividend_date.gte": "2026-01-16", "ex_dividend_date.lte": "2026-01-20"},
    )
    assert [(s["ticker"], s["execution_date"], s["split_to"]) for s in splits] == [
        ("AMZN", "2026-01-20", 10.0)
    ]
    assert [(d["ticker"], d["ex_dividend_date"]) for d in dividends] == [("AAPL", "2026-01-20")]


# --------------------------------------------------------------------------------------
# The bars' share basis
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["AMZN", "GOOG", "VOD.L"])
def test_unadjusted_bars_jump_by_the_split_ratio_and_adjusted_ones_are_continuous(
    make_sim, symbol: str
) -> None:
    sim = make_sim()
    cal = calendar(CALENDARS[symbol])
    splits = served_splits(sim, symbol)
    executed = [s for s in splits if "2025-01-01" <= s["execution_date"] <= str(TODAY)]
    assert len(executed) >= 3
    for split in executed:
        execution = day(split["execution_date"])
        before = previous_session(cal, execution)
        window = midnight(before), midnight(execution) + timedelta(days=1)
        raw = bars(sim, symbol, *window, adjusted=False)
        adjusted = bars(sim, symbol, *window, adjusted=True)
        assert [b["t"] for b in raw] == [b["t"] for b in adjusted]
        # adjusted=true is the unadjusted bars times the served splits' factor, unrounded.
        for plain, adj in zip(raw, adjusted, strict=True):
            factor = split_factor(day(plain["t"][:10]), splits, TODAY)
            for key in ("o", "h", "l", "c", "vw"):
                assert adj[key] == pytest.approx(plain[key] * factor, rel=1e-12), (key, adj)
            assert adj["v"] == pytest.approx(plain["v"] / factor, rel=1e-12)
            assert adj["n"] == plain["n"]
        last = max(i for i, b in enumerate(raw) if b["t"] < split["execution_date"])
        adjusted_move = math.log(adjusted[last + 1]["o"] / adjusted[last]["c"])
        raw_move = math.log(raw[last + 1]["o"] / raw[last]["c"])
        ratio = split["split_from"] / split["split_to"]
        assert abs(adjusted_move) < 0.25, split  # an overnight move of the walk, no jump
        assert raw_move == pytest.approx(math.log(ratio) + adjusted_move, abs=1e-3), split


def test_unadjusted_bars_are_what_generate_bars_and_latest_serve(make_sim) -> None:
    sim = make_sim()
    start = datetime(2026, 1, 16, tzinfo=UTC)
    end = datetime(2026, 1, 21, tzinfo=UTC)
    expected = generate_bars("AMZN", start, end, calendar="XNYS")
    assert bars(sim, "AMZN", start, end, adjusted=False) == expected
    assert (
        get(sim, "/v1/bars", symbol="AMZN", start=iso(start), end=iso(end)).json()["bars"]
        == (expected[:1000])
    )  # the default is unadjusted
    assert bars(sim, "AMZN", start, end, adjusted=True) == generate_bars(
        "AMZN", start, end, calendar="XNYS", adjusted_as_of=NOW
    )
    latest = get(sim, "/v1/latest", symbol="AMZN").json()
    last = generate_bars("AMZN", NOW - timedelta(days=4), NOW, calendar="XNYS")[-1]
    assert latest == {"symbol": "AMZN", "t": last["t"], "c": last["c"]}


def test_unadjusted_bars_keep_their_invariants() -> None:
    # Through two splits (AMZN: 2025-09-19 and 2026-01-20): the rounding after scaling is
    # monotone, so no bar crosses its own range.
    for start in (datetime(2025, 9, 17, tzinfo=UTC), datetime(2026, 1, 15, tzinfo=UTC)):
        for bar in generate_bars("AMZN", start, start + timedelta(days=7), calendar="XNYS"):
            o, h, low, c, vw = bar["o"], bar["h"], bar["l"], bar["c"], bar["vw"]
            assert 0 < low <= min(o, c, vw) and max(o, c, vw) <= h, bar
            assert all(round(bar[k], 4) == bar[k] for k in ("o", "h", "l", "c", "vw"))
            assert round(bar["v"], 2) == bar["v"] and isinstance(bar["n"], int)


# --------------------------------------------------------------------------------------
# historical_adjustment_factor and friends
# --------------------------------------------------------------------------------------


def close_before(sim: MarketSimulator, symbol: str, ex: date) -> float:
    """The served unadjusted close of the last session before ``ex``."""
    cal = calendar(CALENDARS[symbol])
    session = pd.Timestamp(previous_session(cal, ex))
    close = cal.session_close(session).to_pydatetime()
    return bars(sim, symbol, close - timedelta(minutes=1), close, adjusted=False)[-1]["c"]


@pytest.mark.parametrize("symbol", ["AMZN", "VOD.L"])
def test_historical_adjustment_factors_follow_their_definitions(make_sim, symbol: str) -> None:
    sim = make_sim()
    # A dividend going ex the day a split executes is paid per post-split share.
    split_day = max(
        s["execution_date"] for s in served_splits(sim, symbol) if s["execution_date"] <= str(TODAY)
    )
    sim.announce(
        {"dividends": [{"ticker": symbol, "ex_dividend_date": split_day, "cash_amount": 0.05}]}
    )
    splits, dividends = served_splits(sim, symbol), served_dividends(sim, symbol)
    executed = [s for s in splits if day(s["execution_date"]) <= TODAY]
    assert len(executed) > 10
    for split in splits:
        if day(split["execution_date"]) > TODAY:
            expected = 1.0  # nothing before it is on another basis yet
        else:
            expected = math.prod(
                s["split_from"] / s["split_to"]
                for s in executed
                if s["execution_date"] >= split["execution_date"]
            )
        assert split["historical_adjustment_factor"] == pytest.approx(expected, abs=1e-6)

    def on_the_day(ex: str) -> float:  # split_to / split_from of the splits executing then
        return math.prod(
            s["split_to"] / s["split_from"] for s in splits if s["execution_date"] == ex
        )

    gone_ex = [d for d in dividends if day(d["ex_dividend_date"]) <= TODAY]
    assert len(gone_ex) > 60 and any(d["distribution_type"] == "special" for d in gone_ex)
    terms = {}
    for d in gone_ex:
        close = close_before(sim, symbol, day(d["ex_dividend_date"]))
        terms[d["id"]] = 1 - d["cash_amount"] * on_the_day(d["ex_dividend_date"]) / close
        if d["distribution_type"] == "recurring":
            # About 0.2-0.6 % of the previous close, per share as of the ex-date, in cents.
            assert d["cash_amount"] == max(0.01, round(d["cash_amount"], 2))
            cash_yield = d["cash_amount"] * on_the_day(d["ex_dividend_date"]) / close
            slack = 0.005 * on_the_day(d["ex_dividend_date"]) / close
            assert d["cash_amount"] == 0.01 or 0.002 - slack <= cash_yield <= 0.006 + slack
    for d in dividends:
        if d["id"] in terms:
            expected = math.prod(
                terms[e["id"]] for e in gone_ex if e["ex_dividend_date"] >= d["ex_dividend_date"]
            )
        else:
            expected = 1.0
        assert d["historical_adjustment_factor"] == pytest.approx(expected, abs=1e-6), d
        later_splits = math.prod(
            s["split_from"] / s["split_to"]
            for s in executed
            if s["execution_date"] > d["ex_dividend_date"]
        )
        assert d["split_adjusted_cash_amount"] == pytest.approx(
            d["cash_amount"] * later_splits, abs=1e-6
        )


def test_actions_are_listed_once_announced_and_count_once_executed(make_sim) -> None:
    late = make_sim(now=datetime(2026, 12, 1, tzinfo=UTC))
    split = next(s for s in served_splits(late, "AAPL") if s["execution_date"] > str(TODAY))
    execution = day(split["execution_date"])
    cal = calendar()
    announced = cal.session_offset(pd.Timestamp(execution), -10).date()

    def listed(now: datetime) -> list[dict[str, Any]]:
        sim = make_sim(now=now)
        return [s for s in served_splits(sim, "AAPL") if s["id"] == split["id"]]

    assert listed(midnight(announced) - timedelta(minutes=1)) == []
    assert listed(midnight(announced)) == [{**split, "historical_adjustment_factor": 1.0}]
    assert (
        listed(midnight(execution) - timedelta(minutes=1))[0]["historical_adjustment_factor"] == 1.0
    )
    on_the_day = listed(midnight(execution))[0]
    assert on_the_day["historical_adjustment_factor"] == pytest.approx(
        split["split_from"] / split["split_to"]
    )
    dividend = next(d for d in served_dividends(late, "AAPL") if d["ex_dividend_date"] > str(TODAY))
    declared = day(dividend["declaration_date"])
    early = make_sim(now=midnight(declared) - timedelta(minutes=1))
    assert dividend["id"] not in {d["id"] for d in served_dividends(early, "AAPL")}
    ahead = make_sim(now=midnight(declared))
    listed_ahead = [d for d in served_dividends(ahead, "AAPL") if d["id"] == dividend["id"]]
    assert listed_ahead[0]["historical_adjustment_factor"] == 1.0


# --------------------------------------------------------------------------------------
# The endpoints: filters, pages, errors, auth and quota
# --------------------------------------------------------------------------------------


def test_filters_and_sorting(make_sim) -> None:
    sim = make_sim()
    everything = results(sim, actions.SPLITS_PATH)
    assert {s["ticker"] for s in everything} == set(CALENDARS)  # no ticker: every stock
    default = get(sim, actions.SPLITS_PATH).json()["results"]
    assert len(default) == actions.DEFAULT_LIMIT
    dates = [s["execution_date"] for s in default]
    assert dates == sorted(dates, reverse=True)  # execution_date.desc
    assert list(default[0]) == [
        "id",
        "ticker",
        "execution_date",
        "split_from",
        "split_to",
        "adjustment_type",
        "historical_adjustment_factor",
    ]
    two = results(sim, actions.SPLITS_PATH, **{"ticker.any_of": "AAPL,MSFT,BTCUSD"})
    assert {s["ticker"] for s in two} == {"AAPL", "MSFT"}
    both = results(sim, actions.SPLITS_PATH, ticker="AAPL", **{"ticker.any_of": "AAPL,MSFT"})
    assert {s["ticker"] for s in both} == {"AAPL"}
    assert {s["ticker"] for s in results(sim, actions.SPLITS_PATH, **{"ticker.gte": "MSFT"})} == {
        "MSFT",
        "NVDA",
        "VOD.L",
    }
    ranged = results(
        sim,
        actions.SPLITS_PATH,
        ticker="AAPL",
        adjustment_type="reverse_split",
        **{"execution_date.gte": "2024-01-01", "execution_date.lt": "2026-01-01"},
    )
    assert ranged and all(
        "2024-01-01" <= s["execution_date"] < "2026-01-01" and s["split_to"] < s["split_from"]
        for s in ranged
    )
    one_day = results(sim, actions.SPLITS_PATH, execution_date=ranged[0]["execution_date"])
    assert ranged[0] in one_day
    sorted_rows = results(sim, actions.SPLITS_PATH, sort="ticker.desc,execution_date.asc")
    assert sorted_rows == sorted(
        sorted(everything, key=lambda s: s["execution_date"]),
        key=lambda s: s["ticker"],
        reverse=True,
    )
    monthly = results(sim, actions.DIVIDENDS_PATH, ticker="MSFT", frequency="12")
    assert monthly and results(sim, actions.DIVIDENDS_PATH, ticker="MSFT", frequency="4") == []
    special = results(sim, actions.DIVIDENDS_PATH, ticker="MSFT", distribution_type="special")
    assert special == []


def test_limit_one_walks_every_result_through_next_url(make_sim) -> None:
    sim = make_sim(api_keys=frozenset({KEY}))
    params = {
        "ticker.any_of": "AAPL,VOD.L",
        "ex_dividend_date.gte": "2025-01-01",
        "sort": "ex_dividend_date.asc",
    }
    one_page = every_page(sim, actions.DIVIDENDS_PATH, limit=5000, **params)
    assert len(one_page) == 1 and "next_url" not in one_page[0]
    expected = one_page[0]["results"]
    assert len(expected) > 20
    pages = every_page(sim, actions.DIVIDENDS_PATH, limit=1, **params)
    assert [len(p["results"]) for p in pages] == [1] * len(expected)
    assert [r for p in pages for r in p["results"]] == expected
    assert all(KEY not in p.get("next_url", "") for p in pages)
    for page in pages:
        assert list(page)[:3] == ["status", "request_id", "results"]
        assert len(page["request_id"]) == 32 and page["status"] == "OK"
    # Two pages of three, then the rest: pages never overlap nor skip.
    threes = every_page(sim, actions.DIVIDENDS_PATH, limit=3, **params)
    assert [r for p in threes for r in p["results"]] == expected


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        (actions.SPLITS_PATH, "ticker", "aapl<script>"),
        (actions.SPLITS_PATH, "ticker.any_of", "AAPL,<b>"),
        (actions.SPLITS_PATH, "ticker.like", "AAPL"),
        (actions.SPLITS_PATH, "execution_date.gte", "2026-13-45"),
        (actions.SPLITS_PATH, "execution_date.ge", "2026-01-01"),
        (actions.SPLITS_PATH, "execution_date", "yesterday"),
        (actions.SPLITS_PATH, "adjustment_type", "merger-x"),
        (actions.SPLITS_PATH, "limit", "-7"),
        (actions.SPLITS_PATH, "limit", "5001"),
        (actions.SPLITS_PATH, "sort", "price-x.desc"),
        (actions.SPLITS_PATH, "sort", "ticker.sideways"),
        (actions.SPLITS_PATH, "cursor", "not-a-cursor-x"),
        (actions.DIVIDENDS_PATH, "ex_dividend_date.lt", "2026/01/01"),
        (actions.DIVIDENDS_PATH, "frequency", "often-x"),
        (actions.DIVIDENDS_PATH, "distribution_type", "bonus-x"),
        (actions.DIVIDENDS_PATH, "sort", "execution_date.asc"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    make_sim, path: str, name: str, value: str
) -> None:
    sim = make_sim()
    resp = get(sim, path, **{name: value})
    assert resp.status_code == 400
    body = resp.json()
    assert list(body) == ["status", "request_id", "error"] and body["status"] == "ERROR"
    assert name.split(".")[0] in body["error"]
    assert value not in body["error"]


def test_a_tampered_cursor_is_refused(make_sim) -> None:
    sim = make_sim()
    first = get(sim, actions.SPLITS_PATH, limit=1).json()
    cursor = first["next_url"].partition("cursor=")[2]
    assert get(sim, actions.SPLITS_PATH, cursor=cursor).status_code == 200
    for bad in (cursor[:-3], cursor + "AAAA", "A" * 9000):
        resp = get(sim, actions.SPLITS_PATH, cursor=bad)
        assert resp.status_code == 400 and "cursor" in resp.json()["error"]


def test_actions_routes_are_authenticated_counted_and_throttled_like_v1(make_sim) -> None:
    sim = make_sim(api_keys=frozenset({KEY}), quota_requests=2, quota_window_s=30.0)
    with httpx.Client(base_url=sim.url, trust_env=False, timeout=10.0) as client:
        missing = client.get(actions.SPLITS_PATH, params={"ticker": "AAPL"})
        assert missing.status_code == 401
        assert missing.json() == {"error": "invalid or missing api key"}
        ok = client.get(actions.SPLITS_PATH, params={"ticker": "AAPL", "apikey": KEY})
        ok_header = client.get(
            actions.DIVIDENDS_PATH, params={"ticker": "AAPL"}, headers={"X-API-Key": KEY}
        )
        assert ok.status_code == ok_header.status_code == 200
        assert (
            ok.headers["X-RateLimit-Remaining"],
            ok_header.headers["X-RateLimit-Remaining"],
        ) == (
            "1",
            "0",
        )
        assert ok_header.headers["RateLimit-Policy"] == '"default";q=2;w=30'
        # One quota for bars and actions alike.
        limited = client.get("/v1/latest", params={"symbol": "AAPL", "apikey": KEY})
        limited_actions = client.get(actions.SPLITS_PATH, params={"apikey": KEY})
        for resp in (limited, limited_actions):
            assert resp.status_code == 429 and resp.headers["Retry-After"]
            assert resp.json()["error"] == "rate limit exceeded"
        assert KEY not in ok.text + ok_header.text
    stats = sim.stats()
    assert stats["requests_by_path"] == {
        "/stocks/v1/splits": 3,
        "/stocks/v1/dividends": 1,
        "/v1/latest": 1,
    }
    assert (stats["accepted"], stats["rejected_429"]) == (2, 2)
    assert [(e["path"], e["status"]) for e in sim.request_log()] == [
        ("/stocks/v1/splits", 401),
        ("/stocks/v1/splits", 200),
        ("/stocks/v1/dividends", 200),
        ("/v1/latest", 429),
        ("/stocks/v1/splits", 429),
    ]
    with httpx.Client(base_url=sim.url, trust_env=False) as client:
        assert client.post(actions.SPLITS_PATH).status_code == 405


# --------------------------------------------------------------------------------------
# Actions announced after the fact (the admin API)
# --------------------------------------------------------------------------------------


def test_an_announced_split_scales_later_bars_only(make_sim) -> None:
    sim = make_sim()
    execution = date(2026, 2, 10)  # a Tuesday, MSFT's own schedule is quiet then
    window = midnight(date(2026, 2, 9)), midnight(date(2026, 2, 12))
    before = bars(sim, "MSFT", *window, adjusted=False)
    with httpx.Client(base_url=sim.url, trust_env=False) as client:
        resp = client.post(
            "/_sim/corporate_actions",
            json={
                "splits": [
                    {
                        "ticker": "MSFT",
                        "execution_date": str(execution),
                        "split_from": 1,
                        "split_to": 4,
                    }
                ]
            },
        )
    assert resp.status_code == 200 and resp.json() == {"splits": 1, "dividends": 0}
    after = bars(sim, "MSFT", *window, adjusted=False)
    assert [b["t"] for b in after] == [b["t"] for b in before]
    for old, new in zip(before, after, strict=True):
        if old["t"] < str(execution):
            assert new == old  # history is never rewritten
        else:
            for key in ("o", "h", "l", "c", "vw"):
                assert new[key] == pytest.approx(old[key] / 4, abs=1.01e-4)
            assert new["v"] == pytest.approx(old["v"] * 4, abs=0.03)
    listed = [s for s in served_splits(sim, "MSFT") if s["execution_date"] == str(execution)]
    assert [(s["split_from"], s["split_to"], s["adjustment_type"]) for s in listed] == [
        (1.0, 4.0, "forward_split")
    ]
    assert listed[0]["historical_adjustment_factor"] == pytest.approx(
        split_factor(execution - timedelta(days=1), served_splits(sim, "MSFT"), TODAY)
    )
    adjusted = bars(sim, "MSFT", *window, adjusted=True)
    last = max(i for i, b in enumerate(adjusted) if b["t"] < str(execution))
    assert abs(math.log(adjusted[last + 1]["o"] / adjusted[last]["c"])) < 0.25
    # Announcing it again changes nothing; a reset forgets it.
    sim.announce(
        {
            "splits": [
                {"ticker": "MSFT", "execution_date": str(execution), "split_from": 1, "split_to": 4}
            ]
        }
    )
    assert len(sim.announced().splits) == 1
    with httpx.Client(base_url=sim.url, trust_env=False) as client:
        assert client.post("/_sim/reset").status_code == 200
    assert bars(sim, "MSFT", *window, adjusted=False) == before


def test_an_announced_dividend_is_listed(make_sim) -> None:
    sim = make_sim()
    with httpx.Client(base_url=sim.url, trust_env=False) as client:
        resp = client.post(
            "/_sim/corporate_actions",
            json={
                "dividends": [
                    {"ticker": "NVDA", "ex_dividend_date": "2026-02-13", "cash_amount": 1.25},
                    {
                        "ticker": "NVDA",
                        "ex_dividend_date": "2026-06-01",
                        "cash_amount": 0.5,
                        "currency": "EUR",
                        "declaration_date": "2026-05-01",
                        "record_date": "2026-06-02",
                        "pay_date": "2026-06-20",
                        "frequency": 1,
                        "distribution_type": "supplemental",
                    },
                ]
            },
        )
    assert resp.status_code == 200 and resp.json() == {"splits": 0, "dividends": 2}
    listed = {d["ex_dividend_date"]: d for d in served_dividends(sim, "NVDA")}
    past, future = listed["2026-02-13"], listed["2026-06-01"]
    # Not declared: listed without a declaration date; recorded on the ex-date, paid three
    # sessions later (Presidents' Day 2026-02-16 is not one).
    assert "declaration_date" not in past
    assert (past["record_date"], past["pay_date"]) == ("2026-02-13", "2026-02-19")
    assert (past["frequency"], past["distribution_type"], past["currency"]) == (0, "special", "USD")
    close = close_before(sim, "NVDA", date(2026, 2, 13))
    assert past["historical_adjustment_factor"] < 1 - 1.25 / close + 1e-6
    assert future["historical_adjustment_factor"] == 1.0  # not ex yet
    assert {k: future[k] for k in ("currency", "declaration_date", "pay_date", "frequency")} == {
        "currency": "EUR",
        "declaration_date": "2026-05-01",
        "pay_date": "2026-06-20",
        "frequency": 1,
    }
    assert list(future) == [
        "id",
        "ticker",
        "cash_amount",
        "currency",
        "declaration_date",
        "distribution_type",
        "ex_dividend_date",
        "frequency",
        "historical_adjustment_factor",
        "pay_date",
        "record_date",
        "split_adjusted_cash_amount",
    ]
    # Earlier dividends' factors now include it.
    earlier = [d for d in served_dividends(sim, "NVDA") if d["ex_dividend_date"] < "2026-02-13"]
    sim.reset()
    before = {d["id"]: d for d in served_dividends(sim, "NVDA")}
    for d in earlier:
        assert d["historical_adjustment_factor"] == pytest.approx(
            before[d["id"]]["historical_adjustment_factor"] * (1 - 1.25 / close), abs=2e-6
        )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "body: expected an object"),
        ({"mergers": []}, "body: unknown field"),
        ({"splits": {}}, "splits: expected a list"),
        ({"splits": [{"ticker": "BTCUSD"}]}, "splits[0].execution_date: missing"),
        (
            {
                "splits": [
                    {
                        "ticker": "BTCUSD",
                        "execution_date": "2026-01-02",
                        "split_from": 1,
                        "split_to": 2,
                    }
                ]
            },
            "splits[0].ticker: not a symbol on an exchange calendar",
        ),
        (
            {
                "splits": [
                    {
                        "ticker": "AAPL",
                        "execution_date": "2026-02-30",
                        "split_from": 1,
                        "split_to": 2,
                    }
                ]
            },
            "splits[0].execution_date: expected a date",
        ),
        (
            {
                "splits": [
                    {
                        "ticker": "AAPL",
                        "execution_date": "2026-02-03",
                        "split_from": 2,
                        "split_to": 2,
                    }
                ]
            },
            "splits[0].split_to: must differ",
        ),
        (
            {
                "splits": [
                    {
                        "ticker": "AAPL",
                        "execution_date": "2026-02-03",
                        "split_from": 0,
                        "split_to": 2,
                    }
                ]
            },
            "splits[0].split_from: expected a positive number",
        ),
        (
            {
                "splits": [
                    {
                        "ticker": "AAPL",
                        "execution_date": "2026-02-03",
                        "split_from": 1,
                        "split_to": 2,
                        "adjustment_type": "reverse_split",
                    }
                ]
            },
            "splits[0].adjustment_type",
        ),
        (
            {
                "dividends": [
                    {"ticker": "AAPL", "ex_dividend_date": "2026-02-03", "cash_amount": -1}
                ]
            },
            "dividends[0].cash_amount: expected a positive number",
        ),
        (
            {
                "dividends": [
                    {
                        "ticker": "AAPL",
                        "ex_dividend_date": "2026-02-03",
                        "cash_amount": 1,
                        "currency": "dollars",
                    }
                ]
            },
            "dividends[0].currency",
        ),
        (
            {
                "dividends": [
                    {
                        "ticker": "AAPL",
                        "ex_dividend_date": "2026-02-03",
                        "cash_amount": 1,
                        "frequency": True,
                    }
                ]
            },
            "dividends[0].frequency",
        ),
        (
            {
                "dividends": [
                    {
                        "ticker": "AAPL",
                        "ex_dividend_date": "2026-02-03",
                        "cash_amount": 1,
                        "pay_date": "soon",
                    }
                ]
            },
            "dividends[0].pay_date",
        ),
    ],
)
def test_a_bad_announcement_is_400_naming_the_field(make_sim, payload: Any, message: str) -> None:
    sim = make_sim()
    with httpx.Client(base_url=sim.url, trust_env=False) as client:
        resp = client.post("/_sim/corporate_actions", json=payload)
        assert resp.status_code == 400
        assert resp.json()["error"].startswith(message), resp.json()
        assert client.post("/_sim/corporate_actions", content=b"{oops").status_code == 400
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sim.announce(payload)
    assert sim.announced() == actions.NOTHING_ANNOUNCED
