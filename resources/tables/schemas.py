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
