"""Split and dividend adjustment on hand-built frames whose every number checks on paper.

ACME trades ten days in June 2024 around a 10-for-1 split (ex Wed 06-05), a 0.50 USD dividend
(ex Mon 06-10) and a 1-for-5 reverse split (ex Wed 06-12); CALM, without actions, trades the
same days and must come out untouched. Unadjusted closes, and what they are on the basis of
06-14 (split factor 0.1 x 5 = 0.5 before 06-05, 5 until 06-11, 1 after)::

    date   06-03 06-04 06-05 06-06 06-07 06-10 06-11 06-12 06-13 06-14
    close   1000  1010   102   104   100   101   102   515   520   525
    split    500   505   510   520   500   505   510   515   520   525
"""

from __future__ import annotations

import math
import random
import re
from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest

from resources.errors import DataValidationError
from resources.tables.adjustment import (
    adjusted_daily_bars,
    adjustment_factors,
    splits_by_day,
    total_returns,
    validate_actions,
)
from resources.tables.schemas import (
    ADJUSTED_DAILY_SCHEMA,
    CORPORATE_ACTIONS_SCHEMA,
    DAILY_SCHEMA,
    FACTORS_SCHEMA,
    SPLIT_RATIOS_SCHEMA,
    TOTAL_RETURNS_SCHEMA,
)

WHERE = "source us_equities (provider simulator)"
AS_OF = date(2024, 6, 14)


def d(day: int) -> date:
    return date(2024, 6, day)


ACME_CLOSES = {
    d(3): 1000.0,
    d(4): 1010.0,
    d(5): 102.0,
    d(6): 104.0,
    d(7): 100.0,
    d(10): 101.0,
    d(11): 102.0,
    d(12): 515.0,
    d(13): 520.0,
    d(14): 525.0,
}
CALM_CLOSES = {day: 50.0 + i for i, day in enumerate(ACME_CLOSES)}


def daily(closes: dict[str, dict[date, float]]) -> pl.DataFrame:
    """Daily bars around each close: open 1 below, high 2 above, low 2 below, vwap at it."""
    rows = [
        {
            "symbol": symbol,
            "date": day,
            "open": close - 1,
            "high": close + 2,
            "low": close - 2,
            "close": close,
            "volume": 1000.0,
            "vwap": close,
            "trades": 10,
            "bar_count": 390,
        }
        for symbol, by_day in closes.items()
        for day, close in by_day.items()
    ]
    return pl.DataFrame(rows, schema=DAILY_SCHEMA)


def action(symbol: str, ex_date: date, kind: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CORPORATE_ACTIONS_SCHEMA)
    row.update(symbol=symbol, ex_date=ex_date, kind=kind, provider="simulator")
    row["provider_id"] = f"{kind}-{symbol}-{ex_date}"
    row.update(fields)
    return row


def split(symbol: str, ex_date: date, split_from: float, split_to: float) -> dict[str, Any]:
    return action(symbol, ex_date, "split", split_from=split_from, split_to=split_to)


def dividend(symbol: str, ex_date: date, cash: float, currency: str = "USD") -> dict[str, Any]:
    return action(symbol, ex_date, "dividend", cash_amount=cash, currency=currency)


def actions(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=CORPORATE_ACTIONS_SCHEMA)


ACME_ACTIONS = (
    split("ACME", d(5), 1, 10),
    dividend("ACME", d(10), 0.5),
    split("ACME", d(12), 5, 1),
)


def by_day(frame: pl.DataFrame, symbol: str, column: str) -> dict[date, float]:
    rows = frame.filter(pl.col("symbol") == symbol)
    return dict(zip(rows["date"].to_list(), rows[column].to_list(), strict=True))


@pytest.fixture
def bars() -> pl.DataFrame:
    return daily({"ACME": ACME_CLOSES, "CALM": CALM_CLOSES})


@pytest.fixture
def factors(bars: pl.DataFrame) -> pl.DataFrame:
    return adjustment_factors(bars, actions(*ACME_ACTIONS), as_of=AS_OF, where=WHERE)


# --- factors --------------------------------------------------------------------------------


