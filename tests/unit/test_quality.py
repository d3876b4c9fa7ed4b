"""Each data-quality check on hand-built frames: exact counts, symbols and timestamps."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from resources.quality import (
    check_finite,
    check_frozen,
    check_jumps,
    check_missing_minutes,
    check_ohlc,
    check_positive,
    check_unique,
    merge_outcomes,
)
from resources.simulator.data import generate_bars

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SYMBOLS = ("AAPL", "MSFT")


def at(minute: int, start: datetime = T0) -> datetime:
    return start + timedelta(minutes=minute)


def bars(symbols: tuple[str, ...] = SYMBOLS, start: datetime = T0, minutes: int = 60):
    """Simulator bars (a clean random walk) in the canonical column layout."""
    rows = [
        {
            "symbol": symbol,
            "ts": datetime.fromisoformat(b["t"].replace("Z", "+00:00")),
            "open": b["o"],
            "high": b["h"],
            "low": b["l"],
            "close": b["c"],
            "volume": b["v"],
            "trades": b["n"],
            "vwap": b["vw"],
        }
        for symbol in symbols
        for b in generate_bars(symbol, start, start + timedelta(minutes=minutes))
    ]
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


PRICES = ("open", "high", "low", "close")


def one_bar(symbol: str, ts: datetime) -> pl.Expr:
    return (pl.col("symbol") == symbol) & (pl.col("ts") == ts)


def edit(frame: pl.DataFrame, symbol: str, ts: datetime, **values: float) -> pl.DataFrame:
    """``frame`` with the given columns of one bar replaced."""
    return frame.with_columns(
        pl.when(one_bar(symbol, ts)).then(pl.lit(v, pl.Float64)).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


def bar(frame: pl.DataFrame, symbol: str, ts: datetime) -> dict:
    return frame.filter(one_bar(symbol, ts)).row(0, named=True)


def scale_prices(frame: pl.DataFrame, where: pl.Expr, factor: float) -> pl.DataFrame:
    """``frame`` with open, high, low and close of the rows ``where`` multiplied by ``factor``."""
    return frame.with_columns(
        pl.when(where).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c) for c in PRICES
    )


def copy_bar(frame: pl.DataFrame, source: dict, where: pl.Expr) -> pl.DataFrame:
    """The rows ``where`` become copies of the ``source`` bar's prices and volume."""
    return frame.with_columns(
        pl.when(where).then(pl.lit(source[c])).otherwise(pl.col(c)).alias(c)
        for c in (*PRICES, "volume")
    )


def offences(outcome) -> list[tuple[str, datetime | date]]:
    return [(o.symbol, o.at) for o in outcome.examples]


CLEAN = bars()


@pytest.mark.parametrize(
    "check",
    [
        check_ohlc,
        check_unique,
        check_positive,
        check_jumps,
        check_frozen,
        lambda f: check_missing_minutes(f, start=T0, end=T0 + HOUR, symbols=SYMBOLS),
    ],
)
def test_clean_simulator_hour_passes_every_check(check) -> None:
    outcome = check(CLEAN)
    assert outcome.passed, outcome.summary
    assert outcome.failing_rows == 0
    assert outcome.by_symbol == {}
    assert outcome.examples == ()


def test_ohlc_names_each_bar_that_breaks_an_invariant() -> None:
    frame = edit(CLEAN, "AAPL", at(14), high=bar(CLEAN, "AAPL", at(14))["low"] - 1)
    frame = edit(frame, "MSFT", at(30), low=bar(CLEAN, "MSFT", at(30))["high"] + 1)
    frame = edit(frame, "AAPL", at(45), volume=math.nan)
    outcome = check_ohlc(frame)
    assert not outcome.passed
    assert outcome.failing_rows == 3
    assert outcome.rows_checked == 120
    assert outcome.by_symbol == {"AAPL": 2, "MSFT": 1}
    assert offences(outcome) == [("AAPL", at(14)), ("MSFT", at(30)), ("AAPL", at(45))]
    details = [o.detail for o in outcome.examples]
    assert details[0].startswith("high below open/close (open=")
    assert details[1].startswith("low above open/close")
    assert details[2].startswith("missing or non-finite value")
    assert outcome.first_at == at(14) and outcome.last_at == at(45)
    assert "3 row(s) break OHLC invariants" in outcome.summary
    assert "AAPL 2, MSFT 1" in outcome.summary
    assert "AAPL at 2026-01-05T03:14Z" in outcome.summary


