"""Prices a researcher can trust across splits and dividends (polars, no Dagster).

Inputs are a source's *unadjusted* daily bars (DAILY_SCHEMA: prices as traded that day, so a
10-for-1 split shows as close / 10 from its execution date on) and its corporate actions
(CORPORATE_ACTIONS_SCHEMA: ``ex_date`` is the first session on the new basis; a dividend's
``cash_amount`` is per share as paid on its ex-date, not split-adjusted). Out come:

- ``adjustment_factors``: per symbol and day, the factor that puts that day's price on the
  basis of ``as_of`` (adjusted = unadjusted x factor). The split factor is the provider's
  historical adjustment factor (Massive: AAPL 4:1 on 2020-08-31 gives 0.25 before it, and with
  7:1 on 2014-06-09, 0.25 / 7 before that); the dividend factor multiplies (1 - D / C) over
  the dividends after the day, C the close before the ex-date.
- ``adjusted_daily_bars``: the bars split-adjusted, plus ``adj_close`` (split and dividend
  adjusted: Yahoo's "Adj Close").
- ``total_returns``: close-to-close holding-period returns (CRSP's): one share bought at the
  previous close, the shares its splits gave, the dividends it was paid.

The one subtlety: across an ex-dividend date the return of the ``adj_close`` series is
C_t / (C_{t-1} - D), while ``total_return`` is (C_t + D) / C_{t-1}. They agree to first order
and differ at second order (by about D/C x the day's return). ``total_return`` is the exact
holding-period return (use it to compound wealth); ``adj_close`` is the multiplicative
convention every chart and data vendor uses. On days without a dividend the two agree.

Ratios are carried as products of ``split_from`` and of ``split_to`` and divided once, so a
10-for-1 split multiplies a close by exactly 10 and 4:1 then 7:1 gives exactly the correctly
rounded 1/28 (the same float as the provider's 0.25 / 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import polars as pl

from resources.errors import DataValidationError
from resources.tables.schemas import (
    ADJUSTED_DAILY_SCHEMA,
    CORPORATE_ACTION_KINDS,
    DAILY_SCHEMA,
    FACTORS_SCHEMA,
    SPLIT_RATIOS_SCHEMA,
    TOTAL_RETURNS_SCHEMA,
)

# Short enough that no table is longer than core_daily_returns: a source's name must leave room
# for its longest table in a PostgreSQL identifier, and longer tables would refuse names that
# deployments already use (fin_assets/lib/sources.py MAX_NAME_LENGTH).
CORPORATE_ACTIONS_TABLE = "core_corp_actions"
ADJUSTMENT_FACTORS_TABLE = "core_adj_factors"
ADJUSTED_DAILY_TABLE = "core_adj_daily"
TOTAL_RETURNS_TABLE = "core_total_returns"

ACTION_KEY = ("symbol", "ex_date", "kind", "provider_id")
"""What identifies one corporate action: a second row with the same key is a duplicate."""

_SPLIT = pl.col("kind") == "split"
_DIVIDEND = pl.col("kind") == "dividend"

# The problems validate_actions looks for, in the order one is reported.
_PROBLEMS = (
    "symbol",
    "ex_date",
    "kind",
    "held",
    "split_from",
    "split_to",
    "cash_amount",
    "duplicate",
)


def _not_positive_finite(name: str) -> pl.Expr:
    return ~(pl.col(name).is_finite() & (pl.col(name) > 0)).fill_null(False)


def _num(value: float | None) -> str:
    return "null" if value is None else f"{value:g}"


def _describe(problem: str, row: dict[str, Any], symbols: Sequence[str]) -> str:
    symbol, ex_date, kind = row["symbol"], row["ex_date"], row["kind"]
    if problem == "symbol":
        return f"a {kind} on {ex_date} has no symbol (field symbol)"
    if problem == "ex_date":
        return f"a {kind} of {symbol} has no ex-date (field ex_date)"
    if problem == "kind":
        return (
            f"the action of {symbol} on {ex_date} has kind {kind!r} (field kind), "
            f"not one of {', '.join(CORPORATE_ACTION_KINDS)}"
        )
    if problem == "held":
        return (
            f"a {kind} of {symbol} on {ex_date}, but the source does not hold {symbol} "
            f"(field symbol; it holds {len(symbols)} symbol(s))"
        )
    if problem in ("split_from", "split_to"):
        return (
            f"the split of {symbol} on {ex_date} has {problem} = {_num(row[problem])}, "
            f"a split ratio of {_num(row['split_to'])} for {_num(row['split_from'])} "
            f"(field {problem}); split_from and split_to must be positive and finite"
        )
    if problem == "cash_amount":
        return (
            f"the dividend of {symbol} on {ex_date} has cash_amount = "
            f"{_num(row['cash_amount'])} {row['currency'] or ''} (field cash_amount); "
            "a cash dividend must be positive and finite"
        )
    return (
        f"the {kind} of {symbol} on {ex_date} appears {row['copies']} times with "
        f"provider_id {row['provider_id']!r} (field provider_id); "
        f"({', '.join(ACTION_KEY)}) must be unique"
    )


def validate_actions(actions: pl.DataFrame, *, symbols: Sequence[str], where: str) -> pl.DataFrame:
    """The actions sorted by (symbol, ex_date, kind), or DataValidationError naming ``where``
    (e.g. "source us_equities (provider simulator)"), the symbol, the ex-date and the field of
    the first action refused: a split ratio not positive and finite, a dividend not positive
    and finite, an unknown kind, a symbol the source does not hold, a duplicate."""
    ordered = actions.sort(["symbol", "ex_date", "kind"], nulls_last=True, maintain_order=True)
    held = pl.Series(list(symbols), dtype=pl.String()).implode()
    checks = {
        "symbol": pl.col("symbol").is_null(),
        "ex_date": pl.col("ex_date").is_null(),
        "kind": ~pl.col("kind").is_in(list(CORPORATE_ACTION_KINDS)).fill_null(False),
        "held": ~pl.col("symbol").is_in(held).fill_null(False),
        "split_from": _SPLIT.fill_null(False) & _not_positive_finite("split_from"),
        "split_to": _SPLIT.fill_null(False) & _not_positive_finite("split_to"),
        "cash_amount": _DIVIDEND.fill_null(False) & _not_positive_finite("cash_amount"),
        "duplicate": pl.struct(list(ACTION_KEY)).is_duplicated(),
    }
    flagged = ordered.with_columns(
        pl.len().over(list(ACTION_KEY)).alias("copies"),
        **{f"_bad_{name}": checks[name] for name in _PROBLEMS},
    ).filter(pl.any_horizontal([f"_bad_{name}" for name in _PROBLEMS]))
    if flagged.is_empty():
        return ordered
    row = flagged.row(0, named=True)
    problem = next(name for name in _PROBLEMS if row[f"_bad_{name}"])
    more = f" ({flagged.height - 1} more action(s) refused)" if flagged.height > 1 else ""
    raise DataValidationError(
        f"{where}: {_describe(problem, row, symbols)}{more}. Nothing was adjusted: correct "
        "or drop the action in the provider's corporate actions, then re-run."
    )


def splits_by_day(actions: pl.DataFrame) -> pl.DataFrame:
    """SPLIT_RATIOS_SCHEMA: per symbol and execution date, new shares per old share (several
    splits of one day multiplied): the jump a split explains in unadjusted prices."""
    return (
        actions.filter(_SPLIT)
        .group_by("symbol", "ex_date")
        .agg((pl.col("split_to").product() / pl.col("split_from").product()).alias("ratio"))
        .sort("symbol", "ex_date")
        .cast(SPLIT_RATIOS_SCHEMA)
    )


def _asof(
    left: pl.DataFrame, right: pl.DataFrame, *, left_on: str, right_on: str, **options: Any
) -> pl.DataFrame:
    """``join_asof`` by symbol on frames this module sorted by (symbol, key) itself: polars
    cannot check sortedness within ``by`` groups and warns, so the sort is the caller's."""
    return left.sort("symbol", left_on).join_asof(
        right.sort("symbol", right_on),
        left_on=left_on,
        right_on=right_on,
        by="symbol",
        check_sortedness=False,
        **options,
    )


