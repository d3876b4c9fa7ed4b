"""``PostgresWarehouse`` reads (``COPY ... TO STDOUT`` parsed by polars) give back exactly the
frame written: every dtype the warehouse stores, the values a CSV round trip gets wrong, across
batch boundaries, whatever the database's own display settings.

Needs PostgreSQL like ``tests/postgres`` (``FIN_TEST_POSTGRES_URL``); the module creates a
database of its own and drops it after.
"""

from __future__ import annotations

import random
import secrets
import struct
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import psycopg2
import pytest
from polars.testing import assert_frame_equal
from psycopg2 import sql

from resources.errors import StorageError
from resources.storage.postgres import PostgresWarehouse
from tests.postgres.conftest import throwaway_database, unreachable_reason

NAN = float("nan")
HOUR = "2026-01-05-03:00"
HOUR_START = datetime(2026, 1, 5, 3, tzinfo=UTC)
NEXT_HOUR = "2026-01-05-04:00"

SCHEMA = pl.Schema(
    {
        "symbol": pl.String(),
        "ts": pl.Datetime("us", "UTC"),
        "day": pl.Date(),
        "price": pl.Float64(),
        "count": pl.UInt32(),
        "big": pl.Int64(),
        "note": pl.String(),
        "seen_at": pl.Datetime("us", "UTC"),
    }
)

FLOATS = [
    0.1 + 0.2,
    0.1,
    1 / 3,
    1e-300,
    -0.0,
    0.0,
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,  # the smallest normal
    1.7976931348623157e308,
    -1.7976931348623157e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    123456789.12345679,
    None,
]
STRINGS = [
    "",
    None,
    "a,b",
    'say "hi"',
    '"',
    ",",
    "line\nbreak",
    "crlf\r\n",
    "\r",
    "\n",
    " padded ",
    "NULL",
    "\\N",
    "\\.",
    "#not a comment",
    "tab\there",
    "é€😀",
    '"",""\n,',
]
INTS = [0, -1, 1, 2**63 - 1, -(2**63), None]
UINTS = [0, 1, 2**32 - 1, None]
DAYS = [date(1, 1, 1), date(1970, 1, 1), date(2000, 2, 29), date(9999, 12, 31), None]
INSTANTS = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2026, 1, 5, 3, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 3, 8, 7, 30, 0, 120000, tzinfo=UTC),  # a US DST change, in New York time
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    None,
]


def random_doubles(n: int, *, seed: int) -> list[float]:
    """Doubles from random bit patterns: every exponent, subnormals, NaNs and infinities."""
    rng = random.Random(seed)
    return [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(n)]


def tricky(rows: int, *, start: datetime = HOUR_START, seed: int = 1) -> pl.DataFrame:
    """``rows`` rows of every dtype the warehouse stores, cycling through values a CSV round
    trip can get wrong; sorted by (symbol, ts) as reads return them."""
    floats = FLOATS + random_doubles(max(rows - len(FLOATS), 0), seed=seed)
    data: dict[str, list[Any]] = {
        "symbol": [("AAPL", "BRK.B", "MSFT")[i % 3] for i in range(rows)],
        "ts": [start + timedelta(microseconds=i * 997) for i in range(rows)],
        "day": [DAYS[i % len(DAYS)] for i in range(rows)],
        "price": floats[:rows],
        "count": [UINTS[i % len(UINTS)] for i in range(rows)],
        "big": [INTS[i % len(INTS)] for i in range(rows)],
        "note": [STRINGS[i % len(STRINGS)] for i in range(rows)],
        "seen_at": [INSTANTS[i % len(INSTANTS)] for i in range(rows)],
    }
    return pl.DataFrame(data, schema=SCHEMA).sort("symbol", "ts")


def float_bits(values: pl.Series) -> list[bytes | None]:
    """Each float's 8 bytes: tells -0.0 from 0.0, as == does not. A NaN is any NaN: its
    payload bits cannot survive text (polars writes NaN, PostgreSQL prints NaN)."""
    return [
        None if v is None else struct.pack("<d", NAN if v != v else v) for v in values.to_list()
    ]


