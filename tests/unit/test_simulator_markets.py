"""The simulator serving several markets: symbols on exchange calendars and 24/7 symbols."""

from __future__ import annotations

import select
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import exchange_calendars as xcals
import httpx
import pandas as pd
import pytest

from resources.quality import check_jumps
from resources.simulator.cli import serve_forever_from_args
from resources.simulator.data import generate_bars
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.helpers import simulator_get, simulators, start_cli, stop_process
from tests.unit.test_simulator import closes_frame

# exchange_calendars 4.13 on pandas 3.1 warns of its own deprecated pandas use (the simulator
# silences it the same way); the tests ask it for session minutes to check ours against.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

CALENDARS = {"AAPL": "XNYS", "MSFT": "XNYS", "VOD.L": "XLON", "0700.HK": "XHKG"}
# Friday 2026-01-16 .. Tuesday 2026-01-20: a weekend, then Martin Luther King Day (XNYS shut).
WEEK_START = datetime(2026, 1, 16, tzinfo=UTC)
WEEK_END = datetime(2026, 1, 21, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)  # everything below has closed


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def times(bars: list[dict[str, Any]]) -> list[datetime]:
    return [utc(b["t"]) for b in bars]


def days(dts: list[datetime]) -> Counter[date]:
    return Counter(dt.date() for dt in dts)


def one_day(day: date, symbol: str = "AAPL", calendar: str | None = "XNYS") -> list[datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return times(generate_bars(symbol, start, start + timedelta(days=1), calendar=calendar))


def session_minutes(calendar: str, start: datetime, end: datetime) -> list[datetime]:
    """Trading minutes in [start, end) according to exchange_calendars itself."""
    margin = timedelta(days=10)  # the calendar must extend past both ends of the window
    cal = xcals.get_calendar(
        calendar, start=str((start - margin).date()), end=str((end + margin).date())
    )
    minutes = cal.minutes_in_range(pd.Timestamp(start), pd.Timestamp(end - timedelta(minutes=1)))
    return [m.to_pydatetime() for m in minutes]


@pytest.fixture
def make_sim() -> Iterator[Callable[..., MarketSimulator]]:
    with simulators(now=NOW, calendars=CALENDARS) as factory:
        yield factory


get = simulator_get


# --------------------------------------------------------------------------------------
# Sessions: weekend, holiday, early close, DST
# --------------------------------------------------------------------------------------


def test_equities_trade_only_in_sessions_and_crypto_around_the_clock() -> None:
    aapl = times(generate_bars("AAPL", WEEK_START, WEEK_END, calendar="XNYS"))
    # Friday and Tuesday only: nothing on the weekend nor on the Monday holiday.
    assert set(days(aapl)) == {date(2026, 1, 16), date(2026, 1, 20)}
    for dt in aapl:  # 09:30-16:00 New York is 14:30-21:00 UTC in winter
        assert (14, 30) <= (dt.hour, dt.minute) <= (20, 59), dt
    for day in (date(2026, 1, 16), date(2026, 1, 20)):
        session = [dt for dt in aapl if dt.date() == day]
        assert (session[0].time().isoformat(), session[-1].time().isoformat()) == (
            "14:30:00",
            "20:59:00",
        )
        assert 390 - 2 * 7 <= len(session) < 390  # a few quiet minutes, at most 2 an hour
    assert set(aapl) <= set(session_minutes("XNYS", WEEK_START, WEEK_END))

    btc = times(generate_bars("BTCUSD", WEEK_START, WEEK_END))
    assert days(btc) == {(WEEK_START + timedelta(days=i)).date(): 1440 for i in range(5)}


def test_early_close_the_day_after_thanksgiving() -> None:
    # 2026-11-27 closes at 13:00 New York (EST since Nov 1), i.e. 18:00 UTC.
    friday = one_day(date(2026, 11, 27))
    assert friday[0] == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert friday[-1] == datetime(2026, 11, 27, 17, 59, tzinfo=UTC)
    assert 210 - 2 * 4 <= len(friday) < 210
    assert one_day(date(2026, 11, 26)) == []  # Thanksgiving
    assert len(one_day(date(2026, 11, 27), "BTCUSD", None)) == 1440


def test_daylight_saving_time_moves_the_session_in_utc() -> None:
    # New York springs forward on Sunday 2026-03-08: the open moves from 14:30 to 13:30 UTC.
    before, after = one_day(date(2026, 3, 6)), one_day(date(2026, 3, 9))
    assert (before[0].hour, before[0].minute, before[-1].hour) == (14, 30, 20)
    assert (after[0].hour, after[0].minute, after[-1].hour) == (13, 30, 19)
    # ... and falls back on 2026-11-01.
    assert one_day(date(2026, 10, 30))[0].hour == 13
    assert one_day(date(2026, 11, 2))[0].hour == 14
    # London keeps its own clock: 08:00-16:30 UTC in winter, 07:00-15:30 UTC from 2026-03-29.
    london_winter, london_summer = (
        one_day(date(2026, 3, 6), "VOD.L", "XLON"),
        one_day(date(2026, 3, 30), "VOD.L", "XLON"),
    )
    assert (london_winter[0].hour, london_winter[-1].time().isoformat()) == (8, "16:29:00")
    assert (london_summer[0].hour, london_summer[-1].time().isoformat()) == (7, "15:29:00")


def test_a_lunch_break_has_no_bars() -> None:
    hk = one_day(date(2026, 1, 16), "0700.HK", "XHKG")
    assert hk[0] == datetime(2026, 1, 16, 1, 30, tzinfo=UTC)  # 09:30 Hong Kong
    assert not [dt for dt in hk if dt.hour == 4]  # 12:00-13:00 Hong Kong
    assert datetime(2026, 1, 16, 3, 59, tzinfo=UTC) in hk  # the last minute before the break
    assert datetime(2026, 1, 16, 5, 0, tzinfo=UTC) in hk  # and the first after it


def test_quiet_minutes_are_isolated_and_rare() -> None:
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    bars = set(times(generate_bars("MSFT", start, end, calendar="XNYS")))
    sessions = session_minutes("XNYS", start, end)
    assert bars <= set(sessions)
    quiet = sorted(set(sessions) - bars)
    assert 20 <= len(quiet) <= 2 * 7 * 22  # some, never more than two per session hour
    per_hour = Counter(dt.replace(minute=0) for dt in quiet)
    assert max(per_hour.values()) <= 2
    one_minute = timedelta(minutes=1)
    for dt in quiet:
        assert dt - one_minute in bars and dt + one_minute in bars, dt  # never two in a row
    # A session's first and last minutes always trade.
    by_day: dict[date, list[datetime]] = {}
    for dt in sessions:
        by_day.setdefault(dt.date(), []).append(dt)
    for minutes in by_day.values():
        assert minutes[0] in bars and minutes[-1] in bars
    # Deterministic, and the seed moves them.
    assert bars == set(times(generate_bars("MSFT", start, end, calendar="XNYS")))
    assert bars != set(times(generate_bars("MSFT", start, end, calendar="XNYS", seed=1)))


def test_a_calendar_only_hides_minutes_prices_are_the_symbols_own() -> None:
    around_the_clock = {b["t"]: b for b in generate_bars("AAPL", WEEK_START, WEEK_END)}
    in_session = generate_bars("AAPL", WEEK_START, WEEK_END, calendar="XNYS")
    assert all(around_the_clock[b["t"]] == b for b in in_session)
    # Overnight and over the holiday weekend the price moved, but as a continuous walk: no
    # return, scaled by the gap it spans, is a jump.
    outcome = check_jumps(closes_frame("AAPL", in_session))
    assert outcome.passed, outcome.summary


def test_an_unknown_calendar_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="unknown exchange calendar 'XNYZ'.*XNYS"):
        generate_bars("AAPL", WEEK_START, WEEK_END, calendar="XNYZ")
    with pytest.raises(ValueError, match="symbol AAPL: unknown exchange calendar 'XNYZ'"):
        MarketSimulator(SimulatorConfig(port=0, calendars={"AAPL": "XNYZ"}))
    with pytest.raises(ValueError, match="'aapl' is not a valid symbol"):
        MarketSimulator(SimulatorConfig(port=0, calendars={"aapl": "XNYS"}))