def _refuse_duplicate_days(days: pl.DataFrame, *, where: str) -> None:
    """``days`` sorted by (symbol, date): two rows of one symbol and day would get one factor
    each and double the symbol's bars downstream."""
    same = [pl.col(name) == pl.col(name).shift(1) for name in ("symbol", "date")]
    repeated = days.filter(pl.all_horizontal(same))
    if not repeated.is_empty():
        first = repeated.row(0, named=True)
        raise DataValidationError(
            f"{where}: {repeated.height} daily row(s) repeat a (symbol, date), e.g. "
            f"{first['symbol']} on {first['date']} (field date); the daily bars must hold one "
            "row per symbol and day"
        )


def _dividend_ratios(
    dividends: pl.DataFrame,
    splits: pl.DataFrame,
    days: pl.DataFrame,
    *,
    where: str,
    sessions: Sequence[date] | None = None,
) -> pl.DataFrame:
    """(symbol, ex_date, dividend_ratio = 1 - D / C) of each dividend, C the symbol's close on
    its last row before the ex-date and D the cash per share of that row's basis.

    A split executed after that row and on or before the ex-date means the cash is per
    post-split share: D = cash x split_to / split_from. A dividend with no row before its
    ex-date adjusts nothing we hold and is left out.

    With the calendar's ``sessions``, the row must be the session right before the ex-date: a
    close days older (the session before is missing from the daily bars, a gap or days never
    built) would misprice the dividend. Such a dividend takes the provider's own ratio, read
    from its cumulative factors (this dividend's over the next one's); without them it is
    refused, naming the session to build."""
    priced = _asof(
        dividends.with_row_index("dividend_id"),
        days.select("symbol", pl.col("date").alias("close_date"), "close").drop_nulls("close"),
        left_on="ex_date",
        right_on="close_date",
        strategy="backward",
        allow_exact_matches=False,
    ).drop_nulls("close_date")
    between = (
        priced.select("dividend_id", "symbol", "ex_date", "close_date")
        .join(splits.rename({"ex_date": "split_date"}), on="symbol")
        .filter(
            (pl.col("split_date") > pl.col("close_date"))
            & (pl.col("split_date") <= pl.col("ex_date"))
        )
        .group_by("dividend_id")
        .agg(pl.col("split_from").product(), pl.col("split_to").product())
    )
    converted = priced.join(between, on="dividend_id", how="left").with_columns(
        (
            pl.col("cash_amount")
            * pl.col("split_to").fill_null(1.0)
            / pl.col("split_from").fill_null(1.0)
        ).alias("cash_per_share")
    )
    too_large = converted.filter(pl.col("cash_per_share") >= pl.col("close"))
    if not too_large.is_empty():
        row = too_large.sort("symbol", "ex_date").row(0, named=True)
        per_share = (
            ""
            if row["cash_per_share"] == row["cash_amount"]
            else f", {row['cash_per_share']:g} per share before the split of that day"
        )
        raise DataValidationError(
            f"{where}: the dividend of {row['symbol']} on {row['ex_date']} "
            f"({row['cash_amount']:g} {row['currency'] or ''}{per_share}, field cash_amount) "
            f"is not below the close it is paid from ({row['close']:g} on "
            f"{row['close_date']}): a dividend larger than the price. Check the amount and "
            "its currency with the provider."
        )
    ours = (1.0 - pl.col("cash_per_share") / pl.col("close")).alias("dividend_ratio")
    if sessions is None:
        return converted.select("symbol", "ex_date", ours)
    calendar = pl.DataFrame(
        {"session_before": sorted(sessions)}, schema={"session_before": pl.Date()}
    )
    checked = (
        converted.sort("ex_date")
        .join_asof(
            calendar,
            left_on="ex_date",
            right_on="session_before",
            strategy="backward",
            allow_exact_matches=False,
        )
        .join(_provider_ratios(dividends), on=["symbol", "ex_date"], how="left")
    )
    gap = pl.col("close_date") != pl.col("session_before")
    unpriced = checked.filter(gap & pl.col("provider_ratio").is_null())
    if not unpriced.is_empty():
        row = unpriced.sort("symbol", "ex_date").row(0, named=True)
        raise DataValidationError(
            f"{where}: the dividend of {row['symbol']} on {row['ex_date']} (field cash_amount) "
            f"is paid from the close of {row['session_before']}, which the daily bars do not "
            f"hold (their last close before it is {row['close_date']}), and the provider gave "
            "no adjustment factor to take instead: build the daily bars of that session"
        )
    return checked.select(
        "symbol",
        "ex_date",
        pl.when(gap).then(pl.col("provider_ratio")).otherwise(ours).alias("dividend_ratio"),
    )


