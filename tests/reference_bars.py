"""The bar decoding and core/bars processing as they were before the fast decoder and range
processing (commit fa7723c), kept verbatim as the reference the new code must match exactly.

Used by tests only: a page must give the same frame, the same unknown-field counts and the
same error (type, message, fields) here and through the shipped adapters, and a manifest the
same core/bars partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from resources.errors import SchemaError
from resources.providers import binance, polygon
from resources.providers.base import ProviderAdapter
from resources.providers.decoding import (
    _EXPECTED,
    BAR_SCHEMA,
    ISO_FMT,
    BarField,
    FieldKind,
    ParsedBars,
    decode_json,
)
from resources.raw.manifest import Manifest
from resources.raw.snapshots import SnapshotStore
from resources.simulator import adapter as simulator
from resources.tables.core import BuildStats, validate_ohlc
from resources.tables.schemas import CANONICAL_SCHEMA


# -- frame_from_records and canonical_bars, as they were ----------------------------------
def _valid(value: Any, kind: FieldKind) -> bool:
    if isinstance(value, bool):
        return False
    if kind == "iso":
        return isinstance(value, str)
    if kind in ("ms", "int"):
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float)
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def frame_from_records(
    records: Sequence[Any],
    fields: Sequence[BarField],
    *,
    provider: str,
    symbol: str,
    partition: str | None,
    known_keys: frozenset[str] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Typed columns from a provider's bar records (objects or arrays), strictly: a missing
    required value or a value of the wrong type is a SchemaError naming provider, symbol,
    partition, field and record; object keys we do not map are counted, not fatal."""
    where = f"{provider}: symbol {symbol}" + (f", partition {partition}" if partition else "")
    unknown: dict[str, int] = {}
    by_key = bool(records) and isinstance(records[0], dict)
    for index, record in enumerate(records):
        if not isinstance(record, dict | list) or isinstance(record, dict) != by_key:
            raise SchemaError(
                f"{where}: bar {index} is a {type(record).__name__}, not like bar 0",
                provider=provider,
                symbol=symbol,
                partition=partition,
            )
        if by_key and known_keys is not None:
            for key in record:
                if key not in known_keys:
                    unknown[key] = unknown.get(key, 0) + 1
    columns: dict[str, list[Any]] = {}
    for spec in fields:
        values = []
        for index, record in enumerate(records):
            if by_key:
                value = record.get(spec.source)
                present = spec.source in record
            else:
                present = isinstance(spec.source, int) and spec.source < len(record)
                value = record[spec.source] if present else None
            if value is None:
                if spec.required:
                    state = "is null" if present else "missing"
                    raise SchemaError(
                        f"{where}: field {spec.source!r} {state} in bar {index}; "
                        "the provider's schema changed",
                        provider=provider,
                        symbol=symbol,
                        partition=partition,
                        field=str(spec.source),
                    )
            elif not _valid(value, spec.kind):
                raise SchemaError(
                    f"{where}: field {spec.source!r} in bar {index} is {type(value).__name__} "
                    f"{value!r:.40}, expected {_EXPECTED[spec.kind]}",
                    provider=provider,
                    symbol=symbol,
                    partition=partition,
                    field=str(spec.source),
                )
            elif spec.kind == "decimal":
                value = float(value)
            values.append(value)
        columns[spec.column] = values
    dtypes = {
        "iso": pl.String(),
        "ms": pl.Int64(),
        "number": pl.Float64(),
        "decimal": pl.Float64(),
        "int": pl.Int64(),
    }
    frame = pl.DataFrame(
        columns, schema={spec.column: dtypes[spec.kind] for spec in fields}, strict=False
    )
    conversions = []
    for spec in fields:
        if spec.kind == "ms":
            conversions.append(
                pl.from_epoch(pl.col(spec.column), time_unit="ms")
                .dt.cast_time_unit("us")
                .dt.replace_time_zone("UTC")
            )
        elif spec.kind == "iso":
            conversions.append(
                pl.col(spec.column).str.to_datetime(
                    ISO_FMT, time_unit="us", time_zone="UTC", strict=False
                )
            )
    if conversions:
        converted = frame.with_columns(conversions)
        for spec in fields:
            if spec.kind == "iso":
                bad = converted[spec.column].is_null() & frame[spec.column].is_not_null()
                if bad.any():
                    index = int(bad.arg_max() or 0)
                    raise SchemaError(
                        f"{where}: field {spec.source!r} in bar {index} is not a timestamp "
                        f"like 2026-01-05T00:00:00Z",
                        provider=provider,
                        symbol=symbol,
                        partition=partition,
                        field=str(spec.source),
                    )
        frame = converted
    return frame, unknown