def test_factors_per_day(factors: pl.DataFrame) -> None:
    assert factors.schema == FACTORS_SCHEMA
    assert factors.height == 20
    # Before 06-05 both splits are ahead: 1/10 x 5/1; the dividend ahead too: 1 - 0.5 / 100
    # (100 = the close of 06-07, the last before its ex-date).
    before_split = {day: 0.5 for day in (d(3), d(4))}
    between = {day: 5.0 for day in (d(5), d(6), d(7), d(10), d(11))}
    after = {day: 1.0 for day in (d(12), d(13), d(14))}
    assert by_day(factors, "ACME", "split_factor") == before_split | between | after
    dividend_ahead = {day: 0.995 for day in (d(3), d(4), d(5), d(6), d(7))}
    dividend_past = {day: 1.0 for day in (d(10), d(11), d(12), d(13), d(14))}
    assert by_day(factors, "ACME", "dividend_factor") == dividend_ahead | dividend_past
    assert by_day(factors, "ACME", "total_factor") == {
        d(3): 0.5 * 0.995,
        d(4): 0.5 * 0.995,
        d(5): 5 * 0.995,
        d(6): 5 * 0.995,
        d(7): 5 * 0.995,
        d(10): 5.0,
        d(11): 5.0,
        d(12): 1.0,
        d(13): 1.0,
        d(14): 1.0,
    }
    calm = factors.filter(pl.col("symbol") == "CALM")
    assert calm.select("split_factor", "dividend_factor", "total_factor").unique().rows() == [
        (1.0, 1.0, 1.0)
    ]
    assert factors["as_of"].unique().to_list() == [AS_OF]


def test_factors_match_the_providers_historical_adjustment_factor() -> None:
    """Massive's AAPL: 4:1 on 2020-08-31 gives 0.25 before it; with 7:1 on 2014-06-09 too,
    0.25 / 7 before that, to the bit."""
    aapl = daily({"AAPL": {date(2014, 6, 6): 645.57, date(2020, 8, 28): 499.23}})
    factors = adjustment_factors(
        aapl,
        actions(split("AAPL", date(2014, 6, 9), 1, 7), split("AAPL", date(2020, 8, 31), 1, 4)),
        as_of=date(2024, 1, 2),
        where=WHERE,
    )
    assert by_day(factors, "AAPL", "split_factor") == {
        date(2014, 6, 6): 0.25 / 7,
        date(2020, 8, 28): 0.25,
    }


def test_a_split_and_a_dividend_on_one_day() -> None:
    """A 4-for-1 split and 0.25 a (new) share on 06-05: the dividend is 1.00 an old share, so
    the factor before it is 1/4 x (1 - 1.00 / 202) and the return (51 + 0.25) x 4 / 202 - 1."""
    bars = daily({"SPLT": {d(3): 200.0, d(4): 202.0, d(5): 51.0, d(6): 52.0}})
    acts = actions(split("SPLT", d(5), 1, 4), dividend("SPLT", d(5), 0.25))
    factors = adjustment_factors(bars, acts, as_of=AS_OF, where=WHERE)
    assert by_day(factors, "SPLT", "split_factor") == {d(3): 0.25, d(4): 0.25, d(5): 1, d(6): 1}
    assert by_day(factors, "SPLT", "dividend_factor") == {
        d(3): 1 - 1.0 / 202,
        d(4): 1 - 1.0 / 202,
        d(5): 1.0,
        d(6): 1.0,
    }
    returns = (
        total_returns(bars, acts, as_of=AS_OF).filter(pl.col("date") == d(5)).row(0, named=True)
    )
    assert returns["split_ratio"] == 4.0
    assert returns["dividend"] == 0.25
    assert returns["total_return"] == (51 + 0.25) * 4 / 202 - 1


