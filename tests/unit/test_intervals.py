"""Interval bars (resources/tables/intervals.py): hand-built cases, then row by row against the
providers' own interval bars, served by the emulators from the same minutes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pytest

from resources.calendars import load_sessions
from resources.providers.binance import BinanceAdapter
from resources.providers.polygon import PolygonAdapter
from resources.storage.parquet import ParquetWarehouse
from resources.tables.intervals import INTERVALS, IntervalTables, aggregate_bars
from resources.tables.results import TableResult
from resources.tables.schemas import INTERVAL_BARS_SCHEMA
from resources.windows import PartitionWindow
from tests.emulators.binance import BinanceEmulator
from tests.emulators.polygon import PolygonEmulator

KEY = "pk_test_intervals"
AUTH = {"Authorization": f"Bearer {KEY}"}
NOW = datetime(2026, 6, 1, tzinfo=UTC)
NEW_YORK = "America/New_York"
NEW_YORK_TZ = ZoneInfo(NEW_YORK)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def minutes(
    start: datetime, count: int, *, skip: tuple[int, ...] = (), symbol: str = "A", **cols: Any
) -> pl.DataFrame:
    """``count`` canonical 1-minute bars from ``start`` (minus the ``skip`` offsets): prices
    100 + i, volume 10, 2 trades, vwap = close unless given."""
    rows = []
    for i in range(count):
        if i in skip:
            continue
        price = 100.0 + i
        rows.append(
            {
                "symbol": symbol,
                "ts": start + timedelta(minutes=i),
                "open": price,
                "high": price + 0.5,
                "low": price - 0.5,
                "close": price + 0.25,
                "volume": 10.0,
                "trades": 2,
                "vwap": price + 0.25,
                "provider": "test",
                "ingested_at": NOW,
            }
            | {k: v[i] if isinstance(v, list) else v for k, v in cols.items()}
        )
    schema = {
        "symbol": pl.String,
        "ts": pl.Datetime("us", "UTC"),
        "trades": pl.Int64,
        "vwap": pl.Float64,
        "ingested_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame(rows, schema_overrides=schema)


# --------------------------------------------------------------------------------------
# Hand-built
# --------------------------------------------------------------------------------------


def test_a_quiet_minute_leaves_the_bar_to_the_minutes_that_traded() -> None:
    out = aggregate_bars(minutes(utc(2026, 1, 16, 14, 30), 5, skip=(0, 4)), minutes=5)
    assert out.schema == INTERVAL_BARS_SCHEMA
    row = out.row(0, named=True)
    assert row["ts"] == utc(2026, 1, 16, 14, 30)
    assert (row["open"], row["close"]) == (101.0, 103.25)  # minutes 1 and 3, not 0 and 4
    assert (row["high"], row["low"]) == (103.5, 100.5)
    assert (row["volume"], row["trades"], row["bar_count"]) == (30.0, 6, 3)


def test_an_interval_without_trades_has_no_bar() -> None:
    out = aggregate_bars(minutes(utc(2026, 1, 16, 14, 30), 15, skip=tuple(range(5, 10))), minutes=5)
    assert out["ts"].to_list() == [utc(2026, 1, 16, 14, 30), utc(2026, 1, 16, 14, 40)]
    assert out["bar_count"].to_list() == [5, 5]


def test_vwap_is_weighted_by_volume_and_falls_back_to_the_typical_price() -> None:
    bars = minutes(
        utc(2026, 1, 16, 0, 0),
        3,
        volume=[1.0, 3.0, 6.0],
        vwap=[10.0, 20.0, None],  # the third: (102.5 + 101.5 + 102.25) / 3
        trades=[1, None, 1],
    )
    row = aggregate_bars(bars, minutes=5).row(0, named=True)
    typical = (102.5 + 101.5 + 102.25) / 3
    assert row["vwap"] == pytest.approx((10.0 * 1 + 20.0 * 3 + typical * 6) / 10, rel=1e-12)
    assert row["trades"] is None  # one minute without a count: the sum would be an undercount
    zero = aggregate_bars(minutes(utc(2026, 1, 16), 2, volume=0.0), minutes=5)
    assert zero["vwap"].to_list() == [None] and zero["volume"].to_list() == [0.0]


def test_without_sessions_windows_align_to_utc_multiples_and_symbols_stay_apart() -> None:
    bars = pl.concat(
        [minutes(utc(2026, 1, 15, 23, 58), 10), minutes(utc(2026, 1, 16, 0, 1), 2, symbol="B")]
    )
    out = aggregate_bars(bars.lazy(), minutes=5)
    assert out.select("symbol", "ts", "bar_count").rows() == [
        ("A", utc(2026, 1, 15, 23, 55), 2),
        ("A", utc(2026, 1, 16, 0, 0), 5),
        ("A", utc(2026, 1, 16, 0, 5), 3),
        ("B", utc(2026, 1, 16, 0, 0), 2),
    ]
    hourly = aggregate_bars(bars, minutes=INTERVALS["1h"])
    assert hourly.filter(symbol="A")["ts"].to_list() == [utc(2026, 1, 15, 23), utc(2026, 1, 16)]
    assert aggregate_bars(bars.head(0), minutes=5).schema == INTERVAL_BARS_SCHEMA


def test_clock_alignment_follows_the_local_clock_across_dst_and_fractional_offsets() -> None:
    # New York jumps from 02:00 EST to 03:00 EDT on 2026-03-08 (07:00 UTC): the 4-hour window
    # of local 00:00 (05:00 UTC) holds three hours, the next starts at local 04:00 = 08:00 UTC.
    bars = minutes(utc(2026, 3, 8, 5), 240)
    out = aggregate_bars(bars, minutes=240, tz=NEW_YORK)
    assert out.select("ts", "bar_count").rows() == [
        (utc(2026, 3, 8, 5), 180),
        (utc(2026, 3, 8, 8), 60),
    ]
    # Back to EST on 2026-11-01 at 06:00 UTC: local 01:00-02:00 happens twice, an hour bar
    # each time; the 4-hour window of local 00:00 holds five hours.
    autumn = minutes(utc(2026, 11, 1, 4), 300)
    hours = aggregate_bars(autumn, minutes=60, tz=NEW_YORK)
    assert hours["ts"].to_list() == [utc(2026, 11, 1, h) for h in range(4, 9)]
    assert aggregate_bars(autumn, minutes=240, tz=NEW_YORK).select("ts", "bar_count").rows() == [
        (utc(2026, 11, 1, 4), 300)
    ]
    # Kolkata is UTC+5:30: its clock hours start at half past the UTC hour.
    kolkata = aggregate_bars(minutes(utc(2026, 1, 16), 60), minutes=60, tz="Asia/Kolkata")
    assert kolkata.select("ts", "bar_count").rows() == [
        (utc(2026, 1, 15, 23, 30), 30),
        (utc(2026, 1, 16, 0, 30), 30),
    ]


def test_sessions_cut_windows_and_minutes_outside_them_are_left_out() -> None:
    # A break inside the 10:00 hour: 10:00-10:45 and 10:50-12:00; 10:45-10:49 is closed.
    sessions = [
        (utc(2026, 1, 16, 10, 50), utc(2026, 1, 16, 12)),
        (utc(2026, 1, 16, 10), utc(2026, 1, 16, 10, 45)),
    ]
    bars = minutes(utc(2026, 1, 16, 9, 58), 125)  # 09:58 .. 12:02
    out = aggregate_bars(bars, minutes=60, sessions=sessions)
    assert out.select("ts", "bar_count").rows() == [
        (utc(2026, 1, 16, 10), 45),  # 09:58-09:59 before the open, 10:45-10:49 closed: out
        (utc(2026, 1, 16, 10, 50), 10),  # the same hour's part after the break: its open
        (utc(2026, 1, 16, 11), 60),  # 12:00 on: after the close
    ]
    assert out["open"][1] == 100.0 + 52  # the 10:50 minute
    by_open = aggregate_bars(bars, minutes=60, sessions=sessions, align="session")
    assert by_open.select("ts", "bar_count").rows() == [
        (utc(2026, 1, 16, 10), 45),
        (utc(2026, 1, 16, 10, 50), 60),
        (utc(2026, 1, 16, 11, 50), 10),  # cut at the close
    ]


def test_a_clock_window_before_the_open_keeps_its_label_and_an_early_close_ends_the_day() -> None:
    # 2025-11-28: XNYS opens 9:30 ET (14:30 UTC), closes early at 13:00 ET (18:00 UTC).
    session = [(utc(2025, 11, 28, 14, 30), utc(2025, 11, 28, 18))]
    bars = minutes(utc(2025, 11, 28, 14, 30), 240)  # until 18:30: half an hour after the close
    out = aggregate_bars(bars, minutes=60, sessions=session, tz=NEW_YORK)
    assert out.select("ts", "bar_count").rows() == [
        (utc(2025, 11, 28, 14), 30),  # Massive's 9:00 ET bar holds 9:30-9:59
        (utc(2025, 11, 28, 15), 60),
        (utc(2025, 11, 28, 16), 60),
        (utc(2025, 11, 28, 17), 60),  # ends at the close
    ]
    by_open = aggregate_bars(bars, minutes=60, sessions=session, align="session")
    assert by_open["ts"][-1] == utc(2025, 11, 28, 17, 30) and by_open["bar_count"][-1] == 30


def test_bad_arguments_are_refused() -> None:
    bars = minutes(utc(2026, 1, 16), 2)
    with pytest.raises(ValueError, match="minutes must be >= 1"):
        aggregate_bars(bars, minutes=0)
    with pytest.raises(ValueError, match="needs the sessions"):
        aggregate_bars(bars, minutes=5, align="session")
    with pytest.raises(ValueError, match="align must be"):
        aggregate_bars(bars, minutes=5, align="open")  # type: ignore[arg-type]


def test_a_batch_of_partitions_writes_what_each_partition_alone_gives(tmp_path: Path) -> None:
    """IntervalTables.write aggregates a day of hours at once and cuts the result by hour: the
    same partitions, row for row, as aggregating each hour alone, an hour without bars
    included (an empty partition, still written). Friday 2026-11-27, the day after
    Thanksgiving: the session is 14:30-18:00 UTC (9:30-13:00 ET)."""
    sessions = load_sessions(
        "XNYS", first=date(2026, 11, 26), last=date(2026, 11, 30), cache_dir=None
    )
    hours = [utc(2026, 11, 27, h) for h in range(13, 20)]
    frames = {
        hour: pl.concat(
            [
                minutes(hour, 60, skip=(7, 8, 9) if hour.hour == 15 else (), symbol=s)
                for s in ("A", "B")
            ]
        )
        for hour in hours
        if hour.hour != 16  # no bar in the 16:00 partition (a halt, say)
    }
    batch = [
        (
            PartitionWindow(f"{hour:%Y-%m-%d-%H}:00", hour, hour + timedelta(hours=1), ()),
            frames.get(hour, frames[hours[0]].clear()),
        )
        for hour in hours
    ]
    tables = IntervalTables({"t_5m": 5, "t_1h": 60}, sessions=sessions.intervals)
    wh = ParquetWarehouse(tmp_path)
    results: dict[str, TableResult] = {}
    tables.write(wh, batch, results)

    for table, step in (("t_5m", 5), ("t_1h", 60)):
        written = 0
        for window, bars in batch:
            alone = aggregate_bars(
                bars, minutes=step, sessions=sessions.intervals(window.start, window.end)
            )
            got = wh.read_partition(table, window.key)
            assert got is not None
            assert got.equals(alone), (table, window.key)
            written += got.height
        assert results[table].rows == written and results[table].symbols == {"A", "B"}
    # 14:30-18:00 UTC: 42 windows of 5 minutes per symbol, less the empty 16:00 hour's 12; hour
    # bars at 14:00 (holding 14:30-14:59), 15:00 and 17:00 (ending at the early close).
    assert results["t_5m"].rows == 2 * (42 - 12)
    assert results["t_1h"].rows == 2 * 3
    for hour in (13, 16, 18, 19):  # before the open, no bars, after the close
        assert wh.read_partition("t_1h", f"2026-11-27-{hour}:00").is_empty()  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------
# Against the providers' own bars
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def massive() -> Iterator[httpx.Client]:
    emu = PolygonEmulator(
        api_keys={KEY},
        calls_per_window=None,
        calendars={"AAPL": "XNYS"},
        roll_ups=True,
        now=NOW,
    )
    with emu, httpx.Client(base_url=emu.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def binance() -> Iterator[httpx.Client]:
    emu = BinanceEmulator(now=NOW, intervals=("5m", "15m", "1h"), weight_limit=1_000_000)
    with emu, httpx.Client(base_url=emu.url, timeout=10) as client:
        yield client


def massive_pages(client: httpx.Client, day: date, multiplier: int, timespan: str) -> list[bytes]:
    """Every page of AAPL's unadjusted aggregates over the UTC day ``day``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    url: str | None = (
        f"/v2/aggs/ticker/AAPL/range/{multiplier}/{timespan}/{epoch_ms(start)}/{epoch_ms(end) - 1}"
    )
    params: dict[str, str] | None = {"adjusted": "false", "limit": "50000"}
    pages = []
    while url is not None:
        resp = client.get(url, params=params, headers=AUTH).raise_for_status()
        pages.append(resp.content)
        # next_url carries the cursor in its query: sent as it is (params would replace it).
        url, params = resp.json().get("next_url"), None
    return pages


