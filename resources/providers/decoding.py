"""From a provider's JSON to canonical bar columns: the typed fast decoder (msgspec) and the
precise field-by-field checker it falls back to, so a bad field is named, never nulled."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Literal

import msgspec
import polars as pl

from resources.errors import ResponseFormatError, SchemaError


@dataclass(frozen=True)
class ParsedBars:
    frame: pl.DataFrame  # columns: BAR_COLUMNS
    unknown_fields: Mapping[str, int]


# The column ``parse_pages`` adds: which of the pages given (their index) a row comes from.
PAGE_COLUMN = "_page"


@dataclass(frozen=True)
class ParsedPages:
    """Several pages parsed together: BAR_SCHEMA columns plus PAGE_COLUMN (UInt32), in no
    particular row order; the rows of each page are exactly those of its ``parse_bars``."""

    frame: pl.DataFrame
    unknown_fields: Mapping[str, int]


# Canonical columns an adapter produces; provider and ingested_at are added from the snapshot.
BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "trades": pl.Int64(),
    "vwap": pl.Float64(),
}

FieldKind = Literal["iso", "ms", "number", "decimal", "int"]

_EXPECTED = {
    "iso": "an ISO-8601 UTC string",
    "ms": "an integer of epoch milliseconds",
    "number": "a number",
    "decimal": "a decimal number in a string",
    "int": "an integer",
}

ISO_FMT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class BarField:
    """Where a provider keeps one value of a bar (a key, or a position in an array) and how
    it is typed; ``column`` is the canonical column it becomes (``_name`` = helper column)."""

    source: str | int
    column: str
    kind: FieldKind
    required: bool = True


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
    frame = frame_from_columns(
        columns, fields, provider=provider, symbol=symbol, partition=partition
    )
    return frame, unknown


_DTYPES: dict[FieldKind, pl.DataType] = {
    "iso": pl.String(),
    "ms": pl.Int64(),
    "number": pl.Float64(),
    "decimal": pl.Float64(),
    "int": pl.Int64(),
}


def frame_from_columns(
    columns: Mapping[str, list[Any]],
    fields: Sequence[BarField],
    *,
    provider: str,
    symbol: str,
    partition: str | None,
) -> pl.DataFrame:
    """Typed columns from values already checked (``frame_from_records`` or
    ``FastBarDecoder``): epoch milliseconds and ISO strings become UTC timestamps; an ISO
    string that is not a timestamp is a SchemaError naming the field and the bar."""
    where = f"{provider}: symbol {symbol}" + (f", partition {partition}" if partition else "")
    frame = pl.DataFrame(
        [
            pl.Series(spec.column, columns[spec.column], dtype=_DTYPES[spec.kind], strict=False)
            for spec in fields
        ]
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
                # No cache: a page's timestamps are all different, and hashing them costs.
                pl.col(spec.column).str.to_datetime(
                    ISO_FMT, time_unit="us", time_zone="UTC", strict=False, cache=False
                )
            )
    if conversions:
        converted = frame.with_columns(conversions)
        for spec in fields:
            # A string that is no timestamp became null (checking counts first is cheaper).
            if spec.kind == "iso" and (
                converted[spec.column].null_count() != frame[spec.column].null_count()
            ):
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
    return frame


def _column_reader(names: Sequence[str]) -> Callable[[Sequence[Any]], list[list[Any]]]:
    """``records -> [[r.<name> for r in records] for each name]``, compiled for these names.

    A list comprehension reading a slot attribute is about twice as fast as
    ``list(map(attrgetter(name), records))``, and this runs for every value of every page. The
    names are our own struct attributes (``f0``, ``p3``), never provider input."""
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"not an attribute name: {name!r}")
    body = ", ".join(f"[r.{name} for r in records]" for name in names)
    namespace: dict[str, Any] = {}
    exec(f"def read(records):\n    return [{body}]\n", namespace)
    reader: Callable[[Sequence[Any]], list[list[Any]]] = namespace["read"]
    return reader


# What json.loads gives for each kind of value, so both decoders hand over identical values.
_FAST_TYPES: dict[FieldKind, Any] = {
    "iso": str,
    "ms": int,
    "number": int | float,  # ints stay ints, as with json.loads; the Float64 column casts them
    "decimal": str,
    "int": int,
}


class FastBarDecoder:
    """A page of bars decoded and type-checked in one pass in C (msgspec typed structs), for
    the common case: every value present and of its type, no key we do not know.

    ``frame`` returns None for anything else (a null, a wrong type, an unknown key, a number
    JSON cannot hold, a body that is not JSON): the caller then runs the precise per-value
    checks of ``frame_from_records``, which find and name the problem, or count the unknown
    keys. Both paths hand the same Python values to ``frame_from_columns``, so a page gives the
    same frame whichever decoded it. ``records`` is the envelope key holding the bars (None:
    the body is the array of bars itself); ``records_optional``: an absent key means no bars.
    """

    def __init__(
        self,
        fields: Sequence[BarField],
        *,
        records: str | None = None,
        records_optional: bool = False,
        known_keys: frozenset[str] | None = None,
    ) -> None:
        self.fields = tuple(fields)
        by_position = all(isinstance(spec.source, int) for spec in fields)
        if by_position:
            bar_type = self._positional(self.fields)
            names = [f"p{spec.source}" for spec in self.fields]
        else:
            bar_type = self._keyed(self.fields, known_keys)
            names = [f"f{i}" for i in range(len(self.fields))]
        self._read_columns = _column_reader(names)
        self._decimals = [i for i, spec in enumerate(self.fields) if spec.kind == "decimal"]
        # Built at run time from the fields, hence Any for the type checker.
        records_type: Any = list.__class_getitem__(bar_type)
        self._records_at: Callable[[Any], Any] | None = None
        if records is None:
            self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(records_type)
        else:
            default: Any = (
                msgspec.field(default_factory=list) if records_optional else msgspec.NODEFAULT
            )
            page = msgspec.defstruct(
                "Page", [("records", records_type, default)], rename={"records": records}
            )
            self._decoder = msgspec.json.Decoder(page)
            self._records_at = attrgetter("records")

    @staticmethod
    def _keyed(fields: tuple[BarField, ...], known_keys: frozenset[str] | None) -> Any:
        # Field i is attribute f{i}, renamed to the provider's key; keys known but not mapped
        # are accepted (and ignored); with known_keys given any other key sends the page to the
        # precise path, which counts it.
        spec_fields: list[Any] = []
        rename: dict[str, str] = {}
        for i, spec in enumerate(fields):
            kind = _FAST_TYPES[spec.kind]
            rename[f"f{i}"] = str(spec.source)
            spec_fields.append((f"f{i}", kind) if spec.required else (f"f{i}", kind | None, None))
        mapped = {str(spec.source) for spec in fields}
        for j, key in enumerate(sorted((known_keys or frozenset()) - mapped)):
            rename[f"k{j}"] = key
            spec_fields.append((f"k{j}", Any, None))
        return msgspec.defstruct(
            "Bar",
            spec_fields,
            rename=rename,
            forbid_unknown_fields=known_keys is not None,
            gc=False,  # scalars only: no reference cycles to collect
        )

    @staticmethod
    def _positional(fields: tuple[BarField, ...]) -> Any:
        # Position p is attribute p{p}; a required value missing (a short array) fails the
        # decode, an optional one past the last required position defaults to None, positions
        # we do not map accept anything, and positions past the last mapped one are ignored.
        by_position = {int(spec.source): spec for spec in fields}
        last_required = max((p for p, s in by_position.items() if s.required), default=-1)
        spec_fields: list[Any] = []
        for position in range(max(by_position) + 1):
            spec = by_position.get(position)
            kind: Any = Any if spec is None else _FAST_TYPES[spec.kind]
            if spec is not None and not spec.required:
                kind = kind | None
            name = f"p{position}"
            spec_fields.append((name, kind) if position <= last_required else (name, kind, None))
        return msgspec.defstruct("Row", spec_fields, array_like=True, gc=False)

    def columns(self, body: bytes) -> dict[str, list[Any]] | None:
        """The bars' values by canonical column, or None if the page needs the precise path."""
        try:
            decoded = self._decoder.decode(body)
        except msgspec.DecodeError:  # also ValidationError: a wrong type, a null, a new key
            return None
        records = decoded if self._records_at is None else self._records_at(decoded)
        values = self._read_columns(records)
        for i in self._decimals:
            try:
                values[i] = list(map(float, values[i]))  # float(), as the precise path does
            except ValueError:
                return None
        return {spec.column: column for spec, column in zip(self.fields, values, strict=True)}

    def frame(
        self, body: bytes, *, provider: str, symbol: str, partition: str | None
    ) -> pl.DataFrame | None:
        columns = self.columns(body)
        if columns is None:
            return None
        return frame_from_columns(
            columns, self.fields, provider=provider, symbol=symbol, partition=partition
        )


def canonical_bars(frame: pl.DataFrame, *, symbol: str | pl.Series) -> pl.DataFrame:
    """Add the symbol (one for the page, or a Series: one per row) and any optional column the
    provider does not have, in BAR_SCHEMA order.

    Assembled from Series rather than expressions: this runs once per page, and a handful of
    expression calls cost more than decoding a small page."""
    height = frame.height
    present = set(frame.columns)
    columns = []
    for name, dtype in BAR_SCHEMA.items():
        if name == "symbol" and isinstance(symbol, pl.Series):
            column = symbol.cast(dtype).alias(name)
        elif name == "symbol":
            column = pl.Series(name, [symbol], dtype=dtype).new_from_index(0, height)
        elif name in present:
            column = frame.get_column(name)
            if column.dtype != dtype:
                column = column.cast(dtype)
        else:
            column = pl.Series(name, [None], dtype=dtype).new_from_index(0, height)
        columns.append(column)
    return pl.DataFrame(columns)


def epoch_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def decode_json(body: bytes, *, provider: str, what: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResponseFormatError(
            f"{provider}: {what}: response body is not valid JSON ({exc}); "
            f"{len(body)} bytes received",
            provider=provider,
        ) from None