def test_ohlc_flags_null_prices() -> None:
    frame = CLEAN.with_columns(
        pl.when(one_bar("MSFT", at(7))).then(None).otherwise(pl.col("close")).alias("close")
    )
    outcome = check_ohlc(frame)
    assert offences(outcome) == [("MSFT", at(7))]
    assert "close=null" in outcome.examples[0].detail


def test_unique_counts_surplus_copies_per_symbol() -> None:
    aapl = CLEAN.filter(one_bar("AAPL", at(5)))
    msft = CLEAN.filter(one_bar("MSFT", at(7)))
    frame = pl.concat([CLEAN, aapl, aapl, msft])
    outcome = check_unique(frame)
    assert outcome.check == "unique_symbol_ts"
    assert not outcome.passed
    assert outcome.failing_rows == 3  # two extra AAPL copies, one extra MSFT copy
    assert outcome.by_symbol == {"AAPL": 2, "MSFT": 1}
    assert offences(outcome) == [("AAPL", at(5)), ("MSFT", at(7))]
    assert [o.detail for o in outcome.examples] == ["3 rows with this key", "2 rows with this key"]


def test_positive_names_the_offending_fields() -> None:
    frame = edit(CLEAN, "AAPL", at(10), close=0.0, low=0.0)
    frame = edit(frame, "MSFT", at(20), volume=-5.0)
    frame = edit(frame, "MSFT", at(21), vwap=-1.0)
    outcome = check_positive(frame)
    assert not outcome.passed
    assert outcome.failing_rows == 3
    assert outcome.by_symbol == {"MSFT": 2, "AAPL": 1}
    assert offences(outcome) == [("AAPL", at(10)), ("MSFT", at(20)), ("MSFT", at(21))]
    assert [o.detail for o in outcome.examples] == [
        "low=0.0, close=0.0",
        "volume=-5.0",
        "vwap=-1.0",
    ]


def test_missing_minutes_reports_gaps_and_symbols_without_any_bar() -> None:
    gap = pl.col("ts").is_between(at(5), at(9)) | (pl.col("ts") == at(30))
    frame = CLEAN.filter(~((pl.col("symbol") == "AAPL") & gap))
    outcome = check_missing_minutes(frame, start=T0, end=T0 + HOUR, symbols=(*SYMBOLS, "GOOG"))
    assert not outcome.passed
    assert outcome.failing_rows == 66
    assert outcome.by_symbol == {"GOOG": 60, "AAPL": 6}
    assert outcome.rows_checked == 180
    assert [(o.symbol, o.at, o.detail) for o in outcome.examples] == [
        ("GOOG", at(0), "60 minute(s) without a bar, through 2026-01-05T03:59Z"),
        ("AAPL", at(5), "5 minute(s) without a bar, through 2026-01-05T03:09Z"),
        ("AAPL", at(30), "1 minute(s) without a bar, through 2026-01-05T03:30Z"),
    ]


def test_missing_minutes_tolerance_and_bars_outside_the_window() -> None:
    frame = CLEAN.filter(~((pl.col("symbol") == "MSFT") & (pl.col("ts") == at(59))))
    outcome = check_missing_minutes(
        frame, start=T0, end=T0 + HOUR, symbols=SYMBOLS, max_missing_per_symbol=1
    )
    assert outcome.passed  # within tolerance, still counted
    assert outcome.by_symbol == {"MSFT": 1}
    # Bars of a neighbouring hour neither fill nor count against this one.
    shifted = check_missing_minutes(CLEAN, start=T0 + HOUR, end=T0 + 2 * HOUR, symbols=SYMBOLS)
    assert shifted.by_symbol == {"AAPL": 60, "MSFT": 60}


def test_jump_beyond_k_robust_deviations_is_flagged_once_for_a_level_shift() -> None:
    frame = scale_prices(CLEAN, (pl.col("symbol") == "MSFT") & (pl.col("ts") >= at(30)), 1.05)
    outcome = check_jumps(frame)
    assert not outcome.passed
    assert outcome.failing_rows == 1
    assert outcome.by_symbol == {"MSFT": 1}
    assert offences(outcome) == [("MSFT", at(30))]
    assert "robust deviations (k=8.0)" in outcome.examples[0].detail
    # A lower bar finds more; a higher one forgives it.
    assert check_jumps(frame, k=1e6).passed


