"""Parsing simulator bodies into canonical bars, and building the daily tables from them."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.errors import DataValidationError, ResponseFormatError, SchemaError
from resources.providers.decoding import BAR_SCHEMA
from resources.raw.ingest import build_manifest
from resources.raw.snapshots import SnapshotStore
from resources.simulator.adapter import SimulatorAdapter
from resources.simulator.data import generate_bars
from resources.tables.core import BuildStats, bars_from_manifest, normalize_bars
from resources.tables.daily import MINUTES_PER_YEAR, aggregate_daily, daily_returns
from resources.tables.schemas import CANONICAL_SCHEMA, DAILY_SCHEMA, RETURNS_SCHEMA
from resources.windows import PartitionWindow
from tests.helpers import SIMULATOR_FEED

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
PARTITION = "2026-01-05-03:00"
ADAPTER = SimulatorAdapter()


def envelope(bars: list[dict], start: datetime = T0, end: datetime | None = None) -> bytes:
    """A body shaped like the simulator's /v1/bars page."""
    end = end or start + timedelta(minutes=len(bars))
    payload = {
        "symbol": "AAPL",
        "interval": "1m",
        "window": {
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "bars": bars,
        "next_cursor": None,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def sim_bars(n: int = 5, start: datetime = T0) -> list[dict]:
    return generate_bars("AAPL", start, start + timedelta(minutes=n), seed=0)


def parse(bars: list[dict], symbol: str = "AAPL"):
    return ADAPTER.parse_bars(envelope(bars), symbol=symbol, partition=PARTITION)


# -- parse_bars ------------------------------------------------------------------------------


def test_parse_gives_canonical_dtypes_and_the_provider_values() -> None:
    raw = sim_bars(5)
    parsed = parse(raw)
    frame = parsed.frame

    assert frame.schema == pl.Schema(BAR_SCHEMA)
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    assert frame.height == 5
    assert parsed.unknown_fields == {}
    for row, bar in zip(frame.iter_rows(named=True), raw, strict=True):
        assert row["symbol"] == "AAPL"
        assert row["ts"] == datetime.strptime(bar["t"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert (row["open"], row["high"], row["low"], row["close"]) == (
            bar["o"],
            bar["h"],
            bar["l"],
            bar["c"],
        )
        assert row["volume"] == bar["v"]
        assert row["trades"] == bar["n"]
        assert row["vwap"] == bar["vw"]
    assert frame["ts"].to_list() == [T0 + timedelta(minutes=i) for i in range(5)]


def test_parse_of_a_handwritten_body() -> None:
    body = (
        b'{"bars":[{"t":"2026-01-05T03:00:00Z","o":10,"h":12.5,"l":9.5,"c":11,"v":0,'
        b'"n":0,"vw":10.75},{"t":"2026-01-05T03:01:00Z","o":11,"h":11,"l":11,"c":11,"v":3.5}]}'
    )
    frame = ADAPTER.parse_bars(body, symbol="BRK.B").frame
    assert frame.to_dicts() == [
        {
            "symbol": "BRK.B",
            "ts": T0,
            "open": 10.0,
            "high": 12.5,
            "low": 9.5,
            "close": 11.0,
            "volume": 0.0,
            "trades": 0,
            "vwap": 10.75,
        },
        {
            "symbol": "BRK.B",
            "ts": T0 + timedelta(minutes=1),
            "open": 11.0,
            "high": 11.0,
            "low": 11.0,
            "close": 11.0,
            "volume": 3.5,
            "trades": None,  # optional fields may be absent
            "vwap": None,
        },
    ]


def test_parse_of_an_empty_page_keeps_the_schema() -> None:
    frame = parse([]).frame
    assert frame.height == 0
    assert frame.schema == pl.Schema(BAR_SCHEMA)


def test_missing_required_field_names_provider_symbol_partition_and_field() -> None:
    raw = sim_bars(3)
    del raw[1]["c"]
    with pytest.raises(SchemaError) as info:
        parse(raw)
    message = str(info.value)
    assert "simulator" in message
    assert "AAPL" in message
    assert PARTITION in message
    assert "'c'" in message
    assert "bar 1" in message
    assert info.value.field == "c"
    assert (info.value.provider, info.value.symbol, info.value.partition) == (
        "simulator",
        "AAPL",
        PARTITION,
    )


def test_renamed_field_is_reported_as_the_missing_one() -> None:
    raw = sim_bars(2)
    for bar in raw:
        bar["close"] = bar.pop("c")
    with pytest.raises(SchemaError, match="field 'c' missing in bar 0") as info:
        parse(raw)
    assert info.value.field == "c"


def test_volume_as_a_string_is_a_schema_error() -> None:
    raw = sim_bars(3)
    raw[2]["v"] = str(raw[2]["v"])
    with pytest.raises(SchemaError) as info:
        parse(raw)
    assert info.value.field == "v"
    assert "'v' in bar 2 is str" in str(info.value)
    assert "expected a number" in str(info.value)
    assert PARTITION in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("o", True), ("h", None), ("n", 2.5), ("t", 1767582000), ("vw", "10.0")],
)
def test_wrong_types_are_refused(field: str, value: object) -> None:
    raw = sim_bars(1)
    raw[0][field] = value
    with pytest.raises(SchemaError) as info:
        parse(raw)
    assert info.value.field == field


def test_a_timestamp_in_another_format_is_refused() -> None:
    raw = sim_bars(1)
    raw[0]["t"] = "2026-01-05 03:00:00"
    with pytest.raises(SchemaError, match="field 't' in bar 0 is not a timestamp") as info:
        parse(raw)
    assert info.value.field == "t"


def test_unknown_fields_are_counted_not_fatal() -> None:
    raw = sim_bars(3)
    raw[0]["x"] = 1
    raw[2]["x"] = 2
    raw[2]["exchange"] = "XNAS"
    parsed = parse(raw)
    assert parsed.unknown_fields == {"x": 2, "exchange": 1}
    assert parsed.frame.columns == list(BAR_SCHEMA)
    assert parsed.frame.height == 3


@pytest.mark.parametrize("body", [b'{"bars": {"t": 1}}', b'{"data": []}', b"[]", b'{"bars": [1]}'])
def test_bodies_without_a_bar_list_are_schema_errors(body: bytes) -> None:
    with pytest.raises(SchemaError, match="simulator: symbol AAPL, partition 2026-01-05-03:00"):
        ADAPTER.parse_bars(body, symbol="AAPL", partition=PARTITION)


def test_a_body_that_is_not_json_is_a_format_error() -> None:
    with pytest.raises(ResponseFormatError, match="not valid JSON") as info:
        ADAPTER.parse_bars(b'{"bars": [', symbol="AAPL", partition=PARTITION)
    assert not isinstance(info.value, SchemaError)
    assert "AAPL" in str(info.value)


# -- normalize_bars ---------------------------------------------------------------------------


def canonical(rows: list[dict], *, ingested_at: datetime) -> pl.DataFrame:
    full = [
        {
            "symbol": "AAPL",
            "trades": 1,
            "vwap": None,
            "provider": "simulator",
            "ingested_at": ingested_at,
            **row,
        }
        for row in rows
    ]
    return pl.DataFrame(full, schema=CANONICAL_SCHEMA)


def ohlc(minute: int, price: float, **overrides: float) -> dict:
    row = {
        "ts": T0 + timedelta(minutes=minute),
        "open": price,
        "high": price + 1,
        "low": price - 1,
        "close": price,
        "volume": 10.0,
    }
    return {**row, **overrides}


OLD_FETCH = datetime(2026, 1, 6, 0, 0, tzinfo=UTC)
NEW_FETCH = datetime(2026, 1, 6, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize("newest_first", [True, False])
def test_duplicates_keep_the_newest_fetch(newest_first: bool) -> None:
    old = canonical([ohlc(0, 100.0), ohlc(1, 101.0)], ingested_at=OLD_FETCH)
    new = canonical([ohlc(1, 105.0), ohlc(2, 106.0)], ingested_at=NEW_FETCH)
    stats = BuildStats()

    frames = [new, old] if newest_first else [old, new]
    result = normalize_bars(frames, partition=PARTITION, stats=stats)

    assert result.select("ts", "close", "ingested_at").rows() == [
        (T0, 100.0, OLD_FETCH),
        (T0 + timedelta(minutes=1), 105.0, NEW_FETCH),
        (T0 + timedelta(minutes=2), 106.0, NEW_FETCH),
    ]
    assert stats.duplicates_dropped == 1
    assert result.schema == pl.Schema(CANONICAL_SCHEMA)


def test_same_minute_of_different_symbols_is_not_a_duplicate() -> None:
    aapl = canonical([ohlc(0, 100.0)], ingested_at=OLD_FETCH)
    msft = canonical([{**ohlc(0, 300.0), "symbol": "MSFT"}], ingested_at=OLD_FETCH)
    result = normalize_bars([msft, aapl], partition=PARTITION)
    assert result.select("symbol", "close").rows() == [("AAPL", 100.0), ("MSFT", 300.0)]


def test_no_frames_give_an_empty_canonical_table() -> None:
    result = normalize_bars([], partition=PARTITION)
    assert result.height == 0
    assert result.schema == pl.Schema(CANONICAL_SCHEMA)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"high": 100.5, "close": 101.0, "open": 100.0}, "high below open/close"),
        ({"low": 102.0}, "low above open/close"),
        ({"low": 0.0}, "non-positive price"),
        ({"open": -1.0, "low": -2.0}, "non-positive price"),
        ({"volume": -5.0}, "negative volume"),
        ({"volume": float("nan")}, "missing or non-finite value"),
        ({"close": None}, "missing or non-finite value"),
        ({"high": float("inf")}, "missing or non-finite value"),
    ],
)
def test_ohlc_violations_name_symbol_and_timestamp(overrides: dict, problem: str) -> None:
    rows = [ohlc(0, 100.0), ohlc(1, 100.0, **overrides), ohlc(2, 100.0)]
    with pytest.raises(DataValidationError) as info:
        normalize_bars([canonical(rows, ingested_at=OLD_FETCH)], partition=PARTITION)
    message = str(info.value)
    assert f"partition {PARTITION}: 1 bar(s)" in message
    assert f"AAPL 2026-01-05T03:01Z ({problem}" in message
    assert "03:00Z" not in message and "03:02Z" not in message