def _provider_ratios(dividends: pl.DataFrame) -> pl.DataFrame:
    """(symbol, ex_date, provider_ratio) of each dividend from the provider's cumulative
    factors: a factor multiplies the ratios of its dividend and every later one, so one
    dividend's ratio is its factor over the next dividend's (the last one's is its own)."""
    if "provider_factor" not in dividends.columns:
        return pl.DataFrame(
            schema={"symbol": pl.String(), "ex_date": pl.Date(), "provider_ratio": pl.Float64()}
        )
    return dividends.sort("symbol", "ex_date").select(
        "symbol",
        "ex_date",
        (
            pl.col("provider_factor")
            / pl.col("provider_factor").shift(-1).over("symbol").fill_null(1.0)
        ).alias("provider_ratio"),
    )


def adjustment_factors(
    daily: pl.DataFrame,
    actions: pl.DataFrame,
    *,
    as_of: date,
    where: str,
    sessions: Sequence[date] | None = None,
) -> pl.DataFrame:
    """FACTORS_SCHEMA, one row per (symbol, date) of ``daily``, sorted by (symbol, date).

    split_factor(d) multiplies split_from / split_to over the symbol's splits with
    d < ex_date <= as_of; dividend_factor(d) multiplies (1 - D / C) over its dividends with
    d < ex_date <= as_of; total_factor is their product. Actions of symbols ``daily`` does not
    hold adjust nothing; the others are validated first (DataValidationError naming
    ``where``), and a dividend not below the close before it is refused. ``sessions``: the
    calendar's session days, to tell the close of the session before an ex-date from an older
    one (``_dividend_ratios``)."""
    days = daily.select("symbol", "date", "close").sort("symbol", "date")
    _refuse_duplicate_days(days, where=where)
    held = days.get_column("symbol").unique()
    relevant = validate_actions(
        actions.filter(pl.col("symbol").is_in(held.implode())),
        symbols=held.to_list(),
        where=where,
    ).filter(pl.col("ex_date") <= as_of)
    splits = (
        relevant.filter(_SPLIT)
        .group_by("symbol", "ex_date")
        .agg(pl.col("split_from").product(), pl.col("split_to").product())
    )
    dividends = _dividend_ratios(
        relevant.filter(_DIVIDEND).select(
            "symbol", "ex_date", "cash_amount", "currency", "provider_factor"
        ),
        splits,
        days,
        where=where,
        sessions=sessions,
    )
    # One event per symbol and ex-date, then the product of every event from the latest back
    # to each one (the provider's historical_adjustment_factor is built the same way): a day
    # takes the cumulative product of the first event after it.
    events = (
        pl.concat(
            [
                splits.with_columns(pl.lit(1.0).alias("dividend_ratio")),
                dividends.with_columns(
                    pl.lit(1.0).alias("split_from"), pl.lit(1.0).alias("split_to")
                ),
            ],
            how="diagonal",
        )
        .group_by("symbol", "ex_date")
        .agg(pl.col("split_from", "split_to", "dividend_ratio").product())
        .sort(["symbol", "ex_date"], descending=[False, True])
        .with_columns(pl.col("split_from", "split_to", "dividend_ratio").cum_prod().over("symbol"))
    )
    out = _asof(
        days.drop("close"),
        events,
        left_on="date",
        right_on="ex_date",
        strategy="forward",
        allow_exact_matches=False,
    ).select(
        "symbol",
        "date",
        (pl.col("split_from") / pl.col("split_to")).fill_null(1.0).alias("split_factor"),
        pl.col("dividend_ratio").fill_null(1.0).alias("dividend_factor"),
    )
    return out.with_columns(
        (pl.col("split_factor") * pl.col("dividend_factor")).alias("total_factor"),
        pl.lit(as_of, pl.Date()).alias("as_of"),
    ).cast(FACTORS_SCHEMA)