def massive_bars(pages: list[bytes]) -> pl.DataFrame:
    """The provider's bars as they come: t, o, h, l, c, v, n, vw."""
    rows = [row for page in pages for row in json.loads(page).get("results", [])]
    return pl.DataFrame(rows).with_columns(
        pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC").alias("ts")
    )


def assert_same_bars(
    ours: pl.DataFrame, theirs: pl.DataFrame, *, vwap_abs: float, volume_rel: float
) -> None:
    assert ours["ts"].to_list() == theirs["ts"].to_list()
    for mine, provider in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c")):
        assert ours[mine].to_list() == theirs[provider].cast(pl.Float64).to_list(), mine
    assert ours["trades"].to_list() == theirs["n"].to_list()
    for mine, provider in zip(ours["volume"], theirs["v"].cast(pl.Float64), strict=True):
        assert mine == pytest.approx(provider, rel=volume_rel, abs=0)
    for mine, provider in zip(ours["vwap"], theirs["vw"].cast(pl.Float64), strict=True):
        assert mine == pytest.approx(provider, rel=1e-9, abs=vwap_abs)


@pytest.mark.parametrize(
    ("day", "first_hour_utc", "last_bar_et"),
    [
        (date(2026, 1, 16), 14, (15, 55)),  # a regular day: 9:30-16:00 EST
        (date(2025, 11, 28), 14, (12, 55)),  # the day after Thanksgiving: closes at 13:00 EST
        (date(2026, 3, 9), 13, (15, 55)),  # the first session on EDT: 9:30 ET = 13:30 UTC
    ],
)
@pytest.mark.parametrize("interval", ["5m", "1h"])
def test_massive_interval_bars_match_ours(
    massive: httpx.Client,
    day: date,
    first_hour_utc: int,
    last_bar_et: tuple[int, int],
    interval: str,
) -> None:
    size = INTERVALS[interval]
    multiplier, timespan = (1, "hour") if size == 60 else (size, "minute")
    adapter = PolygonAdapter()
    minute_pages = massive_pages(massive, day, 1, "minute")
    ones = pl.concat([adapter.parse_bars(page, symbol="AAPL").frame for page in minute_pages])
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    # One load for every day compared (a one-day range is too short for exchange_calendars).
    xnys = load_sessions("XNYS", first=date(2025, 11, 1), last=date(2026, 3, 31), cache_dir=None)
    sessions = xnys.intervals(start, start + timedelta(days=1))
    ours = aggregate_bars(ones, minutes=size, sessions=sessions, tz=NEW_YORK)

    rolled = massive_pages(massive, day, multiplier, timespan)
    theirs = massive_bars(rolled)
    # Massive rounds vw to 4 decimals (minute and interval bars alike); ours is the exact
    # volume-weighted mean of the served minute vws, so the two differ by that rounding only.
    assert_same_bars(ours, theirs, vwap_abs=0.5e-4 + 1e-9, volume_rel=0)
    assert int(ours["bar_count"].sum()) == sum(json.loads(page)["queryCount"] for page in rolled)
    # The provider's labels: the 9:00 ET hour bar holds 9:30-9:59; an early close ends the day.
    first = ours["ts"][0]
    assert (first.hour, first.minute) == (first_hour_utc, 0 if size == 60 else 30)
    last_et = ours["ts"][-1].astimezone(NEW_YORK_TZ)
    expected_last = last_bar_et if size == 5 else (last_bar_et[0], 0)
    assert (last_et.hour, last_et.minute) == expected_last