def test_actions_in_a_gap_of_days_land_on_the_next_row() -> None:
    """No rows on 06-05 and 06-06: a 1.00 dividend (ex 06-05, per old share) then a 2-for-1
    split (ex 06-06). One share held from 06-04 (100) gets 1.00 and becomes two shares at 51:
    103, a 3 % return. The dividend adjusts by 1 - 1.00 / 100, unconverted: it went ex first."""
    bars = daily({"GAPS": {d(3): 100.0, d(4): 100.0, d(7): 51.0}})
    acts = actions(dividend("GAPS", d(5), 1.0), split("GAPS", d(6), 1, 2))
    factors = adjustment_factors(bars, acts, as_of=AS_OF, where=WHERE)
    assert by_day(factors, "GAPS", "total_factor") == {d(3): 0.5 * 0.99, d(4): 0.5 * 0.99, d(7): 1}
    returns = (
        total_returns(bars, acts, as_of=AS_OF).filter(pl.col("date") == d(7)).row(0, named=True)
    )
    assert (returns["prev_date"], returns["split_ratio"], returns["dividend"]) == (d(4), 2.0, 0.5)
    assert returns["total_return"] == pytest.approx(0.03, rel=1e-12)


def test_a_split_before_a_dividend_in_a_gap_converts_the_cash() -> None:
    """2-for-1 ex 06-05, then 0.50 a new share ex 06-06, no rows in between: 1.00 an old
    share against the close of 06-04 (100)."""
    bars = daily({"GAPS": {d(3): 100.0, d(4): 100.0, d(7): 51.0}})
    acts = actions(split("GAPS", d(5), 1, 2), dividend("GAPS", d(6), 0.5))
    factors = adjustment_factors(bars, acts, as_of=AS_OF, where=WHERE)
    assert by_day(factors, "GAPS", "dividend_factor") == {d(3): 0.99, d(4): 0.99, d(7): 1.0}
    returns = (
        total_returns(bars, acts, as_of=AS_OF).filter(pl.col("date") == d(7)).row(0, named=True)
    )
    assert returns["total_return"] == (51 + 0.5) * 2 / 100 - 1


def test_a_dividend_before_the_first_row_adjusts_nothing() -> None:
    bars = daily({"ACME": {d(3): 100.0, d(4): 101.0}})
    factors = adjustment_factors(
        bars,
        actions(dividend("ACME", d(3), 1.0), dividend("ACME", date(2024, 5, 31), 2.0)),
        as_of=AS_OF,
        where=WHERE,
    )
    assert factors["total_factor"].to_list() == [1.0, 1.0]


def test_actions_after_as_of_change_nothing(bars: pl.DataFrame) -> None:
    """A split announced for next week does not adjust today."""
    future = actions(split("ACME", d(17), 1, 10), dividend("ACME", d(17), 1.0))
    factors = adjustment_factors(bars, future, as_of=AS_OF, where=WHERE)
    assert factors["total_factor"].unique().to_list() == [1.0]
    plain = total_returns(bars, actions(), as_of=AS_OF)
    assert total_returns(bars, future, as_of=AS_OF).equals(plain)
    # With as_of on the eve of the reverse split, only the 10-for-1 and the dividend count.
    eve = adjustment_factors(bars, actions(*ACME_ACTIONS), as_of=d(11), where=WHERE)
    assert by_day(eve, "ACME", "split_factor")[d(3)] == 0.1
    assert by_day(eve, "ACME", "split_factor")[d(12)] == 1.0
    assert eve["as_of"].unique().to_list() == [d(11)]
    returns = total_returns(bars, actions(*ACME_ACTIONS), as_of=d(11))
    assert by_day(returns, "ACME", "split_ratio")[d(12)] == 1.0
    assert by_day(returns, "ACME", "total_return")[d(12)] == 515 / 102 - 1


# --- adjusted bars --------------------------------------------------------------------------


