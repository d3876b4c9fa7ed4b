"""Reading bars back (``read_bars``, ``resources/tables/read.py``) from a small Parquet lake:
which rows come back, which partitions are opened, adjusted values against hand computation,
and every refusal's message. ``tests/postgres/test_read_postgres.py`` reads the same lake's data
from PostgreSQL; ``tests/integration/test_read_cli.py`` through ``fin-assets read``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fin_assets.lib.read import read_bars
from resources.errors import InvalidInputError
from resources.storage.base import Warehouse
from resources.storage.parquet import ParquetWarehouse
from resources.tables.adjustment import ADJUSTMENT_FACTORS_TABLE
from resources.tables.read import scan_bars
from resources.tables.schemas import CANONICAL_SCHEMA, DAILY_SCHEMA, FACTORS_SCHEMA

EQUITIES = "us_equities"
SYMBOLS = ("AAPL", "MSFT", "NVDA")
# Hours with bars (UTC): 2026-01-17..19 (a weekend and a holiday) have none.
HOURS = [
    datetime(2026, 1, 15, 15, tzinfo=UTC),
    datetime(2026, 1, 16, 14, tzinfo=UTC),
    datetime(2026, 1, 16, 15, tzinfo=UTC),
    datetime(2026, 1, 20, 14, tzinfo=UTC),
    datetime(2026, 1, 21, 14, tzinfo=UTC),
    datetime(2026, 1, 22, 14, tzinfo=UTC),  # after the factors' as_of
]
MINUTES = (0, 30, 59)
DAYS = sorted({hour.date() for hour in HOURS})
# Outside every range read below, except the one test that reads it.
CORRUPT_HOUR = "2026-01-23-14:00"
AS_OF = date(2026, 1, 21)
# AAPL: a 2-for-1 split with execution date 2026-01-20 and a dividend factor of 0.98 before it.
SPLIT_BEFORE = 0.5
DIVIDEND_BEFORE = 0.98

SOURCES = {
    EQUITIES: "calendar: XNYS\n  symbols: [AAPL, MSFT, NVDA]",
    "crypto": 'calendar: "24/7"\n  symbols: [BTCUSD]',
}
SOURCE_YAML = """type: fin_assets.lib.components.MarketDataSource
attributes:
  name: {name}
  provider: simulator
  {fields}
  base_url: http://127.0.0.1:8765
"""


def table(base: str) -> str:
    return f"{EQUITIES}__{base}"


def minute_bars(hour: datetime) -> pl.DataFrame:
    """One hour's bars of every symbol: prices that say which symbol and minute they are."""
    rows = []
    for s, symbol in enumerate(SYMBOLS):
        for minute in MINUTES:
            ts = hour + timedelta(minutes=minute)
            price = 100.0 * (s + 1) + ts.day + minute / 100
            rows.append(
                {
                    "symbol": symbol,
                    "ts": ts,
                    "open": price,
                    "high": price + 1,
                    "low": price - 1,
                    "close": price + 0.5,
                    "volume": 1000.0 + minute,
                    "trades": 10 + minute,
                    "vwap": price + 0.25,
                    "provider": "simulator",
                    "ingested_at": datetime(2026, 2, 1, tzinfo=UTC),
                }
            )
    return pl.DataFrame(rows, schema=CANONICAL_SCHEMA)


def daily_bars(day: date) -> pl.DataFrame:
    rows = [
        {
            "symbol": symbol,
            "date": day,
            "open": 100.0 * (s + 1) + day.day,
            "high": 100.0 * (s + 1) + day.day + 2,
            "low": 100.0 * (s + 1) + day.day - 2,
            "close": 100.0 * (s + 1) + day.day + 1,
            "volume": 5000.0,
            "vwap": 100.0 * (s + 1) + day.day + 0.5,
            "trades": 50,
            "bar_count": 3,
        }
        for s, symbol in enumerate(SYMBOLS)
    ]
    return pl.DataFrame(rows, schema=DAILY_SCHEMA)