def adjusted_daily_bars(daily: pl.DataFrame, factors: pl.DataFrame) -> pl.DataFrame:
    """ADJUSTED_DAILY_SCHEMA in the order of ``daily``: open, high, low, close and vwap x
    split_factor, volume / split_factor (the same traded value), trades and bar_count as
    they were; adj_close = unadjusted close x total_factor. A daily row without exactly one
    factor row is refused, naming symbol and date."""
    joined = daily.select(list(DAILY_SCHEMA)).join(
        factors.select("symbol", "date", "split_factor", "total_factor"),
        on=["symbol", "date"],
        how="left",
        maintain_order="left",
    )
    missing = joined.filter(pl.col("split_factor").is_null() | pl.col("total_factor").is_null())
    if not missing.is_empty():
        first = missing.row(0, named=True)
        raise DataValidationError(
            f"{missing.height} daily row(s) have no adjustment factor, e.g. {first['symbol']} "
            f"on {first['date']} (field split_factor); compute the factors from the same daily "
            "bars first"
        )
    if joined.height != daily.height:
        repeated = factors.filter(pl.struct("symbol", "date").is_duplicated())
        first = repeated.row(0, named=True)
        raise DataValidationError(
            f"{repeated.height} factor rows repeat a (symbol, date), e.g. {first['symbol']} "
            f"on {first['date']} (field date); the factors must hold one row per symbol and day"
        )
    split = pl.col("split_factor")
    return joined.with_columns(
        (pl.col("close") * pl.col("total_factor")).alias("adj_close"),
        pl.col("open", "high", "low", "close", "vwap") * split,
        pl.col("volume") / split,
    ).select(list(ADJUSTED_DAILY_SCHEMA))