def test_adjusted_closes_are_continuous_across_splits(
    bars: pl.DataFrame, factors: pl.DataFrame
) -> None:
    adjusted = adjusted_daily_bars(bars, factors)
    assert adjusted.schema == ADJUSTED_DAILY_SCHEMA
    assert by_day(adjusted, "ACME", "close") == dict(
        zip(ACME_CLOSES, [500.0, 505, 510, 520, 500, 505, 510, 515, 520, 525], strict=True)
    )
    first = adjusted.row(0, named=True)  # ACME 06-03: 1000 unadjusted, factor 0.5
    assert (first["open"], first["high"], first["low"], first["vwap"]) == (499.5, 501, 499, 500)
    assert (first["volume"], first["trades"], first["bar_count"]) == (2000.0, 10, 390)
    assert (first["split_factor"], first["total_factor"]) == (0.5, 0.5 * 0.995)
    assert first["adj_close"] == 1000 * (0.5 * 0.995)
    calm = adjusted.filter(pl.col("symbol") == "CALM")
    assert calm.select(list(DAILY_SCHEMA)).equals(bars.filter(pl.col("symbol") == "CALM"))
    assert calm["adj_close"].to_list() == calm["close"].to_list()


def test_adj_close_returns_follow_the_chart_convention(
    bars: pl.DataFrame, factors: pl.DataFrame
) -> None:
    """adj_close of 06-07 is 100 x 5 x 0.995 = 497.5 and of 06-10 101 x 5 = 505: its return
    is C_t / (C_{t-1} - D) = 101 / 99.5, where the holding-period return is 101.5 / 100."""
    adj = by_day(adjusted_daily_bars(bars, factors), "ACME", "adj_close")
    assert adj[d(7)] == pytest.approx(497.5, rel=1e-15)
    assert adj[d(10)] == 505.0
    assert adj[d(10)] / adj[d(7)] == pytest.approx(101 / 99.5, rel=1e-15)
    # Across the splits adj_close moves as the split-adjusted close: 510 / 505, 515 / 510.
    assert adj[d(5)] / adj[d(4)] == pytest.approx(510 / 505, rel=1e-15)
    assert adj[d(12)] / adj[d(11)] == pytest.approx(515 / 510, rel=1e-15)


def test_a_bar_without_factor_is_refused(bars: pl.DataFrame, factors: pl.DataFrame) -> None:
    partial = factors.filter(~((pl.col("symbol") == "CALM") & (pl.col("date") == d(7))))
    with pytest.raises(DataValidationError, match=r"CALM on 2024-06-07 \(field split_factor\)"):
        adjusted_daily_bars(bars, partial)


def test_repeated_daily_rows_are_refused(bars: pl.DataFrame) -> None:
    expected = rf"^{re.escape(WHERE)}: 1 daily row.*ACME on 2024-06-03 \(field date\)"
    with pytest.raises(DataValidationError, match=expected):
        adjustment_factors(pl.concat([bars, bars.head(1)]), actions(), as_of=AS_OF, where=WHERE)


# --- total returns --------------------------------------------------------------------------


def test_total_returns_across_splits_and_a_dividend(bars: pl.DataFrame) -> None:
    returns = total_returns(bars, actions(*ACME_ACTIONS), as_of=AS_OF)
    assert returns.schema == TOTAL_RETURNS_SCHEMA
    assert returns.height == 18  # each symbol's first day has no previous close
    acme = returns.filter(pl.col("symbol") == "ACME")
    assert acme["date"].to_list() == list(ACME_CLOSES)[1:]
    assert acme["prev_date"].to_list() == list(ACME_CLOSES)[:-1]
    total = by_day(returns, "ACME", "total_return")
    assert total[d(4)] == 1010 / 1000 - 1
    assert total[d(5)] == 102 * 10 / 1010 - 1  # the 10-for-1: the ordinary return
    assert total[d(10)] == (101 + 0.5) / 100 - 1  # the dividend is part of the return
    assert total[d(12)] == 515 / 5 / 102 - 1  # the 1-for-5 reverse split
    price = by_day(returns, "ACME", "price_return")
    assert price[d(10)] == 101 / 100 - 1
    assert price[d(5)] == total[d(5)]
    assert by_day(returns, "ACME", "split_ratio") == {
        day: {d(5): 10.0, d(12): 0.2}.get(day, 1.0) for day in list(ACME_CLOSES)[1:]
    }
    assert by_day(returns, "ACME", "dividend") == {
        day: 0.5 if day == d(10) else 0.0 for day in list(ACME_CLOSES)[1:]
    }
    log = by_day(returns, "ACME", "log_total_return")
    assert log[d(10)] == pytest.approx(math.log(101.5 / 100), rel=1e-14)
    assert log[d(5)] == pytest.approx(math.log(1020 / 1010), rel=1e-14)
    calm = by_day(returns, "CALM", "total_return")
    assert calm[d(4)] == 51 / 50 - 1