def test_a_flat_bar_is_valid() -> None:
    rows = [ohlc(0, 100.0, high=100.0, low=100.0, volume=0.0)]
    assert normalize_bars([canonical(rows, ingested_at=OLD_FETCH)], partition=PARTITION).height == 1


# -- daily tables ----------------------------------------------------------------------------

DAY = datetime(2026, 1, 5, tzinfo=UTC)


def three_bars() -> pl.DataFrame:
    """Three AAPL minutes, given out of order, plus one MSFT minute."""
    rows = [
        {
            "symbol": "AAPL",
            "ts": T0 + timedelta(minutes=2),
            "open": 103.0,
            "high": 103.5,
            "low": 98.0,
            "close": 99.0,
            "volume": 30.0,
            "trades": 5,
            "vwap": 100.0,
        },
        {
            "symbol": "MSFT",
            "ts": T0,
            "open": 400.0,
            "high": 401.0,
            "low": 399.0,
            "close": 400.5,
            "volume": 0.0,
            "trades": 0,
            "vwap": None,
        },
        {
            "symbol": "AAPL",
            "ts": T0,
            "open": 100.0,
            "high": 102.0,
            "low": 99.0,
            "close": 101.0,
            "volume": 10.0,
            "trades": 2,
            "vwap": 100.5,
        },
        {
            "symbol": "AAPL",
            "ts": T0 + timedelta(minutes=1),
            "open": 101.0,
            "high": 104.0,
            "low": 100.0,
            "close": 103.0,
            "volume": 20.0,
            "trades": 3,
            "vwap": None,  # no vwap: the typical price (104 + 100 + 103) / 3 stands in
        },
    ]
    return pl.DataFrame(rows, schema=BAR_SCHEMA)


