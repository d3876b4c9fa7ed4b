"""From verbatim snapshots to the canonical bar table, and from bars to daily tables (polars).

Canonical schema (DESIGN §3), one row per symbol per minute with trades:
``symbol, ts (bar open, UTC), open, high, low, close, volume, trades, vwap, provider,
ingested_at`` — ``ingested_at`` is when the provider's bytes were fetched (from the snapshot
sidecar), so rebuilding from the same snapshots gives the same table, bit for bit.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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

_BAR_COLUMNS = list(BAR_SCHEMA)
_BAR_DTYPES = list(BAR_SCHEMA.values())

MINUTES_PER_YEAR = 365 * 24 * 60  # markets we model trade around the clock (crypto, FX)


@dataclass
class BuildStats:
    snapshots_read: int = 0
    bytes_read: int = 0
    duplicates_dropped: int = 0
    unknown_fields: Counter[str] = field(default_factory=Counter)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(ts: datetime) -> int:
    """Microseconds since the epoch: the physical value of a Datetime('us', 'UTC') column."""
    return (ts - _EPOCH) // _MICROSECOND


# A parsed snapshot: sha256 prefix, coverage end, stamped frame, and its ts in microseconds
# when they are sorted and not null (None: windows are cut with a filter).
_Parsed = tuple[str, datetime | None, pl.DataFrame, list[int] | None]


class SnapshotFrames:
    """The snapshots a run's partitions use, each parsed once and kept only while a later
    partition may still need it.

    One page of the provider's largest size covers many hourly partitions (1000 minutes are
    17 hours), so parsing it again for every hour it covers would multiply the parsing work of
    a range run by as much. Partitions are processed in time order and ``release`` drops every
    snapshot that ends by the end of the partition just done: memory holds the pages that
    overlap one partition (one or two per symbol), however long the range. Out of order, a
    dropped snapshot is simply read again.
    """

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store
        self._frames: dict[str, _Parsed] = {}

    def __len__(self) -> int:
        return len(self._frames)

    def frames_for(
        self,
        adapter: ProviderAdapter,
        manifest: Mapping[str, object],
        *,
        partition: str,
        start: datetime,
        end: datetime,
        stats: BuildStats,
    ) -> list[pl.DataFrame]:
        """Each manifest entry's bars with ``start <= ts < end``, stamped with provider and
        fetch time, in manifest order."""
        first_us, end_us = _micros(start), _micros(end)
        frames = []
        for symbol, entry in iter_manifest_refs(manifest):
            cached = self._frames.get(entry["path"])
            if cached is None or cached[0] != entry["sha256"]:
                cached = self._load(adapter, symbol, entry, partition=partition, stats=stats)
            _, _, frame, ts_us = cached
            if ts_us is None:
                frames.append(frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end)))
            else:  # the same rows, in the same order, as the filter above
                first = bisect.bisect_left(ts_us, first_us)
                frames.append(frame.slice(first, bisect.bisect_left(ts_us, end_us) - first))
        return frames

    def _load(
        self,
        adapter: ProviderAdapter,
        symbol: str,
        entry: Mapping[str, str],
        *,
        partition: str,
        stats: BuildStats,
    ) -> _Parsed:
        body = self._store.read(entry)
        meta = self._store.read_meta(entry)
        stats.snapshots_read += 1
        stats.bytes_read += len(body)
        # An error names this partition: the first one that needed the snapshot.
        parsed = adapter.parse_bars(body, symbol=symbol, partition=partition)
        del body
        stats.unknown_fields.update(parsed.unknown_fields)
        frame = stamp(parsed.frame, adapter.name, datetime.fromisoformat(meta["fetched_at"]))
        ts = frame.get_column("ts")
        # Pages come sorted by time: a window is then two bisections and a zero-copy slice.
        ordered = ts.null_count() == 0 and ts.is_sorted()
        loaded = (
            entry["sha256"],
            datetime.fromisoformat(entry["end"]) if "end" in entry else None,
            frame,
            ts.to_physical().to_list() if ordered else None,
        )
        self._frames[entry["path"]] = loaded
        return loaded

    def release(self, *, through: datetime) -> None:
        """Forget snapshots that end at or before ``through``."""
        done = [k for k, (_, ends, _, _) in self._frames.items() if ends is None or ends <= through]
        for key in done:
            del self._frames[key]


def bars_from_manifest(
    store: SnapshotStore,
    adapter: ProviderAdapter,
    manifest: Mapping[str, object],
    *,
    partition: str,
    start: datetime,
    end: datetime,
    stats: BuildStats,
    snapshots: SnapshotFrames | None = None,
) -> pl.DataFrame:
    """Parse every snapshot a raw partition used, keep [start, end), dedupe and validate.

    Pass one ``SnapshotFrames`` for all the partitions of a run, in time order, so a snapshot
    covering several of them is read and parsed once."""
    cache = snapshots if snapshots is not None else SnapshotFrames(store)
    frames = cache.frames_for(
        adapter, manifest, partition=partition, start=start, end=end, stats=stats
    )
    cache.release(through=end)
    # Canonical already (stamp): concatenated as they are, without a select and cast each.
    combined = pl.concat(frames) if frames else pl.DataFrame(schema=CANONICAL_SCHEMA)
    return _dedupe_and_validate(combined, partition=partition, stats=stats)


def stamp(frame: pl.DataFrame, provider: str, fetched_at: datetime) -> pl.DataFrame:
    """A parsed page (BAR_SCHEMA) with its provider and fetch time: CANONICAL_SCHEMA."""
    if frame.columns != _BAR_COLUMNS or frame.dtypes != _BAR_DTYPES:
        frame = frame.select(_BAR_COLUMNS).cast(BAR_SCHEMA)  # type: ignore[arg-type]
    height = frame.height
    # From its physical value: a Series built from a datetime object converts it in Python.
    fetched = pl.Series("ingested_at", [_micros(fetched_at)], dtype=pl.Int64())
    return frame.hstack(
        [
            pl.Series("provider", [provider], dtype=pl.String()).new_from_index(0, height),
            fetched.cast(pl.Datetime("us", "UTC")).new_from_index(0, height),
        ]
    )


def normalize_bars(
    frames: Iterable[pl.DataFrame], *, partition: str, stats: BuildStats | None = None
) -> pl.DataFrame:
    """Concatenate, keep the newest copy of each (symbol, ts), sort, and check OHLC invariants."""
    combined = pl.concat(
        [f.select(list(CANONICAL_SCHEMA)).cast(CANONICAL_SCHEMA) for f in frames]
        or [pl.DataFrame(schema=CANONICAL_SCHEMA)]
    )
    return _dedupe_and_validate(combined, partition=partition, stats=stats)


def _dedupe_and_validate(
    combined: pl.DataFrame, *, partition: str, stats: BuildStats | None
) -> pl.DataFrame:
    deduped = newest_per_minute(combined)
    if stats is not None:
        stats.duplicates_dropped += combined.height - deduped.height
    validate_ohlc(deduped, partition=partition)
    return deduped


def newest_per_minute(frame: pl.DataFrame) -> pl.DataFrame:
    """Sorted by (symbol, ts), one row per (symbol, ts): the one fetched last.

    Overlapping snapshots (a refresh, a re-fetched page) repeat minutes: the newest fetch wins.
    Once sorted, the copies of a (symbol, ts) are adjacent, so keeping the first row of each
    run is ``unique(subset=["symbol", "ts"], keep="first", maintain_order=True)``, nulls
    included, at a tenth of its cost."""
    ordered = frame.sort(["symbol", "ts", "ingested_at"], descending=[False, False, True])
    repeated = pl.col("symbol").eq_missing(pl.col("symbol").shift(1)) & pl.col("ts").eq_missing(
        pl.col("ts").shift(1)
    )
    return ordered.filter((pl.int_range(pl.len()) == 0) | ~repeated)


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