def test_nvidia_ten_for_one() -> None:
    """NVDA closed at 1208.88 on Fri 2024-06-07 and at 121.79 on Mon 2024-06-10, the first
    session after its 10-for-1 split: a 0.746 % gain, not a 90 % loss."""
    bars = daily({"NVDA": {d(7): 1208.88, d(10): 121.79}})
    acts = actions(split("NVDA", d(10), 1, 10))
    returns = total_returns(bars, acts, as_of=d(10)).row(0, named=True)
    assert returns["total_return"] == 121.79 * 10 / 1208.88 - 1
    assert returns["total_return"] == pytest.approx(0.0074614519, abs=1e-10)
    assert returns["price_return"] == returns["total_return"]
    factors = adjustment_factors(bars, acts, as_of=d(10), where=WHERE)
    adjusted = by_day(adjusted_daily_bars(bars, factors), "NVDA", "close")
    # 1208.88 x 0.1 is 120.88800000000002 in binary floating point: one ulp from 120.888.
    assert adjusted == {d(7): pytest.approx(120.888, rel=2e-16), d(10): 121.79}


def test_total_return_is_the_adj_close_return_on_days_without_a_dividend() -> None:
    rng = random.Random(20240610)
    closes: dict[str, dict[date, float]] = {}
    rows = []
    for number in range(6):
        symbol = f"S{number}"
        day, price, series = date(2023, 1, 2), rng.uniform(20, 500), {}
        for _ in range(120):
            day += timedelta(days=rng.choice((1, 1, 1, 3)))
            move = 1 + rng.gauss(0, 0.02)
            if rng.random() < 0.02:  # a split of this day
                split_from, split_to = rng.choice(((1, 2), (1, 3), (2, 3), (10, 1), (1, 20)))
                rows.append(split(symbol, day, split_from, split_to))
                move *= split_from / split_to
            if rng.random() < 0.05 and series:  # a dividend of this day
                cash = round(price * rng.uniform(0.001, 0.03), 2)
                rows.append(dividend(symbol, day, cash))
                move *= 1 - cash / price
            price = round(price * move, 2)
            series[day] = price
        closes[symbol] = series
    bars, acts = daily(closes), actions(*rows)
    as_of = max(max(series) for series in closes.values())
    factors = adjustment_factors(bars, acts, as_of=as_of, where=WHERE)
    adjusted = adjusted_daily_bars(bars, factors).select(
        "symbol",
        "date",
        (pl.col("adj_close") / pl.col("adj_close").shift(1).over("symbol") - 1).alias("adj"),
    )
    returns = total_returns(bars, acts, as_of=as_of).join(adjusted, on=["symbol", "date"])
    assert (returns["split_ratio"] != 1).sum() > 3  # the draw does hold splits
    plain = returns.filter(pl.col("dividend") == 0)
    assert plain.height > 500
    for total, adj in plain.select("total_return", "adj").iter_rows():
        assert total == pytest.approx(adj, rel=1e-9, abs=1e-12)
    # On a dividend day: adj_close moves as C_t x ratio / (C_{t-1} - D / ratio).
    paid = returns.filter(pl.col("dividend") > 0)
    assert paid.height > 10
    for close, prev, ratio, cash, adj in paid.select(
        "close", "prev_close", "split_ratio", "dividend", "adj"
    ).iter_rows():
        assert adj == pytest.approx(close * ratio / (prev - cash * ratio) - 1, rel=1e-9)


# --- splits by day --------------------------------------------------------------------------


def test_splits_by_day() -> None:
    ratios = splits_by_day(
        actions(*ACME_ACTIONS, split("NVDA", d(10), 1, 10), split("ACME", d(12), 1, 2))
    )
    assert ratios.schema == SPLIT_RATIOS_SCHEMA
    assert ratios.rows() == [("ACME", d(5), 10.0), ("ACME", d(12), 0.4), ("NVDA", d(10), 10.0)]