def factors() -> pl.DataFrame:
    """Every symbol and day up to AS_OF; only AAPL has actions (a split and a dividend)."""
    rows = []
    for symbol in SYMBOLS:
        for day in (d for d in DAYS if d <= AS_OF):
            before = symbol == "AAPL" and day < date(2026, 1, 20)
            split = SPLIT_BEFORE if before else 1.0
            dividend = DIVIDEND_BEFORE if before else 1.0
            rows.append(
                {
                    "symbol": symbol,
                    "date": day,
                    "split_factor": split,
                    "dividend_factor": dividend,
                    "total_factor": split * dividend,
                    "as_of": AS_OF,
                }
            )
    return pl.DataFrame(rows, schema=FACTORS_SCHEMA)


def all_minute_bars() -> pl.DataFrame:
    return pl.concat(minute_bars(hour) for hour in HOURS).sort("symbol", "ts")


def all_daily_bars() -> pl.DataFrame:
    return pl.concat(daily_bars(day) for day in DAYS).sort("symbol", "date")


def write_lake(warehouse: Warehouse, *, with_factors: bool = True) -> None:
    """The test data, written through the warehouse API as the assets write it."""
    for hour in HOURS:
        warehouse.replace_partition(table("core_bars"), f"{hour:%Y-%m-%d-%H}:00", minute_bars(hour))
    for day in DAYS:
        warehouse.replace_partition(table("core_daily_bars"), f"{day}", daily_bars(day))
    if with_factors:
        warehouse.replace_table(table(ADJUSTMENT_FACTORS_TABLE), factors(), key=("symbol", "date"))


def sources_env(tmp_path: Path, warehouse_url: str) -> dict[str, str]:
    """The environment of a deployment declaring us_equities and crypto, reading ``warehouse``."""
    for name, fields in SOURCES.items():
        (tmp_path / "sources" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "sources" / name / "defs.yaml").write_text(
            SOURCE_YAML.format(name=name, fields=fields)
        )
    return {
        "FIN_SOURCES_DIR": str(tmp_path / "sources"),
        "FIN_DATA_DIR": str(tmp_path / "data"),
        "FIN_WAREHOUSE_URL": warehouse_url,
        "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
    }


@pytest.fixture
def lake(tmp_path: Path) -> ParquetWarehouse:
    warehouse = ParquetWarehouse(tmp_path / "lake")
    write_lake(warehouse)
    corrupt = tmp_path / "lake" / table("core_bars") / f"{CORRUPT_HOUR.replace(':', '')}.parquet"
    corrupt.write_bytes(b"not parquet at all")
    return warehouse


@pytest.fixture
def env(tmp_path: Path, lake: ParquetWarehouse) -> dict[str, str]:
    return sources_env(tmp_path, str(lake.root))


def expected_minutes(
    start: datetime, end: datetime, symbols: tuple[str, ...] = SYMBOLS
) -> pl.DataFrame:
    return all_minute_bars().filter(
        pl.col("symbol").is_in(symbols) & (pl.col("ts") >= start) & (pl.col("ts") < end)
    )


def read(env: Mapping[str, str], *args: object, **kwargs: object) -> pl.DataFrame:
    return read_bars(*args, env=env, **kwargs).collect()  # type: ignore[arg-type]


# -- rows -------------------------------------------------------------------------------------
def test_a_range_of_days_reads_every_bar_in_it_sorted_by_symbol_and_time(env: dict) -> None:
    got = read(env, EQUITIES, ["MSFT", "AAPL"], date(2026, 1, 16), date(2026, 1, 21))

    want = expected_minutes(
        datetime(2026, 1, 16, tzinfo=UTC), datetime(2026, 1, 21, tzinfo=UTC), ("AAPL", "MSFT")
    )
    assert_frame_equal(got, want)
    assert got.height == 2 * 3 * 3  # 2 symbols x 3 hours (16th x 2, 20th) x 3 minutes
    assert got["symbol"].unique(maintain_order=True).to_list() == ["AAPL", "MSFT"]


def test_start_is_included_and_end_excluded_to_the_minute(env: dict) -> None:
    start = datetime(2026, 1, 16, 14, 30, tzinfo=UTC)
    end = datetime(2026, 1, 16, 15, 30, tzinfo=UTC)

    got = read(env, EQUITIES, "AAPL", start, end)

    assert got["ts"].to_list() == [
        start,
        datetime(2026, 1, 16, 14, 59, tzinfo=UTC),
        datetime(2026, 1, 16, 15, 0, tzinfo=UTC),
    ]