def assert_same(got: pl.DataFrame | None, expected: pl.DataFrame) -> None:
    assert got is not None
    assert got.schema == expected.schema
    assert_frame_equal(got, expected, check_exact=True)
    assert float_bits(got["price"]) == float_bits(expected["price"])
    # assert_frame_equal takes null and "" apart, but say it once more where it matters most.
    assert got["note"].to_list() == expected["note"].to_list()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A database whose defaults print values inexactly: a New York TimeZone (2026-01-04
    22:00:00-05) and extra_float_digits -15 (0.3 for 0.30000000000000004). A read relying on
    the session's settings misreads here. (DateStyle is left alone: psycopg2 sets it to ISO on
    every connection it opens.)"""
    reason = unreachable_reason()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    with throwaway_database("fin_assets_read_") as database_url:
        conn = psycopg2.connect(database_url)
        conn.autocommit = True
        name = sql.Identifier(urlsplit(database_url).path.lstrip("/"))
        with conn.cursor() as cur:
            for setting, value in (
                ("TimeZone", "America/New_York"),
                ("extra_float_digits", "-15"),
            ):
                cur.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        name, sql.Identifier(setting), sql.Literal(value)
                    )
                )
        conn.close()
        yield database_url


@pytest.fixture
def schema() -> str:
    return f"t_{secrets.token_hex(4)}"


def test_the_database_prints_values_the_wrong_way_by_default(url: str) -> None:
    """The premise of this module: without the warehouse's own settings, text is wrong."""
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (0.1::float8 + 0.2::float8)::text, '2026-01-05 03:00+00'::timestamptz::text"
        )
        printed = cur.fetchone()
    conn.close()
    assert printed == ("0.3", "2026-01-04 22:00:00-05")


@pytest.mark.parametrize("batch_rows", [1, 7, 50_000])
def test_every_dtype_reads_back_bit_exact_across_batches(
    url: str, schema: str, batch_rows: int
) -> None:
    frame = tricky(500)
    later = tricky(40, start=HOUR_START + timedelta(hours=1), seed=2)
    with PostgresWarehouse(url, schema=schema, batch_rows=batch_rows) as wh:
        wh.replace_partition("prices", HOUR, frame)
        wh.replace_partition("prices", NEXT_HOUR, later)

        assert_same(wh.read_partition("prices", HOUR), frame)
        assert_same(wh.scan("prices", [NEXT_HOUR]).collect(), later)
        both = pl.concat([frame, later]).sort("symbol", "ts")
        assert_same(wh.scan("prices").collect(), both)
        assert_same(wh.scan("prices", [NEXT_HOUR, HOUR]).collect(), both)


def test_a_whole_table_reads_back_bit_exact_in_key_order(url: str, schema: str) -> None:
    frame = tricky(300).sample(fraction=1.0, shuffle=True, seed=3)
    with PostgresWarehouse(url, schema=schema, batch_rows=11) as wh:
        wh.replace_table("facts", frame, key=["symbol", "ts"])

        assert_same(wh.read_table("facts"), frame.sort("symbol", "ts"))


def test_empty_partitions_read_as_empty_frames_of_the_written_dtypes(url: str, schema: str) -> None:
    with PostgresWarehouse(url, schema=schema) as wh:
        wh.replace_partition("prices", HOUR, tricky(0))
        wh.replace_partition("prices", NEXT_HOUR, tricky(0))

        for got in (
            wh.read_partition("prices", HOUR),
            wh.scan("prices", [HOUR]).collect(),
            wh.scan("prices").collect(),
        ):
            assert got is not None
            assert got.height == 0
            assert got.schema == SCHEMA


def test_a_large_partition_of_multiline_strings_reads_back_whole(url: str, schema: str) -> None:
    """Megabytes of quoted newlines and quotes in one batch: polars splits a big CSV between
    threads, and must not split it inside a quoted field."""
    frame = tricky(120_000).with_columns(
        note=pl.format('"{}",\n{}\r\n', pl.col("note").fill_null("x"), pl.int_range(pl.len()))
    )
    for batch_rows in (1_000_000, 50_000):
        with PostgresWarehouse(url, schema=schema, batch_rows=batch_rows) as wh:
            if batch_rows == 1_000_000:
                wh.replace_partition("prices", HOUR, frame)
            assert_same(wh.read_partition("prices", HOUR), frame)


def test_rows_that_do_not_read_back_name_the_partition_and_the_connection_stays_usable(
    url: str, schema: str
) -> None:
    with PostgresWarehouse(url, schema=schema, batch_rows=5) as wh:
        wh.replace_partition("prices", HOUR, tricky(20))
        wh.replace_partition("prices", NEXT_HOUR, tricky(20, start=HOUR_START + timedelta(hours=1)))
        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:  # someone edits the table by hand: a UInt32 goes negative
            cur.execute(
                sql.SQL("UPDATE {} SET count = -1 WHERE ts = %s").format(
                    sql.Identifier(schema, "prices")
                ),
                (HOUR_START + timedelta(microseconds=12 * 997),),
            )
        conn.close()

        with pytest.raises(StorageError, match=r"prices partition 2026-01-05-03:00: .*count UInt"):
            wh.read_partition("prices", HOUR)
        with pytest.raises(StorageError, match=r"prices: scan: .*could not parse `-1`"):
            wh.scan("prices").collect()
        # The failed COPY was read to its end: the same warehouse goes on reading.
        got = wh.read_partition("prices", NEXT_HOUR)
        assert got is not None and got.height == 20