def test_a_spike_flags_the_move_out_and_the_move_back() -> None:
    close = bar(CLEAN, "AAPL", at(20))["close"]
    frame = edit(CLEAN, "AAPL", at(20), close=close * 1.1, high=close * 1.1)
    outcome = check_jumps(frame)
    assert offences(outcome) == [("AAPL", at(20)), ("AAPL", at(21))]


def test_jump_at_the_hour_boundary_needs_the_previous_hour_as_context() -> None:
    previous = bars(start=T0 - HOUR)
    now = scale_prices(CLEAN, pl.col("symbol") == "AAPL", 0.95)
    assert check_jumps(now).passed  # within the hour the drop is invisible
    outcome = check_jumps(pl.concat([previous, now]), since=T0)
    assert offences(outcome) == [("AAPL", at(0))]
    assert outcome.rows_checked == 120  # returns ending in the hour, the boundary one included


def test_jumps_are_not_judged_on_too_few_returns_or_a_zero_mad() -> None:
    short = CLEAN.filter(pl.col("ts") < at(10))
    shifted = edit(short, "AAPL", at(5), close=bar(short, "AAPL", at(5))["close"] * 2)
    assert check_jumps(shifted).passed
    assert not check_jumps(shifted, min_returns=5).passed
    flat = CLEAN.with_columns(pl.lit(100.0).alias("close"))
    assert check_jumps(edit(flat, "AAPL", at(30), close=200.0)).passed


def test_returns_over_a_gap_are_scaled_to_one_minute() -> None:
    # 40 quiet minutes, then a move that is ordinary for 40 minutes but not for one.
    frame = CLEAN.filter(~((pl.col("symbol") == "AAPL") & pl.col("ts").is_between(at(11), at(50))))
    before = bar(CLEAN, "AAPL", at(10))["close"]
    moved = edit(frame, "AAPL", at(51), close=before * 1.004, high=before * 1.004)
    assert check_jumps(moved).passed
    one_minute = edit(CLEAN, "AAPL", at(11), close=before * 1.004, high=before * 1.004)
    assert not check_jumps(one_minute).passed


def replay(frame: pl.DataFrame, symbol: str, first: int, last: int) -> pl.DataFrame:
    """Bars first+1..last of ``symbol`` become copies of bar ``first`` (a stale feed)."""
    hit = (pl.col("symbol") == symbol) & pl.col("ts").is_between(at(first + 1), at(last))
    return copy_bar(frame, bar(frame, symbol, at(first)), hit)


def test_frozen_run_of_repeated_bars_is_one_example_counting_the_repeats() -> None:
    outcome = check_frozen(replay(CLEAN, "AAPL", 10, 29))
    assert not outcome.passed
    assert outcome.failing_rows == 19
    assert outcome.by_symbol == {"AAPL": 19}
    assert [(o.symbol, o.at, o.detail) for o in outcome.examples] == [
        (
            "AAPL",
            at(11),
            "20 identical bars from 2026-01-05T03:10Z through 2026-01-05T03:29Z "
            f"(close {bar(CLEAN, 'AAPL', at(10))['close']}, "
            f"volume {bar(CLEAN, 'AAPL', at(10))['volume']})",
        )
    ]


def test_frozen_threshold_is_fifteen_identical_bars() -> None:
    assert check_frozen(replay(CLEAN, "MSFT", 10, 23)).passed  # 14 identical bars
    outcome = check_frozen(replay(CLEAN, "MSFT", 10, 24))  # 15
    assert outcome.by_symbol == {"MSFT": 14}


def test_flat_zero_volume_fills_count_as_frozen() -> None:
    close = bar(CLEAN, "MSFT", at(39))["close"]
    hit = (pl.col("symbol") == "MSFT") & pl.col("ts").is_between(at(40), at(54))
    filled = CLEAN.with_columns(
        *(pl.when(hit).then(pl.lit(close)).otherwise(pl.col(c)).alias(c) for c in PRICES),
        pl.when(hit).then(0.0).otherwise(pl.col("volume")).alias("volume"),
    )
    outcome = check_frozen(filled)
    assert outcome.by_symbol == {"MSFT": 15}
    assert offences(outcome) == [("MSFT", at(40))]


