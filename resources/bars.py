"""From verbatim snapshots to the canonical bar table, and from bars to daily tables (polars).

Canonical schema (DESIGN §3), one row per symbol per minute with trades:
``symbol, ts (bar open, UTC), open, high, low, close, volume, trades, vwap, provider,
ingested_at`` — ``ingested_at`` is when the provider's bytes were fetched (from the snapshot
sidecar), so rebuilding from the same snapshots gives the same table, bit for bit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from resources.errors import DataValidationError
from resources.providers.base import BAR_SCHEMA, ProviderAdapter
from resources.snapshots import SnapshotStore, iter_manifest_refs

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

MINUTES_PER_YEAR = 365 * 24 * 60  # markets we model trade around the clock (crypto, FX)


@dataclass
class BuildStats:
    snapshots_read: int = 0
    bytes_read: int = 0
    duplicates_dropped: int = 0
    unknown_fields: Counter[str] = field(default_factory=Counter)


def bars_from_manifest(
    store: SnapshotStore,
    adapter: ProviderAdapter,
    manifest: Mapping[str, object],
    *,
    partition: str,
    start: datetime,
    end: datetime,
    stats: BuildStats,
) -> pl.DataFrame:
    """Parse every snapshot a raw partition used, keep [start, end), dedupe and validate."""
    frames = []
    for symbol, entry in iter_manifest_refs(manifest):
        body = store.read(entry)
        meta = store.read_meta(entry)
        stats.snapshots_read += 1
        stats.bytes_read += len(body)
        parsed = adapter.parse_bars(body, symbol=symbol, partition=partition)
        stats.unknown_fields.update(parsed.unknown_fields)
        fetched_at = datetime.fromisoformat(meta["fetched_at"])
        frames.append(
            parsed.frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end)).with_columns(
                pl.lit(adapter.name, pl.String()).alias("provider"),
                pl.lit(fetched_at, pl.Datetime("us", "UTC")).alias("ingested_at"),
            )
        )
    return normalize_bars(frames, partition=partition, stats=stats)


def normalize_bars(
    frames: Iterable[pl.DataFrame], *, partition: str, stats: BuildStats | None = None
) -> pl.DataFrame:
    """Concatenate, keep the newest copy of each (symbol, ts), sort, and check OHLC invariants."""
    combined = pl.concat(
        [f.select(list(CANONICAL_SCHEMA)).cast(CANONICAL_SCHEMA) for f in frames]
        or [pl.DataFrame(schema=CANONICAL_SCHEMA)]
    )
    # Overlapping snapshots (a refresh, a re-fetched page) repeat minutes: the newest fetch wins.
    deduped = combined.sort(
        ["symbol", "ts", "ingested_at"], descending=[False, False, True]
    ).unique(subset=["symbol", "ts"], keep="first", maintain_order=True)
    if stats is not None:
        stats.duplicates_dropped += combined.height - deduped.height
    validate_ohlc(deduped, partition=partition)
    return deduped


def validate_ohlc(frame: pl.DataFrame, *, partition: str) -> None:
    """Refuse bars no market can print; the error lists offenders so a human can look."""
    problems = {
        "non-positive price": pl.min_horizontal("open", "high", "low", "close") <= 0,
        "high below open/close": pl.col("high") < pl.max_horizontal("open", "close"),
        "low above open/close": pl.col("low") > pl.min_horizontal("open", "close"),
        "negative volume": pl.col("volume") < 0,
        "missing or non-finite value": ~pl.all_horizontal(
            pl.col("open", "high", "low", "close", "volume").is_finite().fill_null(False)
        ),
    }
    flagged = frame.with_columns(**{k: v for k, v in problems.items()}).filter(
        pl.any_horizontal(list(problems))
    )
    if flagged.is_empty():
        return
    examples = []
    for row in flagged.head(5).iter_rows(named=True):
        what = [p for p in problems if row[p]]
        examples.append(f"{row['symbol']} {row['ts']:%Y-%m-%dT%H:%MZ} ({', '.join(what)})")
    raise DataValidationError(
        f"partition {partition}: {flagged.height} bar(s) break OHLC invariants, e.g. "
        + "; ".join(examples)
    )


def aggregate_daily(bars: pl.LazyFrame | pl.DataFrame, *, day: datetime) -> pl.DataFrame:
    """One row per symbol: first open, max high, min low, last close, volume, VWAP, bar count."""
    lazy = bars.lazy() if isinstance(bars, pl.DataFrame) else bars
    # VWAP weights each bar's own vwap (or its typical price if the provider gave none).
    price = pl.coalesce("vwap", (pl.col("high") + pl.col("low") + pl.col("close")) / 3)
    out = (
        lazy.sort(["symbol", "ts"])
        .group_by("symbol", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.when(pl.col("volume").sum() > 0)
            .then((price * pl.col("volume")).sum() / pl.col("volume").sum())
            .otherwise(None)
            .alias("vwap"),
            pl.col("trades").sum().alias("trades"),
            pl.len().alias("bar_count"),
        )
        .with_columns(pl.lit(day.date(), pl.Date()).alias("date"))
        .select(list(DAILY_SCHEMA))
        .collect()
    )
    return out.cast(DAILY_SCHEMA).sort("symbol")


def daily_returns(bars: pl.LazyFrame | pl.DataFrame, *, day: datetime) -> pl.DataFrame:
    """Open-to-close return and realized volatility (root of summed squared 1-min log returns)."""
    lazy = bars.lazy() if isinstance(bars, pl.DataFrame) else bars
    log_ret = (pl.col("close") / pl.col("close").shift(1)).log()
    out = (
        lazy.sort(["symbol", "ts"])
        .group_by("symbol", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("close").last(),
            (log_ret.pow(2).sum()).sqrt().alias("realized_vol"),
            pl.len().alias("minutes"),
        )
        .with_columns(
            (pl.col("close") / pl.col("open") - 1).alias("return_oc"),
            (pl.col("close") / pl.col("open")).log().alias("log_return_oc"),
            (
                pl.col("realized_vol")
                * (MINUTES_PER_YEAR / pl.col("minutes").cast(pl.Float64)).sqrt()
            ).alias("realized_vol_annualized"),
            pl.lit(day.date(), pl.Date()).alias("date"),
        )
        .select(list(RETURNS_SCHEMA))
        .collect()
    )
    return out.cast(RETURNS_SCHEMA).sort("symbol")