# --------------------------------------------------------------------------------------
# Over HTTP
# --------------------------------------------------------------------------------------


def page_through(sim: MarketSimulator, symbol: str, start: str, end: str, limit: int) -> list:
    params: dict[str, Any] = {"symbol": symbol, "start": start, "end": end, "limit": limit}
    pages = []
    with httpx.Client(base_url=sim.url, trust_env=False, timeout=5.0) as client:
        while True:
            resp = client.get("/v1/bars", params=params)
            assert resp.status_code == 200, resp.text
            pages.append(resp.json())
            if pages[-1]["next_cursor"] is None:
                return pages
            params = {k: v for k, v in params.items() if k != "start"}
            params["cursor"] = pages[-1]["next_cursor"]
            assert len(pages) < 100


def test_paging_through_a_session_day_equals_generate_bars(make_sim) -> None:
    sim = make_sim()
    day, next_day = "2026-01-16T00:00:00Z", "2026-01-17T00:00:00Z"
    expected = generate_bars("AAPL", utc(day), utc(next_day), calendar="XNYS")
    pages = page_through(sim, "AAPL", day, next_day, limit=100)
    assert [b for p in pages for b in p["bars"]] == expected
    # The limit counts bars: four pages for a session, none spent on the night.
    assert [len(p["bars"]) for p in pages] == [100, 100, 100, len(expected) - 300]
    # The windows tile the whole requested day, closed hours included.
    assert pages[0]["window"]["start"] == day and pages[-1]["window"]["end"] == next_day
    for page, following in zip(pages, pages[1:], strict=False):
        assert page["window"]["end"] == following["window"]["start"]
        assert following["bars"][0]["t"] == following["window"]["start"]
    # A 24/7 symbol on the same simulator pages as it always did.
    btc = page_through(sim, "BTCUSD", day, next_day, limit=1000)
    assert [len(p["bars"]) for p in btc] == [1000, 440]
    assert [b for p in btc for b in p["bars"]] == generate_bars("BTCUSD", utc(day), utc(next_day))