def test_identical_closes_with_changing_volume_are_not_frozen() -> None:
    """An illiquid symbol sitting on one price while still trading."""
    quiet = CLEAN.with_columns(
        pl.when(pl.col("symbol") == "AAPL").then(100.0).otherwise(pl.col(c)).alias(c)
        for c in PRICES
    )
    assert check_frozen(quiet).passed


def test_frozen_run_straddling_the_hour_counts_only_this_hours_repeats() -> None:
    previous = bars(start=T0 - HOUR)
    last = bar(previous, "AAPL", at(50, T0 - HOUR))
    hit = ((pl.col("symbol") == "AAPL") & (pl.col("ts") > last["ts"])) & (pl.col("ts") < at(10))
    both = copy_bar(pl.concat([previous, CLEAN]), last, hit)
    outcome = check_frozen(both, since=T0)
    assert outcome.by_symbol == {"AAPL": 10}  # 03:00..03:09; 02:51..02:59 were last hour's
    assert offences(outcome) == [("AAPL", at(0))]
    assert "20 identical bars from 2026-01-05T02:50Z" in outcome.examples[0].detail
    assert check_frozen(CLEAN.filter(pl.col("ts") >= T0)).passed


DAY = date(2026, 1, 5)


def daily_rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": ["AAPL", "MSFT", "GOOG"],
            "date": [DAY] * 3,
            "open": [100.0, 200.0, 300.0],
            "high": [110.0, 210.0, 310.0],
            "low": [90.0, 190.0, 290.0],
            "close": [105.0, 205.0, 305.0],
            "volume": [1e6, 2e6, 3e6],
            "vwap": [101.0, 201.0, 301.0],
        }
    )


def test_daily_tables_use_the_same_checks_keyed_by_date() -> None:
    daily = daily_rows()
    assert check_ohlc(daily, time_col="date").passed
    assert check_unique(daily, keys=("symbol", "date")).passed
    broken = pl.concat([daily, daily.head(1)]).with_columns(
        pl.when(pl.col("symbol") == "MSFT").then(-1.0).otherwise(pl.col("low")).alias("low"),
        pl.when(pl.col("symbol") == "GOOG").then(320.0).otherwise(pl.col("open")).alias("open"),
    )
    unique = check_unique(broken, keys=("symbol", "date"))
    assert unique.check == "unique_symbol_date"
    assert (unique.failing_rows, offences(unique)) == (1, [("AAPL", DAY)])
    positive = check_positive(broken, time_col="date")
    assert (positive.by_symbol, positive.examples[0].detail) == ({"MSFT": 1}, "low=-1.0")
    ohlc = check_ohlc(broken, time_col="date")
    assert offences(ohlc) == [("GOOG", DAY)]
    assert ohlc.examples[0].detail.startswith("high below open/close")
    assert "first GOOG at 2026-01-05" in ohlc.summary


def test_finite_flags_nan_inf_null_and_negative_volatility() -> None:
    returns = pl.DataFrame(
        {
            "symbol": ["AAPL", "AMZN", "GOOG", "MSFT", "NVDA"],
            "date": [DAY] * 5,
            "return_oc": [0.01, math.nan, 0.0, 0.02, 0.03],
            "log_return_oc": [0.01, 0.0, -math.inf, 0.02, 0.03],
            "realized_vol": [0.1, 0.1, 0.1, None, -0.2],
        }
    )
    outcome = check_finite(
        returns,
        columns=("return_oc", "log_return_oc", "realized_vol"),
        non_negative=("realized_vol",),
    )
    assert not outcome.passed
    assert outcome.failing_rows == 4
    assert [(o.symbol, o.detail) for o in outcome.examples] == [
        ("AMZN", "return_oc=NaN"),
        ("GOOG", "log_return_oc=-inf"),
        ("MSFT", "realized_vol=null"),
        ("NVDA", "realized_vol=-0.2 < 0"),
    ]