def test_a_time_in_another_zone_is_the_same_instant(env: dict) -> None:
    start = datetime(2026, 1, 16, 9, 30, tzinfo=ZoneInfo("America/New_York"))  # 14:30 UTC

    got = read(env, EQUITIES, "AAPL", start, datetime(2026, 1, 16, 15, tzinfo=UTC))

    assert got["ts"].to_list() == [
        datetime(2026, 1, 16, 14, 30, tzinfo=UTC),
        datetime(2026, 1, 16, 14, 59, tzinfo=UTC),
    ]


def test_the_symbols_asked_are_the_only_ones_returned(env: dict) -> None:
    got = read(env, EQUITIES, "NVDA", date(2026, 1, 15), date(2026, 1, 23))

    assert_frame_equal(
        got,
        expected_minutes(
            datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 1, 23, tzinfo=UTC), ("NVDA",)
        ),
    )


def test_hours_without_a_partition_have_no_rows_and_are_not_an_error(env: dict) -> None:
    weekend = read(env, EQUITIES, "AAPL", date(2026, 1, 17), date(2026, 1, 20))
    assert weekend.is_empty()
    assert weekend.schema == CANONICAL_SCHEMA

    across = read(env, EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 21))
    assert across.height == 3 * 3


def test_only_the_partitions_in_the_range_are_opened(env: dict) -> None:
    # The corrupt hour is in the lake, past the range: reading never touches it ...
    assert read(env, EQUITIES, "AAPL", date(2026, 1, 15), date(2026, 1, 23)).height == 6 * 3
    # ... and a range that does include it fails, so it would have been noticed.
    with pytest.raises(Exception, match="parquet|Parquet"):
        read(env, EQUITIES, "AAPL", date(2026, 1, 23), date(2026, 1, 24))


def test_daily_bars_are_read_by_date(env: dict) -> None:
    got = read(env, EQUITIES, ["AAPL"], date(2026, 1, 16), date(2026, 1, 21), interval="1d")

    assert got["date"].to_list() == [date(2026, 1, 16), date(2026, 1, 20)]
    assert_frame_equal(
        got,
        all_daily_bars().filter(
            (pl.col("symbol") == "AAPL")
            & pl.col("date").is_in([date(2026, 1, 16), date(2026, 1, 20)])
        ),
    )
    # A day is in the range when its UTC midnight is: the 16th starts before noon of the 16th.
    noon = datetime(2026, 1, 16, 12, tzinfo=UTC)
    later = read(env, EQUITIES, ["AAPL"], noon, date(2026, 1, 21), interval="1d")
    assert later["date"].to_list() == [date(2026, 1, 20)]


# -- adjustment -------------------------------------------------------------------------------
def test_splits_adjust_prices_and_volume_before_the_split_only(env: dict) -> None:
    raw = read(env, EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 21))
    got = read(env, EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 21), adjustment="splits")

    before = raw["ts"].dt.date() < date(2026, 1, 20)
    factor = pl.when(before).then(SPLIT_BEFORE).otherwise(1.0)
    want = raw.with_columns(
        pl.col("open", "high", "low", "close", "vwap") * factor,
        pl.col("volume") / factor,
    )
    assert_frame_equal(got, want)
    # By hand, one bar: AAPL 2026-01-16 14:00, open 100 + 16 = 116, 2-for-1 later.
    first = got.row(0, named=True)
    assert (first["open"], first["close"], first["volume"], first["trades"]) == (
        58.0,
        58.25,
        2000.0,
        10,
    )


def test_splits_and_dividends_multiply_prices_by_the_total_factor(env: dict) -> None:
    got = read(
        env,
        EQUITIES,
        "AAPL",
        datetime(2026, 1, 16, 14, tzinfo=UTC),
        datetime(2026, 1, 16, 14, 1, tzinfo=UTC),
        adjustment="splits_and_dividends",
    ).row(0, named=True)

    assert got["open"] == pytest.approx(116.0 * 0.5 * 0.98)
    assert got["close"] == pytest.approx(116.5 * 0.5 * 0.98)
    assert got["vwap"] == pytest.approx(116.25 * 0.5 * 0.98)
    assert got["volume"] == 2000.0  # volume follows the splits only