def total_returns(daily: pl.DataFrame, actions: pl.DataFrame, *, as_of: date) -> pl.DataFrame:
    """TOTAL_RETURNS_SCHEMA, one row per daily row that has a previous row of its symbol,
    sorted by (symbol, date).

    The actions of a row are those with prev_date < ex_date <= date (and ex_date <= as_of):
    split_ratio multiplies their split_to / split_from; dividend sums their cash, each turned
    into cash per share of ``date``'s basis (a dividend before a split of the same interval
    is divided by that split's ratio; one on the split's ex-date is per post-split share
    already). ``actions`` must be as ``validate_actions`` returns them."""
    days = daily.select("symbol", "date", "close").sort("symbol", "date")
    same_symbol = pl.col("symbol") == pl.col("symbol").shift(1)
    rows = days.with_columns(
        pl.when(same_symbol).then(pl.col("date").shift(1)).alias("prev_date"),
        pl.when(same_symbol).then(pl.col("close").shift(1)).alias("prev_close"),
    ).filter(pl.col("prev_date").is_not_null())
    # Each action lands on the first row on or after its ex-date: that row's interval
    # (prev_date, date] holds it.
    landed = _asof(
        actions.filter(pl.col("ex_date") <= as_of).select(
            "symbol", "ex_date", "kind", "split_from", "split_to", "cash_amount"
        ),
        days.select("symbol", pl.col("date").alias("row_date")),
        left_on="ex_date",
        right_on="row_date",
        strategy="forward",
    ).drop_nulls("row_date")
    splits = landed.filter(_SPLIT).select(
        "symbol", "row_date", pl.col("ex_date").alias("split_date"), "split_from", "split_to"
    )
    ratios = splits.group_by("symbol", "row_date").agg(
        pl.col("split_from").product(), pl.col("split_to").product()
    )
    later_split = pl.col("split_date") > pl.col("ex_date")
    cash = (
        landed.filter(_DIVIDEND)
        .select("symbol", "row_date", "ex_date", "cash_amount")
        .with_row_index("dividend_id")
        .join(splits, on=["symbol", "row_date"], how="left")
        .group_by("dividend_id", "symbol", "row_date")
        .agg(
            pl.col("cash_amount").first(),
            pl.when(later_split).then(pl.col("split_from")).otherwise(1.0).product().alias("f"),
            pl.when(later_split).then(pl.col("split_to")).otherwise(1.0).product().alias("t"),
        )
        .group_by("symbol", "row_date")
        .agg((pl.col("cash_amount") * pl.col("f") / pl.col("t")).sum().alias("dividend"))
    )
    out = (
        rows.join(ratios, left_on=["symbol", "date"], right_on=["symbol", "row_date"], how="left")
        .join(cash, left_on=["symbol", "date"], right_on=["symbol", "row_date"], how="left")
        .with_columns(
            pl.col("split_from", "split_to").fill_null(1.0),
            pl.col("dividend").fill_null(0.0),
        )
    )

    def growth(value: pl.Expr) -> pl.Expr:
        # value x split_to / split_from, left to right, rather than x (split_to / split_from):
        # a 1-for-5 reverse split then gives exactly close / 5 / prev_close - 1.
        return value * pl.col("split_to") / pl.col("split_from") / pl.col("prev_close") - 1.0

    out = out.with_columns(
        (pl.col("split_to") / pl.col("split_from")).alias("split_ratio"),
        growth(pl.col("close")).alias("price_return"),
        growth(pl.col("close") + pl.col("dividend")).alias("total_return"),
    ).with_columns(pl.col("total_return").log1p().alias("log_total_return"))
    return out.select(list(TOTAL_RETURNS_SCHEMA)).sort("symbol", "date").cast(TOTAL_RETURNS_SCHEMA)