def test_examples_are_capped_and_ordered_by_time() -> None:
    frame = CLEAN.with_columns(pl.lit(-1.0).alias("volume"))
    outcome = check_positive(frame, max_examples=3)
    assert outcome.failing_rows == 120
    assert outcome.by_symbol == {"AAPL": 60, "MSFT": 60}
    assert offences(outcome) == [("AAPL", at(0)), ("MSFT", at(0)), ("AAPL", at(1))]


def _two_sessions(jump: float) -> pl.DataFrame:
    """60 minutes of a gently moving close on 2024-06-07, then 60 on 2024-06-10 starting at
    the last close times ``jump`` (a split's or a bad print's)."""
    import math
    from datetime import UTC, datetime, timedelta

    rows = []
    price = 1200.0
    for day, first in (
        (datetime(2024, 6, 7, 19, tzinfo=UTC), 1.0),
        (datetime(2024, 6, 10, 13, 30, tzinfo=UTC), jump),
    ):
        price *= first
        for minute in range(60):
            price *= 1 + 0.0004 * math.sin(minute * 1.7) + 0.0002 * math.cos(minute * 0.3)
            rows.append({"symbol": "NVDA", "ts": day + timedelta(minutes=minute), "close": price})
    return pl.DataFrame(rows)


def test_a_jump_that_a_split_explains_is_not_one_and_an_unexplained_one_still_is() -> None:
    from datetime import date

    from resources.quality import check_jumps

    splits = pl.DataFrame({"symbol": ["NVDA"], "ex_date": [date(2024, 6, 10)], "ratio": [10.0]})
    # NVIDIA's 10-for-1 on 2024-06-10: the unadjusted close falls to a tenth.
    assert not check_jumps(_two_sessions(0.1)).passed
    explained = check_jumps(_two_sessions(0.1), splits=splits)
    assert explained.passed, explained.summary
    # A 50 % jump that no split explains fails, splits known or not.
    unexplained = check_jumps(_two_sessions(1.5), splits=splits.with_columns(ratio=pl.lit(1.0)))
    assert not unexplained.passed and "NVDA" in unexplained.summary
    # The split explains a tenth, not a tenth and then a half.
    assert not check_jumps(_two_sessions(0.1 * 1.5), splits=splits).passed


def test_the_allowance_per_hour_holds_over_a_window_of_several_hours() -> None:
    """A check over a run of hours (the interval tables' gap check) allows each symbol its
    quiet minutes per hour, not once over the whole window."""
    two_hours = bars(minutes=120)
    quiet = (pl.col("symbol") == "MSFT") & pl.col("ts").is_in([at(10), at(70)])
    frame = two_hours.filter(~quiet)
    window = {"start": T0, "end": T0 + 2 * HOUR, "symbols": SYMBOLS, "max_missing_per_symbol": 1}
    assert not check_missing_minutes(frame, **window).passed  # 2 > 1 over the window
    per_hour = check_missing_minutes(frame, **window, per=HOUR)
    assert per_hour.passed and per_hour.by_symbol == {"MSFT": 2}  # 1 per hour, still reported
    twice = two_hours.filter(~((pl.col("symbol") == "MSFT") & pl.col("ts").is_in([at(10), at(11)])))
    assert not check_missing_minutes(twice, **window, per=HOUR).passed


def test_outcomes_of_chunks_merge_into_one_of_the_whole_run() -> None:
    first, second = CLEAN, bars(start=T0 + HOUR)
    broken = edit(second, "MSFT", at(70), high=1.0)
    broken = edit(broken, "AAPL", at(65), low=1e6)
    outcomes = [check_ohlc(first), check_ohlc(broken)]
    merged = merge_outcomes(outcomes)
    assert not merged.passed
    assert merged.rows_checked == first.height + broken.height
    assert merged.failing_rows == 2 and merged.by_symbol == {"AAPL": 1, "MSFT": 1}
    assert offences(merged) == [("AAPL", at(65)), ("MSFT", at(70))]
    assert (merged.first_at, merged.last_at) == (at(65), at(70))
    assert merged.summary.startswith("2 row(s) break OHLC invariants in 2 symbol(s)")
    clean = merge_outcomes([check_ohlc(first), check_ohlc(second)])
    assert clean.passed and clean.failing_rows == 0
    assert clean.summary == f"no row(s) break OHLC invariants in {2 * first.height} row(s) checked"
    assert merge_outcomes(outcomes[:1]) == outcomes[0]