def test_a_day_after_the_factors_as_of_is_not_adjusted(env: dict) -> None:
    args = (EQUITIES, "AAPL", date(2026, 1, 22), date(2026, 1, 23))
    raw = read(env, *args)

    assert raw.height == 3
    assert_frame_equal(read(env, *args, adjustment="splits_and_dividends"), raw)


def test_daily_bars_are_adjusted_by_their_day(env: dict) -> None:
    got = read(
        env,
        EQUITIES,
        "AAPL",
        date(2026, 1, 15),
        date(2026, 1, 22),
        interval="1d",
        adjustment="splits",
    )

    assert got["close"].to_list() == [116.0 * 0.5, 117.0 * 0.5, 121.0, 122.0]
    assert got["volume"].to_list() == [10000.0, 10000.0, 5000.0, 5000.0]


def test_the_layer_reads_any_warehouse_given_the_table_names(lake: ParquetWarehouse) -> None:
    got = scan_bars(
        lake,
        table=table,
        symbols=["MSFT"],
        start=date(2026, 1, 20),
        end=date(2026, 1, 21),
    ).collect()

    assert got.height == 3
    assert got["symbol"].unique(maintain_order=True).to_list() == ["MSFT"]


# -- refused ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            ("nasdaq", "AAPL", date(2026, 1, 16), date(2026, 1, 21)),
            {},
            "unknown source 'nasdaq': the declared sources are crypto, us_equities",
        ),
        (
            (None, "AAPL", date(2026, 1, 16), date(2026, 1, 21)),
            {},
            "no source named: name one of the declared sources (crypto, us_equities)",
        ),
        (
            (EQUITIES, "AAPL,TSLA", date(2026, 1, 16), date(2026, 1, 21)),
            {},
            "symbol 'TSLA' is not held by source us_equities (its symbols: AAPL, MSFT, NVDA)",
        ),
        (
            (EQUITIES, " , ", date(2026, 1, 16), date(2026, 1, 21)),
            {},
            "no symbols given: name at least one of source us_equities's (AAPL, MSFT, NVDA)",
        ),
        (
            (EQUITIES, "AAPL", date(2026, 1, 21), date(2026, 1, 16)),
            {},
            "reversed range: start 2026-01-21T00:00:00+00:00 is not before end "
            "2026-01-16T00:00:00+00:00",
        ),
        (
            (EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 16)),
            {},
            "empty range: start 2026-01-16T00:00:00+00:00 is not before end "
            "2026-01-16T00:00:00+00:00",
        ),
        (
            (EQUITIES, "AAPL", datetime(2026, 1, 16, 14), date(2026, 1, 21)),
            {},
            "start 2026-01-16T14:00:00 has no time zone",
        ),
        (
            (EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 21)),
            {"interval": "2h"},
            "unknown interval '2h': available are 1m, 5m, 15m, 1h, 1d",
        ),
        (
            (EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 21)),
            {"adjustment": "dividends"},
            "unknown adjustment 'dividends': expected one of none, splits, splits_and_dividends",
        ),
        (
            ("crypto", "BTCUSD", date(2026, 1, 16), date(2026, 1, 21)),
            {"adjustment": "splits"},
            "adjustment 'splits': source crypto has no corporate actions",
        ),
    ],
)
def test_a_refused_request_says_what_was_wrong(
    env: dict, args: tuple, kwargs: dict, message: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        read_bars(*args, env=env, **kwargs)
    assert message in str(refused.value)


def test_an_adjustment_before_the_factors_exist_names_the_asset_to_materialize(
    tmp_path: Path,
) -> None:
    warehouse = ParquetWarehouse(tmp_path / "bare")
    write_lake(warehouse, with_factors=False)
    env = sources_env(tmp_path, str(warehouse.root))

    assert read(env, EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 21)).height == 9
    with pytest.raises(InvalidInputError) as refused:
        read_bars(
            EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 21), adjustment="splits", env=env
        )
    assert str(refused.value) == (
        "adjustment 'splits' needs the adjustment factors, and us_equities__core_adj_factors "
        "has never been written: materialize core/us_equities/adjustment_factors"
    )