def test_a_closed_window_is_one_empty_page_covering_it(make_sim) -> None:
    sim = make_sim()
    body = get(
        sim, "/v1/bars", symbol="AAPL", start="2026-01-17T00:00:00Z", end="2026-01-20T14:30:00Z"
    ).json()
    assert body["bars"] == [] and body["next_cursor"] is None
    assert body["window"] == {"start": "2026-01-17T00:00:00Z", "end": "2026-01-20T14:30:00Z"}


def test_the_window_runs_to_the_clock_not_to_the_close(make_sim) -> None:
    now = datetime(2026, 1, 20, 15, 0, 30, tzinfo=UTC)
    sim = make_sim(now=now)
    body = get(
        sim, "/v1/bars", symbol="AAPL", start="2026-01-20T00:00:00Z", end="2026-01-21T00:00:00Z"
    ).json()
    assert body["window"] == {"start": "2026-01-20T00:00:00Z", "end": "2026-01-20T15:00:00Z"}
    closed = now.replace(second=0)  # the 15:00 minute is still open
    assert body["bars"] == generate_bars(
        "AAPL", utc("2026-01-20T00:00:00Z"), closed, calendar="XNYS"
    )
    assert body["bars"][0]["t"] == "2026-01-20T14:30:00Z"


@pytest.mark.parametrize(
    ("now", "aapl", "vod"),
    [
        # Over the weekend and on the holiday: Friday's last session minute.
        ("2026-01-18T12:00:00Z", "2026-01-16T20:59:00Z", "2026-01-16T16:29:00Z"),
        ("2026-01-19T18:00:00Z", "2026-01-16T20:59:00Z", "2026-01-19T16:29:00Z"),
        # Before New York opens: still Friday's close; London is trading (and minute 59 of
        # an hour is never a quiet one).
        ("2026-01-20T14:00:30Z", "2026-01-16T20:59:00Z", "2026-01-20T13:59:00Z"),
    ],
)
def test_latest_of_a_calendar_symbol_is_its_last_session_minute(
    make_sim, now: str, aapl: str, vod: str
) -> None:
    sim = make_sim(now=utc(now))
    for symbol, expected in (("AAPL", aapl), ("VOD.L", vod)):
        body = get(sim, "/v1/latest", symbol=symbol).json()
        t = utc(expected)
        bar = generate_bars(symbol, t, t + timedelta(minutes=1))[0]
        assert body == {"symbol": symbol, "t": expected, "c": bar["c"]}
    btc = get(sim, "/v1/latest", symbol="BTCUSD").json()
    assert utc(btc["t"]) == utc(now).replace(second=0) - timedelta(minutes=1)


def test_latest_in_session_is_the_last_minute_that_traded(make_sim) -> None:
    now = datetime(2026, 1, 20, 15, 0, 30, tzinfo=UTC)
    sim = make_sim(now=now)
    closed = now.replace(second=0)  # the 15:00 minute is still open
    last = generate_bars("AAPL", closed - timedelta(hours=1), closed, calendar="XNYS")[-1]
    assert get(sim, "/v1/latest", symbol="AAPL").json() == {
        "symbol": "AAPL",
        "t": last["t"],
        "c": last["c"],
    }
    assert last["t"] in ("2026-01-20T14:59:00Z", "2026-01-20T14:58:00Z")  # 14:59 may be quiet


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calendar", "XNYZ:AAPL"], "unknown exchange calendar 'XNYZ': did you mean"),
        (["--calendar", "XNYS"], "expected CALENDAR:SYMBOL[,SYMBOL...]"),
        (["--calendar", "XNYS:AAPL,aapl"], "invalid symbol(s) 'aapl'"),
        (
            ["--calendar", "XNYS:AAPL", "--calendar", "XLON:AAPL,VOD.L"],
            "symbol AAPL is on two calendars (XNYS and XLON)",
        ),
    ],
)
def test_cli_refuses_a_bad_calendar_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_forever_from_args(["--port", "0", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_serves_several_markets() -> None:
    command = ["fin-assets", "simulator", "--port", "0", "--now", "2026-01-18T12:00:00Z"]
    command += ["--calendar", "XNYS:AAPL,MSFT", "--calendar", "XLON:VOD.L"]
    # The context manager closes the pipes once the process is gone.
    with start_cli(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "simulator did not announce itself"
            url = proc.stdout.readline().strip().removeprefix("simulator listening on ")
            with httpx.Client(base_url=url, trust_env=False, timeout=5.0) as client:
                latest = {
                    symbol: client.get("/v1/latest", params={"symbol": symbol}).json()["t"]
                    for symbol in ("AAPL", "MSFT", "VOD.L", "BTCUSD")
                }
        finally:
            stop_process(proc)
    assert latest == {
        "AAPL": "2026-01-16T20:59:00Z",
        "MSFT": "2026-01-16T20:59:00Z",
        "VOD.L": "2026-01-16T16:29:00Z",
        "BTCUSD": "2026-01-18T11:59:00Z",
    }