def canonical_bars(frame: pl.DataFrame, *, symbol: str) -> pl.DataFrame:
    """Add the symbol and any optional column the provider does not have, in BAR_SCHEMA order."""
    missing = [
        pl.lit(None, dtype).alias(name)
        for name, dtype in BAR_SCHEMA.items()
        if name not in frame.columns and name != "symbol"
    ]
    return (
        frame.with_columns(pl.lit(symbol, pl.String()).alias("symbol"), *missing)
        .select(list(BAR_SCHEMA))
        .cast(BAR_SCHEMA)  # type: ignore[arg-type]
    )


# -- the adapters' parse_bars, as they were -------------------------------------------------
def reference_parse_bars(
    adapter: ProviderAdapter, body: bytes, *, symbol: str, partition: str | None = None
) -> ParsedBars:
    where = f"{adapter.name}: symbol {symbol}" + (f", partition {partition}" if partition else "")
    if isinstance(adapter, simulator.SimulatorAdapter):
        payload = decode_json(body, provider=adapter.name, what=where)
        bars = payload.get("bars") if isinstance(payload, dict) else None
        if not isinstance(bars, list):
            raise SchemaError(
                f"{where}: field 'bars' is missing or not a list",
                provider=adapter.name,
                symbol=symbol,
                partition=partition,
                field="bars",
            )
        frame, unknown = frame_from_records(
            bars,
            simulator.FIELDS,
            provider=adapter.name,
            symbol=symbol,
            partition=partition,
            known_keys=simulator.KNOWN_KEYS,
        )
        return ParsedBars(canonical_bars(frame, symbol=symbol), unknown)
    if isinstance(adapter, polygon.PolygonAdapter):
        results = adapter._results(
            decode_json(body, provider=adapter.name, what=where), symbol=symbol
        )
        frame, unknown = frame_from_records(
            results,
            polygon.AGG_FIELDS,
            provider=adapter.name,
            symbol=symbol,
            partition=partition,
            known_keys=polygon.KNOWN_KEYS,
        )
        return ParsedBars(canonical_bars(frame, symbol=symbol), unknown)
    assert isinstance(adapter, binance.BinanceAdapter)
    klines = adapter._klines(decode_json(body, provider=adapter.name, what=where), symbol=symbol)
    frame, unknown = frame_from_records(
        klines, binance.KLINE_FIELDS, provider=adapter.name, symbol=symbol, partition=partition
    )
    frame = frame.with_columns(
        pl.when(pl.col("volume") > 0)
        .then(pl.col("_quote_volume") / pl.col("volume"))
        .otherwise(None)
        .alias("vwap")
    )
    return ParsedBars(canonical_bars(frame, symbol=symbol), unknown)


# -- core/bars for one partition, as it was --------------------------------------------------
def reference_bars_from_manifest(
    store: SnapshotStore,
    adapter: ProviderAdapter,
    manifest: Manifest,
    *,
    partition: str,
    start: datetime,
    end: datetime,
    stats: BuildStats,
) -> pl.DataFrame:
    frames = []
    for symbol, entry in manifest.refs():
        body = store.read(entry)
        meta = store.read_meta(entry)
        stats.snapshots_read += 1
        stats.bytes_read += len(body)
        parsed = reference_parse_bars(adapter, body, symbol=symbol, partition=partition)
        stats.unknown_fields.update(parsed.unknown_fields)
        fetched_at = datetime.fromisoformat(meta["fetched_at"])
        frames.append(
            parsed.frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end)).with_columns(
                pl.lit(adapter.name, pl.String()).alias("provider"),
                pl.lit(fetched_at, pl.Datetime("us", "UTC")).alias("ingested_at"),
            )
        )
    return reference_normalize_bars(frames, partition=partition, stats=stats)


def reference_normalize_bars(
    frames: Iterable[pl.DataFrame], *, partition: str, stats: BuildStats | None = None
) -> pl.DataFrame:
    combined = pl.concat(
        [f.select(list(CANONICAL_SCHEMA)).cast(CANONICAL_SCHEMA) for f in frames]
        or [pl.DataFrame(schema=CANONICAL_SCHEMA)]
    )
    deduped = combined.sort(
        ["symbol", "ts", "ingested_at"], descending=[False, False, True]
    ).unique(subset=["symbol", "ts"], keep="first", maintain_order=True)
    if stats is not None:
        stats.duplicates_dropped += combined.height - deduped.height
    validate_ohlc(deduped, partition=partition)
    return deduped
