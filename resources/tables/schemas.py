"""The table schemas: canonical 1-minute bars (DESIGN §3), daily bars, daily returns."""

from __future__ import annotations

import polars as pl

from resources.providers.decoding import BAR_SCHEMA

CANONICAL_SCHEMA = pl.Schema(
    {
        **BAR_SCHEMA,
        "provider": pl.String(),
        "ingested_at": pl.Datetime("us", "UTC"),
    }
)

# Interval bars (resources/tables/intervals.py): the canonical bar's columns, ts the window's
# start, and the number of 1-minute bars each was built from.
INTERVAL_BARS_SCHEMA = pl.Schema({**BAR_SCHEMA, "bar_count": pl.UInt32()})

DAILY_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "date": pl.Date(),
        "open": pl.Float64(),
        "high": pl.Float64(),
        "low": pl.Float64(),
        "close": pl.Float64(),
        "volume": pl.Float64(),
        "vwap": pl.Float64(),
        "trades": pl.Int64(),
        "bar_count": pl.UInt32(),
    }
)

RETURNS_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "date": pl.Date(),
        "open": pl.Float64(),
        "close": pl.Float64(),
        "return_oc": pl.Float64(),
        "log_return_oc": pl.Float64(),
        "realized_vol": pl.Float64(),
        "realized_vol_annualized": pl.Float64(),
        "minutes": pl.UInt32(),
    }
)

# Corporate actions of equities (docs/corporate-actions.md): one row per split or cash
# dividend, typed from the provider's verbatim answers. ``ex_date`` is the split's execution
# date or the dividend's ex-dividend date: the first session whose prices reflect it.
CORPORATE_ACTIONS_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "ex_date": pl.Date(),
        "kind": pl.String(),  # "split" | "dividend"
        # The provider's class: forward_split | reverse_split | stock_dividend for a split,
        # recurring | special | supplemental | irregular | unknown for a dividend.
        "action_type": pl.String(),
        "split_from": pl.Float64(),  # shares before (splits only)
        "split_to": pl.Float64(),  # shares after (splits only)
        "cash_amount": pl.Float64(),  # per share on the ex-date, not split-adjusted (dividends)
        "currency": pl.String(),
        "declaration_date": pl.Date(),
        "record_date": pl.Date(),
        "pay_date": pl.Date(),
        "frequency": pl.Int64(),  # payments a year, 0 = one-off (dividends)
        # The provider's own cumulative factor as of its answer (Massive's
        # historical_adjustment_factor), kept to compare ours with.
        "provider_factor": pl.Float64(),
        "provider_id": pl.String(),
        "provider": pl.String(),
    }
)
CORPORATE_ACTION_KINDS = ("split", "dividend")

# Adjustment factors (resources/tables/adjustment.py): one row per symbol and day of the daily
# bars. Adjusted price = unadjusted price x factor; the factor of a day counts the actions
# after it, up to ``as_of`` (so a table rebuilt with a later as_of changes its history).
FACTORS_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "date": pl.Date(),
        "split_factor": pl.Float64(),  # product of split_from / split_to
        "dividend_factor": pl.Float64(),  # product of (1 - dividend / previous close)
        "total_factor": pl.Float64(),  # split_factor * dividend_factor
        "as_of": pl.Date(),  # actions with ex_date <= as_of counted
    }
)

# Daily bars split-adjusted (prices x split_factor, volume / split_factor), plus the
# split-and-dividend adjusted close (Yahoo's "Adj Close") and the factors used.
ADJUSTED_DAILY_SCHEMA = pl.Schema(
    {
        **DAILY_SCHEMA,
        "adj_close": pl.Float64(),
        "split_factor": pl.Float64(),
        "total_factor": pl.Float64(),
    }
)

# Close-to-close holding-period returns (CRSP's convention): one share held from prev_date's
# close to date's, with the shares its splits gave and the dividends it was paid. A symbol's
# first row has no return and no row here.
TOTAL_RETURNS_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "date": pl.Date(),
        "prev_date": pl.Date(),  # the symbol's previous daily row (a gap shows here)
        "close": pl.Float64(),  # unadjusted
        "prev_close": pl.Float64(),  # unadjusted
        "split_ratio": pl.Float64(),  # shares at date per share at prev_date (1.0 if none)
        "dividend": pl.Float64(),  # cash per share of date's basis (0.0 if none)
        "price_return": pl.Float64(),
        "total_return": pl.Float64(),
        "log_total_return": pl.Float64(),  # ln(1 + total_return)
    }
)

# One row per symbol and split execution date: new shares per old share (several splits of
# one day multiplied).
SPLIT_RATIOS_SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "ex_date": pl.Date(),
        "ratio": pl.Float64(),  # split_to / split_from
    }
)