@pytest.mark.parametrize("interval", ["5m", "1h"])
def test_binance_klines_match_ours_over_a_utc_day(binance: httpx.Client, interval: str) -> None:
    start = utc(2026, 1, 16)
    end = start + timedelta(days=1)

    def klines(name: str) -> list[bytes]:
        pages, since, stop = [], epoch_ms(start), epoch_ms(end) - 1
        while True:
            params = {
                "symbol": "BTCUSDT",
                "interval": name,
                "startTime": since,
                "endTime": stop,
                "limit": 1000,
            }
            resp = binance.get("/api/v3/klines", params=params).raise_for_status()
            rows = resp.json()
            if not rows:
                return pages
            pages.append(resp.content)
            since = rows[-1][0] + 1

    adapter = BinanceAdapter()
    ones = pl.concat([adapter.parse_bars(page, symbol="BTCUSDT").frame for page in klines("1m")])
    assert ones.height == 1440
    ours = aggregate_bars(ones, minutes=INTERVALS[interval])
    theirs_rows = [row for page in klines(interval) for row in json.loads(page)]
    theirs = pl.DataFrame(
        {
            "ts": [datetime.fromtimestamp(r[0] / 1000, UTC) for r in theirs_rows],
            "o": [float(r[1]) for r in theirs_rows],
            "h": [float(r[2]) for r in theirs_rows],
            "l": [float(r[3]) for r in theirs_rows],
            "c": [float(r[4]) for r in theirs_rows],
            "v": [float(r[5]) for r in theirs_rows],
            "n": [int(r[8]) for r in theirs_rows],
            "vw": [float(r[7]) / float(r[5]) for r in theirs_rows],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    assert theirs.height == 24 * 60 // INTERVALS[interval]
    assert [r[6] - r[0] for r in theirs_rows] == [INTERVALS[interval] * 60_000 - 1] * theirs.height
    # Binance sums the minutes' 8-decimal volumes as decimals, we as float64: equal to the
    # last bits, not bit for bit. Its VWAP (quote / base volume) has no rounding of its own.
    assert_same_bars(ours, theirs, vwap_abs=0, volume_rel=1e-12)


def test_massive_roll_up_pages_end_at_whole_bars(massive: httpx.Client) -> None:
    # limit counts base minute bars: a page stops before the bar the limit would cut.
    day = date(2026, 1, 16)
    whole = json.loads(massive_pages(massive, day, 1, "hour")[0])["results"]
    start, end = epoch_ms(utc(2026, 1, 16)), epoch_ms(utc(2026, 1, 17))
    path = f"/v2/aggs/ticker/AAPL/range/1/hour/{start}/{end - 1}"
    params: dict[str, str] | None = {"adjusted": "false", "limit": "100"}
    paged, url, counts = [], path, []
    while url:
        body = massive.get(url, params=params, headers=AUTH).raise_for_status().json()
        paged += body["results"]
        counts.append(body["queryCount"])
        url, params = body.get("next_url"), None
    assert paged == whole
    assert all(count <= 100 for count in counts) and len(counts) > 1