def test_aggregate_daily_hand_computed() -> None:
    daily = aggregate_daily(three_bars(), day=DAY)

    assert daily.schema == pl.Schema(DAILY_SCHEMA)
    assert daily["symbol"].to_list() == ["AAPL", "MSFT"]
    aapl = daily.row(0, named=True)
    assert aapl["date"] == DAY.date()
    assert (aapl["open"], aapl["high"], aapl["low"], aapl["close"]) == (100.0, 104.0, 98.0, 99.0)
    assert aapl["volume"] == 60.0
    assert aapl["trades"] == 10
    assert aapl["bar_count"] == 3
    # (100.5 * 10 + 307/3 * 20 + 100 * 30) / 60 = 18155 / 180
    assert aapl["vwap"] == pytest.approx(18155 / 180, rel=1e-12)
    msft = daily.row(1, named=True)
    assert msft["bar_count"] == 1
    assert msft["vwap"] is None  # no volume, no volume-weighted price


def test_aggregate_daily_accepts_a_lazy_frame() -> None:
    assert_frame_equal(
        aggregate_daily(three_bars().lazy(), day=DAY), aggregate_daily(three_bars(), day=DAY)
    )


def test_daily_returns_hand_computed() -> None:
    returns = daily_returns(three_bars(), day=DAY)

    assert returns.schema == pl.Schema(RETURNS_SCHEMA)
    aapl = returns.filter(pl.col("symbol") == "AAPL").row(0, named=True)
    assert (aapl["open"], aapl["close"], aapl["minutes"]) == (100.0, 99.0, 3)
    assert aapl["return_oc"] == pytest.approx(-0.01, rel=1e-12)
    assert aapl["log_return_oc"] == pytest.approx(math.log(0.99), rel=1e-12)
    rv = math.sqrt(math.log(103 / 101) ** 2 + math.log(99 / 103) ** 2)
    assert aapl["realized_vol"] == pytest.approx(rv, rel=1e-12)
    assert aapl["realized_vol_annualized"] == pytest.approx(
        rv * math.sqrt(MINUTES_PER_YEAR / 3), rel=1e-12
    )
    msft = returns.filter(pl.col("symbol") == "MSFT").row(0, named=True)
    assert msft["return_oc"] == pytest.approx(0.00125, rel=1e-12)
    assert msft["realized_vol"] == 0.0  # a single minute has no minute-to-minute return


