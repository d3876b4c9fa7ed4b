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