# --- refusals -------------------------------------------------------------------------------


def refusal(*rows: dict[str, Any], symbols: tuple[str, ...] = ("ACME", "CALM")) -> str:
    with pytest.raises(DataValidationError) as caught:
        validate_actions(actions(*rows), symbols=symbols, where=WHERE)
    message = str(caught.value)
    assert message.startswith(f"{WHERE}: ")
    return message


def test_valid_actions_come_back_sorted() -> None:
    checked = validate_actions(
        actions(*reversed(ACME_ACTIONS), dividend("ACME", d(5), 0.1)),
        symbols=["ACME"],
        where=WHERE,
    )
    assert checked.select("ex_date", "kind").rows() == [
        (d(5), "dividend"),
        (d(5), "split"),
        (d(10), "dividend"),
        (d(12), "split"),
    ]


def test_a_split_ratio_of_zero_is_refused() -> None:
    message = refusal(split("ACME", d(5), 1, 0))
    assert "split of ACME on 2024-06-05 has split_to = 0, a split ratio of 0 for 1" in message
    assert "(field split_to)" in message


def test_a_negative_split_from_is_refused() -> None:
    message = refusal(split("ACME", d(5), -2, 1), split("ACME", d(12), 5, math.inf))
    assert "split of ACME on 2024-06-05 has split_from = -2" in message
    assert "(field split_from)" in message
    assert "(1 more action(s) refused)" in message


def test_a_dividend_not_positive_is_refused() -> None:
    message = refusal(dividend("ACME", d(10), 0.0, "EUR"))
    assert "dividend of ACME on 2024-06-10 has cash_amount = 0 EUR (field cash_amount)" in message


def test_a_dividend_larger_than_the_price_is_refused(bars: pl.DataFrame) -> None:
    with pytest.raises(DataValidationError) as caught:
        adjustment_factors(bars, actions(dividend("ACME", d(10), 100.0)), as_of=AS_OF, where=WHERE)
    assert str(caught.value).startswith(
        f"{WHERE}: the dividend of ACME on 2024-06-10 (100 USD, field cash_amount) is not below "
        "the close it is paid from (100 on 2024-06-07): a dividend larger than the price."
    )


def test_a_dividend_larger_than_the_price_counts_the_split_of_its_day(bars: pl.DataFrame) -> None:
    """110 a new share on the day of the 10-for-1 is 1100 an old share: above 1010."""
    acts = actions(split("ACME", d(5), 1, 10), dividend("ACME", d(5), 110.0))
    with pytest.raises(DataValidationError, match=r"1100 per share before the split of that day"):
        adjustment_factors(bars, acts, as_of=AS_OF, where=WHERE)


def test_an_action_of_a_symbol_not_held_is_refused() -> None:
    message = refusal(split("XYZ", d(5), 1, 2))
    assert "a split of XYZ on 2024-06-05, but the source does not hold XYZ (field symbol" in message


def test_a_duplicate_action_is_refused() -> None:
    message = refusal(dividend("ACME", d(10), 0.5), dividend("ACME", d(10), 0.5))
    assert "the dividend of ACME on 2024-06-10 appears 2 times" in message
    assert "(field provider_id)" in message


def test_an_unknown_kind_is_refused() -> None:
    message = refusal(action("ACME", d(5), "spinoff"))
    assert "the action of ACME on 2024-06-05 has kind 'spinoff' (field kind)" in message


def test_adjustment_factors_validate_the_actions_of_held_symbols(bars: pl.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"split of ACME on 2024-06-05 has split_to = 0"):
        adjustment_factors(bars, actions(split("ACME", d(5), 1, 0)), as_of=AS_OF, where=WHERE)
    # An action of a symbol these bars do not hold adjusts nothing (another day's bars may).
    other = actions(split("ZZZ", d(5), 1, 2))
    assert adjustment_factors(bars, other, as_of=AS_OF, where=WHERE)[
        "total_factor"
    ].unique().to_list() == [1.0]