# -- from snapshots to bars ------------------------------------------------------------------


def test_bars_from_manifest_keeps_the_window_and_stamps_provider_and_fetch_time(
    tmp_path: Path,
) -> None:
    store = SnapshotStore(tmp_path)
    raw = sim_bars(90, start=T0 - timedelta(minutes=15))  # 02:45 .. 04:14
    fetched_at = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)
    body = envelope(raw, start=T0 - timedelta(minutes=15))
    ref = store.write(
        feed=SIMULATOR_FEED,
        dataset="bars_1m",
        symbol="AAPL",
        start=T0 - timedelta(minutes=15),
        end=T0 + timedelta(minutes=75),
        body=body,
        meta={"fetched_at": fetched_at.isoformat()},
    )
    end = T0 + timedelta(hours=1)
    manifest = build_manifest(
        store,
        feed=SIMULATOR_FEED,
        symbols=["AAPL"],
        partition=PartitionWindow(PARTITION, T0, end),
    )
    assert manifest.to_json()["symbols"] == {"AAPL": [ref.as_manifest_entry()]}
    stats = BuildStats()

    bars = bars_from_manifest(
        store, ADAPTER, manifest, partition=PARTITION, start=T0, end=end, stats=stats
    )

    assert bars.height == 60
    assert bars["ts"].min() == T0
    assert bars["ts"].max() == end - timedelta(minutes=1)
    assert bars["provider"].unique().to_list() == ["simulator"]
    assert bars["ingested_at"].unique().to_list() == [fetched_at]
    assert bars["close"].to_list() == [b["c"] for b in raw[15:75]]
    assert (stats.snapshots_read, stats.bytes_read, stats.duplicates_dropped) == (1, len(body), 0)
