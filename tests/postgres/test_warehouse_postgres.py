"""PostgresWarehouse against a real PostgreSQL: what lands in the tables, what survives a crash,
what two writers of one partition leave behind."""

from __future__ import annotations

import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.errors import DataValidationError, InvalidInputError, StorageError
from resources.storage.base import WHOLE_TABLE, WriteResult
from resources.storage.parquet import ParquetWarehouse
from resources.storage.postgres import PostgresWarehouse
from resources.storage.warehouse import warehouse_from_url
from resources.tables.schemas import CANONICAL_SCHEMA, DAILY_SCHEMA, RETURNS_SCHEMA
from tests.helpers import PROJECT_ROOT, ExecutemanyPostgresWarehouse, wait_for
from tests.unit.test_storage import FACTORS_KEY, FACTORS_SCHEMA, factors

HOUR = "2026-01-05-03:00"
HOUR_START = datetime(2026, 1, 5, 3, tzinfo=UTC)


@pytest.fixture
def wh(pg_url: str, pg_schema: str) -> Iterator[PostgresWarehouse]:
    with PostgresWarehouse(pg_url, schema=pg_schema) as warehouse:
        yield warehouse


def query(conn: Any, statement: str, *params: object) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return list(cur.fetchall())


def random_doubles(n: int, *, seed: int) -> list[float]:
    """Doubles from random bit patterns: every exponent, subnormals, NaN and infinities."""
    rng = random.Random(seed)
    return [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(n)]


def bars(
    version: int,
    rows: int,
    *,
    start: datetime = HOUR_START,
    symbols: tuple[str, ...] = ("AAPL", "BRK.B", "MSFT"),
) -> pl.DataFrame:
    """A core_bars frame (CANONICAL_SCHEMA), sorted by (symbol, ts) as reads return it."""
    data: dict[str, list[Any]] = {name: [] for name in CANONICAL_SCHEMA}
    for s, symbol in enumerate(symbols):
        for i in range(rows):
            price = 100.0 + version + s + i / 7
            data["symbol"].append(symbol)
            data["ts"].append(start + timedelta(seconds=i * 3600 / rows, microseconds=i % 999))
            data["open"].append(price)
            data["high"].append(price + 0.5)
            data["low"].append(price - 0.5)
            data["close"].append(price + 0.25)
            data["volume"].append(1000.0 * version + i)
            data["trades"].append(None if i % 5 == 0 else version * 10 + i)
            data["vwap"].append(None if i % 4 == 0 else price + 0.1)
            data["provider"].append(f"v{version}")
            data["ingested_at"].append(datetime(2026, 1, 5, 4, 0, 1, 123456, tzinfo=UTC))
    return pl.DataFrame(data, schema=CANONICAL_SCHEMA).sort("symbol", "ts")


# -- round trips ----------------------------------------------------------------------------


def test_round_trip_gives_back_the_same_frame_and_dtypes(
    pg_url: str, pg_schema: str, db: Any
) -> None:
    ts = [HOUR_START + timedelta(seconds=11 * i, microseconds=7 * i + 1) for i in range(300)]
    doubles = random_doubles(300, seed=5)
    frame = pl.DataFrame(
        {
            "symbol": ["AAPL"] * 150 + ["BRK.B"] * 150,
            "ts": ts[:150] + ts[:150],
            "open": [187.1234, 0.1 + 0.2, 1e-300, 5e22, 123456789.000001] + doubles[5:],
            "high": [0.1 + 0.2] * 300,
            "low": [float(i) / 3 for i in range(300)],
            "close": [187.1234] * 300,
            "volume": doubles,
            "trades": [None, 0, -1, 2**62] + list(range(296)),
            "vwap": [None, 187.1234, None] + [0.1 + 0.2] * 297,
            # quotes, commas, newlines and an empty string (which must not come back null)
            "provider": ['quote " and, comma', "line\nbreak", "", None] + ["sim"] * 296,
            "ingested_at": [datetime(2026, 1, 5, 4, 0, 1, 999999, tzinfo=UTC)] * 300,
        },
        schema=CANONICAL_SCHEMA,
    )
    wh = PostgresWarehouse(pg_url, schema=pg_schema, batch_rows=7)  # many fetch batches

    result = wh.replace_partition("core_bars", HOUR, frame)
    back = wh.read_partition("core_bars", HOUR)

    assert (result.rows, result.partition_key) == (300, HOUR)
    assert result.bytes > 0
    assert back is not None
    assert back.schema == CANONICAL_SCHEMA
    assert back.equals(frame)
    assert back["provider"].to_list()[:4] == ['quote " and, comma', "line\nbreak", "", None]
    # What a SQL user sees: exact doubles, UTC instants with microseconds, NULLs as NULL.
    row = query(
        db,
        f"SELECT open, high, ts, trades, vwap, partition_start FROM {pg_schema}.core_bars"
        " WHERE symbol = 'AAPL' AND ts = %s",
        ts[0],
    )
    assert row == [(187.1234, 0.30000000000000004, ts[0], None, None, HOUR_START)]
    assert query(db, f"SELECT count(*) FROM {pg_schema}.core_bars") == [(300,)]


def test_daily_tables_round_trip_with_unsigned_counts(wh: PostgresWarehouse) -> None:
    daily = pl.DataFrame(
        {
            "symbol": ["AAPL", "MSFT"],
            "date": [date(2026, 1, 5)] * 2,
            "open": [187.1234, 410.5],
            "high": [190.0, 415.25],
            "low": [186.0, 409.0],
            "close": [189.5, 0.1 + 0.2],
            "volume": [1e6, 2.5e6],
            "vwap": [188.0, None],
            "trades": [1440, None],
            "bar_count": [1440, 1439],
        },
        schema=DAILY_SCHEMA,
    )
    returns = pl.DataFrame(
        {
            "symbol": ["AAPL"],
            "date": [date(2026, 1, 6)],
            "open": [1.0],
            "close": [1.1],
            "return_oc": [0.1 + 0.2],
            "log_return_oc": [-0.0],
            "realized_vol": [None],
            "realized_vol_annualized": [float("inf")],
            "minutes": [2**32 - 1],
        },
        schema=RETURNS_SCHEMA,
    )
    wh.replace_partition("core_daily_bars", "2026-01-05", daily)
    wh.replace_partition("core_daily_returns", "2026-01-06", returns)

    daily_back = wh.read_partition("core_daily_bars", "2026-01-05")
    returns_back = wh.read_partition("core_daily_returns", "2026-01-06")
    assert daily_back is not None and returns_back is not None
    assert daily_back.schema == DAILY_SCHEMA
    assert returns_back.schema == RETURNS_SCHEMA
    assert daily_back.equals(daily)
    assert returns_back.equals(returns)
    assert wh.partition_keys("core_daily_returns") == ["2026-01-06"]


def test_executemany_baseline_stores_the_same_rows(pg_url: str, pg_schema: str) -> None:
    frame = bars(1, 20)
    with ExecutemanyPostgresWarehouse(pg_url, schema=pg_schema) as wh:
        wh.replace_partition("core_bars", HOUR, bars(0, 3))
        result = wh.replace_partition_executemany("core_bars", HOUR, frame)
        back = wh.read_partition("core_bars", HOUR)
    assert (result.rows, result.bytes) == (60, 0)
    assert back is not None and back.equals(frame)


# -- replacing partitions -------------------------------------------------------------------


def test_a_partition_written_three_times_holds_one_copy_and_neighbours_stay(
    wh: PostgresWarehouse, db: Any, pg_schema: str
) -> None:
    before = bars(1, 10, start=HOUR_START - timedelta(hours=1))
    after = bars(1, 10, start=HOUR_START + timedelta(hours=1))
    wh.replace_partition("core_bars", "2026-01-05-02:00", before)
    wh.replace_partition("core_bars", "2026-01-05-04:00", after)

    frame = bars(2, 20)
    for _ in range(3):
        wh.replace_partition("core_bars", HOUR, frame)
        back = wh.read_partition("core_bars", HOUR)
        assert back is not None and back.equals(frame)
        counts = query(
            db,
            f"SELECT partition_start, count(*) FROM {pg_schema}.core_bars GROUP BY 1 ORDER BY 1",
        )
        assert [n for _, n in counts] == [30, 60, 30]

    smaller = bars(3, 4, symbols=("NVDA",))  # a re-run that finds fewer rows replaces too
    wh.replace_partition("core_bars", HOUR, smaller)
    assert wh.read_partition("core_bars", HOUR).equals(smaller)  # type: ignore[union-attr]
    assert wh.read_partition("core_bars", "2026-01-05-02:00").equals(before)  # type: ignore[union-attr]
    assert wh.read_partition("core_bars", "2026-01-05-04:00").equals(after)  # type: ignore[union-attr]
    assert wh.partition_keys("core_bars") == ["2026-01-05-02:00", HOUR, "2026-01-05-04:00"]


def test_scan_reads_requested_partitions_and_names_missing_ones(wh: PostgresWarehouse) -> None:
    first, second = bars(1, 2), bars(2, 3, start=HOUR_START + timedelta(hours=1))
    wh.replace_partition("core_bars", HOUR, first)
    wh.replace_partition("core_bars", "2026-01-05-04:00", second)
    empty = pl.DataFrame(schema=CANONICAL_SCHEMA)
    wh.replace_partition("core_bars", "2026-01-05-05:00", empty)  # an hour without bars

    assert wh.scan("core_bars", ["2026-01-05-04:00"]).collect().equals(second)
    everything = wh.scan("core_bars").collect()
    assert everything.equals(pl.concat([first, second]).sort("symbol", "ts"))
    assert wh.partition_keys("core_bars") == [HOUR, "2026-01-05-04:00", "2026-01-05-05:00"]
    assert wh.read_partition("core_bars", "2026-01-05-05:00").equals(empty)  # type: ignore[union-attr]
    assert wh.read_partition("core_bars", "2026-01-05-06:00") is None

    with pytest.raises(StorageError) as info:
        wh.scan("core_bars", [HOUR, "2026-01-05-07:00"])
    assert "2026-01-05-07:00" in str(info.value)
    assert HOUR not in str(info.value)
    with pytest.raises(StorageError, match="no partitions"):
        wh.scan("never_written")
    assert wh.partition_keys("never_written") == []
    assert wh.read_partition("never_written", HOUR) is None


# -- the table itself -----------------------------------------------------------------------


def test_table_has_its_primary_key_and_a_timestamptz_partition_column(
    wh: PostgresWarehouse, db: Any, pg_schema: str
) -> None:
    wh.replace_partition("core_bars", HOUR, bars(1, 2))
    wh.replace_partition("core_daily_bars", "2026-01-05", pl.DataFrame(schema=DAILY_SCHEMA))

    def primary_key(table: str) -> list[str]:
        rows = query(
            db,
            "SELECT a.attname FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary"
            " ORDER BY array_position(i.indkey, a.attnum)",
            f"{pg_schema}.{table}",
        )
        return [name for (name,) in rows]

    types = dict(
        query(
            db,
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'core_bars'",
            pg_schema,
        )
    )
    assert primary_key("core_bars") == ["symbol", "ts"]
    assert primary_key("core_daily_bars") == ["symbol", "date"]
    assert types == {
        "symbol": "text",
        "ts": "timestamp with time zone",
        "open": "double precision",
        "high": "double precision",
        "low": "double precision",
        "close": "double precision",
        "volume": "double precision",
        "trades": "bigint",
        "vwap": "double precision",
        "provider": "text",
        "ingested_at": "timestamp with time zone",
        "partition_start": "timestamp with time zone",
    }
    nullable = query(
        db,
        "SELECT is_nullable FROM information_schema.columns WHERE table_schema = %s"
        " AND table_name = 'core_bars' AND column_name = 'partition_start'",
        pg_schema,
    )
    assert nullable == [("NO",)]
    indexes = query(db, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s", pg_schema)
    assert any("core_bars USING btree (partition_start)" in d for (d,) in indexes)


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("Bars", HOUR),
        ("bars;drop table x", HOUR),
        ('bars"', HOUR),
        ("fin_assets_tables", HOUR),
        ("bars", "2026-01-05-03:30"),
        ("bars", "2026-13-01"),
        ("bars", "2026-01-05'; --"),
    ],
)
def test_invalid_table_or_key_is_refused_before_any_sql(
    wh: PostgresWarehouse, db: Any, pg_schema: str, table: str, key: str
) -> None:
    with pytest.raises(InvalidInputError):
        wh.replace_partition(table, key, bars(1, 2))
    with pytest.raises(InvalidInputError):
        wh.read_partition(table, key)
    assert query(db, "SELECT 1 FROM pg_namespace WHERE nspname = %s", pg_schema) == []


def test_frames_that_do_not_fit_the_table_are_refused_and_leave_it_alone(
    wh: PostgresWarehouse,
) -> None:
    frame = bars(1, 5)
    wh.replace_partition("core_bars", HOUR, frame)

    outside = bars(2, 5, start=HOUR_START + timedelta(minutes=30))  # runs into 04:00
    with pytest.raises(DataValidationError, match="outside the partition window"):
        wh.replace_partition("core_bars", HOUR, outside)
    with pytest.raises(DataValidationError, match="share their"):
        wh.replace_partition("core_bars", HOUR, pl.concat([bars(2, 2), bars(2, 2)]))
    with pytest.raises(StorageError, match="differ from the table's"):
        wh.replace_partition("core_bars", HOUR, bars(2, 5).drop("vwap"))
    with pytest.raises(InvalidInputError, match="partitioned hourly"):
        wh.replace_partition("core_bars", "2026-01-05", bars(2, 5))
    with pytest.raises(InvalidInputError, match="dtype"):
        wh.replace_partition("other", HOUR, bars(2, 5).with_columns(pl.col("trades").cast(pl.Int8)))

    assert wh.read_partition("core_bars", HOUR).equals(frame)  # type: ignore[union-attr]


def test_location_and_errors_never_show_the_password() -> None:
    wh = PostgresWarehouse("postgresql://fin:s3cret@127.0.0.1:1/db?password=s3cret&sslmode=disable")
    assert wh.location == "postgresql://fin@127.0.0.1:1/db?sslmode=disable"
    with pytest.raises(StorageError) as info:
        wh.partition_keys("core_bars")  # nothing listens on port 1
    assert "cannot connect" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_warehouse_from_url_picks_postgres_for_both_schemes() -> None:
    for url in ("postgresql://fin@db.internal:5432/market", "postgres://fin@db.internal/market"):
        wh = warehouse_from_url(url)
        assert isinstance(wh, PostgresWarehouse)
        assert wh.location == url
    with pytest.raises(InvalidInputError, match="postgresql://"):
        warehouse_from_url("postgresql+psycopg2://fin@db.internal/market")


# -- crash safety and concurrent writers ----------------------------------------------------

CHILD = """
import sys, time
from datetime import UTC, datetime, timedelta
import polars as pl
from resources.tables.schemas import CANONICAL_SCHEMA
from resources.storage.postgres import PostgresWarehouse

class Stalled:
    '''Hands COPY the first chunk of the CSV, then says so and blocks forever.'''
    def __init__(self, payload):
        self.payload, self.calls = payload, 0
    def read(self, size=-1):
        self.calls += 1
        if self.calls == 1:
            return self.payload[:size]
        print("mid-copy", flush=True)
        time.sleep(600)

class StalledWarehouse(PostgresWarehouse):
    def _copy_source(self, payload):
        return Stalled(payload)

start = datetime(2026, 1, 5, 3, tzinfo=UTC)
n = 5000  # about 600 kB of CSV: many COPY chunks
frame = pl.DataFrame(
    {
        "symbol": ["ZZZZ"] * n,
        "ts": [start + timedelta(microseconds=i * 100) for i in range(n)],
        **{c: [1.5] * n for c in ("open", "high", "low", "close", "volume", "vwap")},
        "trades": list(range(n)),
        "provider": ["killed"] * n,
        "ingested_at": [start] * n,
    },
    schema=CANONICAL_SCHEMA,
)
StalledWarehouse(sys.argv[1], schema=sys.argv[2]).replace_partition("core_bars", sys.argv[3], frame)
print("finished", flush=True)
"""


def advisory_locks(db: Any) -> list[tuple[Any, ...]]:
    return query(
        db,
        "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )


def test_a_writer_killed_mid_copy_leaves_the_previous_rows_and_no_lock(
    wh: PostgresWarehouse, db: Any, pg_url: str, pg_schema: str
) -> None:
    previous = bars(1, 10)
    wh.replace_partition("core_bars", HOUR, previous)

    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, pg_url, pg_schema, HOUR],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().strip() if ready and proc.stdout else ""
        if line != "mid-copy":
            proc.kill()
            pytest.fail(f"writer never reached its COPY: {line!r} {proc.communicate()[1][-2000:]}")

        # The child has run its DELETE and is inside COPY, holding the partition's lock...
        backend = query(
            db,
            "SELECT pid, left(query, 4) FROM pg_stat_activity"
            " WHERE application_name = 'fin-assets warehouse' AND state = 'active'"
            # Only this test's database: other tests run beside it (make test's workers).
            " AND datname = current_database()",
        )
        assert [q for _, q in backend] == ["COPY"]
        assert advisory_locks(db) == [(backend[0][0], True)]
        # ...and readers still see the previous version, whole: its DELETE is not committed.
        assert wh.read_partition("core_bars", HOUR).equals(previous)  # type: ignore[union-attr]

        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    # The server sees the connection drop, rolls the transaction back and frees the lock.
    pid = backend[0][0]
    wait_for(
        "the killed writer's backend to end",
        lambda: not query(db, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", pid),
        timeout=10,
    )
    assert advisory_locks(db) == []
    assert wh.read_partition("core_bars", HOUR).equals(previous)  # type: ignore[union-attr]
    assert query(db, f"SELECT count(*) FROM {pg_schema}.core_bars") == [(30,)]

    newer = bars(3, 7)
    wh.replace_partition("core_bars", HOUR, newer)  # nothing left behind blocks the next write
    assert wh.read_partition("core_bars", HOUR).equals(newer)  # type: ignore[union-attr]


class HeldCopy:
    """A COPY source that stops after its first chunk until the test lets it go on."""

    def __init__(self, payload: bytes, reached: threading.Event, release: threading.Event):
        self.payload, self.offset = payload, 0
        self.reached, self.release = reached, release

    def read(self, size: int = -1) -> bytes:
        if self.offset:
            self.reached.set()
            assert self.release.wait(30)
        chunk = self.payload[self.offset : self.offset + size]
        self.offset += len(chunk)
        return chunk


class HeldWarehouse(PostgresWarehouse):
    def __init__(self, url: str, *, schema: str) -> None:
        super().__init__(url, schema=schema)
        self.reached, self.release = threading.Event(), threading.Event()

    def _copy_source(self, payload: bytes) -> Any:
        return HeldCopy(payload, self.reached, self.release)


def run_in_thread(target: Any, *args: object) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target(*args)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_a_second_writer_waits_for_the_first_and_its_copy_wins(
    pg_url: str, pg_schema: str, db: Any
) -> None:
    wh = PostgresWarehouse(pg_url, schema=pg_schema)
    wh.replace_partition("core_bars", HOUR, bars(0, 5))
    first, second = bars(1, 2000), bars(2, 300, symbols=("AAPL", "NVDA"))
    held = HeldWarehouse(pg_url, schema=pg_schema)

    thread_a, errors_a = run_in_thread(held.replace_partition, "core_bars", HOUR, first)
    assert held.reached.wait(30), "first writer never reached its COPY"
    thread_b, errors_b = run_in_thread(wh.replace_partition, "core_bars", HOUR, second)
    # B queues on the partition's advisory lock while A is mid-COPY...
    wait_for(
        "B to queue", lambda: any(not granted for _, granted in advisory_locks(db)), timeout=10
    )
    held.release.set()
    thread_a.join(30)
    thread_b.join(30)

    assert errors_a == [] and errors_b == []
    # ...then deletes A's committed rows and loads its own: one whole copy, B's.
    assert wh.read_partition("core_bars", HOUR).equals(second)  # type: ignore[union-attr]
    assert query(db, f"SELECT count(*) FROM {pg_schema}.core_bars") == [(600,)]


def test_racing_writers_leave_exactly_one_complete_version(
    pg_url: str, pg_schema: str, db: Any
) -> None:
    versions = [bars(1, 1500), bars(2, 700, symbols=("AAPL", "GOOG"))]
    writers = [PostgresWarehouse(pg_url, schema=pg_schema) for _ in versions]
    writers[0].replace_partition("core_bars", HOUR, bars(0, 3))
    for _round in range(4):
        barrier = threading.Barrier(2)

        def write(i: int, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            writers[i].replace_partition("core_bars", HOUR, versions[i])

        runs = [run_in_thread(write, i) for i in range(2)]
        for thread, _ in runs:
            thread.join(60)
        assert [errors for _, errors in runs] == [[], []]

        back = writers[0].read_partition("core_bars", HOUR)
        assert back is not None
        assert back.equals(versions[0]) or back.equals(versions[1])
        total = query(
            db, f"SELECT count(*), count(DISTINCT (symbol, ts)) FROM {pg_schema}.core_bars"
        )
        assert total == [(back.height, back.height)]


# -- whole tables ---------------------------------------------------------------------------

FACTORS = "adjustment_factors"


def primary_key_of(db: Any, schema: str, table: str) -> list[str]:
    rows = query(
        db,
        "SELECT a.attname FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary"
        " ORDER BY array_position(i.indkey, a.attnum)",
        f"{schema}.{table}",
    )
    return [name for (name,) in rows]


def test_a_whole_table_round_trips_its_dtypes_in_key_order(
    pg_url: str, pg_schema: str, db: Any
) -> None:
    table = factors(1, 30)
    wh = PostgresWarehouse(pg_url, schema=pg_schema, batch_rows=7)  # many fetch batches

    result = wh.replace_table(FACTORS, table, key=FACTORS_KEY)

    back = wh.read_table(FACTORS)
    assert back is not None
    assert back.schema == FACTORS_SCHEMA
    assert_frame_equal(back, table.sort(FACTORS_KEY))
    assert back["note"].to_list()[:3] == ["", None, 'split 2:1, "adjusted"']  # "" is not null
    assert_frame_equal(wh.scan_table(FACTORS).collect(), back)
    assert result == WriteResult(
        FACTORS, WHOLE_TABLE, 60, result.bytes, f"{wh.location}/{pg_schema}.{FACTORS}"
    )
    assert result.bytes > 0
    # What a SQL user sees: the key as primary key, the frame's columns and no others, the
    # registry's grain and key, and no partition of it.
    assert primary_key_of(db, pg_schema, FACTORS) == ["symbol", "date"]
    columns = query(
        db,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        pg_schema,
        FACTORS,
    )
    assert [c for (c,) in columns] == list(FACTORS_SCHEMA)
    registered = query(
        db,
        f"SELECT grain, key_columns FROM {pg_schema}.fin_assets_tables WHERE table_name = %s",
        FACTORS,
    )
    assert registered == [("table", ["symbol", "date"])]
    assert query(db, f"SELECT count(*) FROM {pg_schema}.fin_assets_partitions") == [(0,)]
    row = query(
        db,
        f"SELECT factor, shares, note, computed_at FROM {pg_schema}.{FACTORS}"
        " WHERE symbol = 'AAPL' AND date = '2026-01-06'",
    )
    assert row == [(1 + 1 / 7, None, None, datetime(2026, 1, 6, 1, 2, 3, 456789, tzinfo=UTC))]
    wh.close()


def test_replace_table_replaces_the_whole_table_and_is_idempotent(
    wh: PostgresWarehouse, db: Any, pg_schema: str
) -> None:
    wh.replace_table(FACTORS, factors(1, 10), key=FACTORS_KEY)
    smaller = factors(2, 3, symbols=("NVDA",))
    for _ in range(3):
        result = wh.replace_table(FACTORS, smaller, key=FACTORS_KEY)
        assert_frame_equal(wh.read_table(FACTORS), smaller.sort(FACTORS_KEY))  # type: ignore[arg-type]
        assert query(db, f"SELECT count(*) FROM {pg_schema}.{FACTORS}") == [(3,)]
    assert result.rows == 3
    empty = pl.DataFrame(schema=FACTORS_SCHEMA)
    wh.replace_table(FACTORS, empty, key=FACTORS_KEY)  # no rows is still a written table
    assert_frame_equal(wh.read_table(FACTORS), empty)  # type: ignore[arg-type]


class FailingCopy:
    """A COPY source whose disk fails after the first chunk."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.calls = payload, 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise OSError(5, "Input/output error")
        return self.payload[:size]


class FailingWarehouse(PostgresWarehouse):
    def _copy_source(self, payload: bytes) -> Any:
        return FailingCopy(payload)


def test_a_table_write_failing_mid_copy_leaves_the_previous_table(
    wh: PostgresWarehouse, pg_url: str, pg_schema: str, db: Any
) -> None:
    previous = factors(1, 3)
    wh.replace_table(FACTORS, previous, key=FACTORS_KEY)

    with FailingWarehouse(pg_url, schema=pg_schema) as failing:
        with pytest.raises(StorageError, match=f"{FACTORS} \\(whole table\\): .*Input/output"):
            failing.replace_table(FACTORS, factors(2, 2000), key=FACTORS_KEY)
        # A first write that fails leaves no trace: not an empty table, no table at all.
        with pytest.raises(StorageError, match="first_time"):
            failing.replace_table("first_time", factors(2, 2000), key=FACTORS_KEY)

    assert_frame_equal(wh.read_table(FACTORS), previous.sort(FACTORS_KEY))  # type: ignore[arg-type]
    assert wh.read_table("first_time") is None
    assert query(db, "SELECT 1 FROM pg_tables WHERE tablename = 'first_time'") == []
    assert advisory_locks(db) == []
    wh.replace_table("first_time", factors(3, 2), key=FACTORS_KEY)  # nothing left in the way
    assert_frame_equal(wh.read_table("first_time"), factors(3, 2).sort(FACTORS_KEY))  # type: ignore[arg-type]


def test_a_second_table_writer_waits_for_the_first_and_readers_see_the_previous_version(
    pg_url: str, pg_schema: str, db: Any
) -> None:
    wh = PostgresWarehouse(pg_url, schema=pg_schema)
    previous = factors(0, 5)
    wh.replace_table(FACTORS, previous, key=FACTORS_KEY)
    first, second = factors(1, 2000), factors(2, 300, symbols=("NVDA", "AAPL"))
    held = HeldWarehouse(pg_url, schema=pg_schema)

    thread_a, errors_a = run_in_thread(lambda: held.replace_table(FACTORS, first, key=FACTORS_KEY))
    assert held.reached.wait(30), "first writer never reached its COPY"
    # A has deleted every row and is mid-COPY: readers still see the previous table, whole.
    assert_frame_equal(wh.read_table(FACTORS), previous.sort(FACTORS_KEY))  # type: ignore[arg-type]
    thread_b, errors_b = run_in_thread(lambda: wh.replace_table(FACTORS, second, key=FACTORS_KEY))
    wait_for(
        "B to queue", lambda: any(not granted for _, granted in advisory_locks(db)), timeout=10
    )
    held.release.set()
    thread_a.join(30)
    thread_b.join(30)

    assert errors_a == [] and errors_b == []
    assert_frame_equal(wh.read_table(FACTORS), second.sort(FACTORS_KEY))  # type: ignore[arg-type]
    assert query(db, f"SELECT count(*) FROM {pg_schema}.{FACTORS}") == [(600,)]
    wh.close()
    held.close()


def test_racing_table_writers_leave_exactly_one_complete_version(
    pg_url: str, pg_schema: str, db: Any
) -> None:
    versions = [factors(1, 1500), factors(2, 700, symbols=("GOOG", "AAPL"))]
    writers = [PostgresWarehouse(pg_url, schema=pg_schema) for _ in versions]
    for _round in range(4):  # the first round also races to create the table
        barrier = threading.Barrier(2)

        def write(i: int, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            writers[i].replace_table(FACTORS, versions[i], key=FACTORS_KEY)

        runs = [run_in_thread(write, i) for i in range(2)]
        for thread, _ in runs:
            thread.join(60)
        assert [errors for _, errors in runs] == [[], []]

        back = writers[0].read_table(FACTORS)
        assert back is not None
        assert any(back.equals(v.sort(FACTORS_KEY)) for v in versions)
        total = query(
            db, f"SELECT count(*), count(DISTINCT (symbol, date)) FROM {pg_schema}.{FACTORS}"
        )
        assert total == [(back.height, back.height)]
    for writer in writers:
        writer.close()


def test_frames_that_do_not_fit_a_whole_table_are_refused_and_leave_it_alone(
    wh: PostgresWarehouse,
) -> None:
    previous = factors(1, 3)
    wh.replace_table(FACTORS, previous, key=FACTORS_KEY)

    null_date = factors(2, 3).with_columns(
        date=pl.when(pl.col("symbol") == "AAPL").then(None).otherwise(pl.col("date"))
    )
    with pytest.raises(DataValidationError) as info:
        wh.replace_table(FACTORS, null_date, key=FACTORS_KEY)
    assert str(info.value).startswith(
        f"{FACTORS}: 3 rows have a null in their key (symbol, date), e.g. symbol=AAPL, date=None"
    )
    with pytest.raises(DataValidationError) as info:
        wh.replace_table(FACTORS, pl.concat([factors(2, 3), factors(2, 3)]), key=FACTORS_KEY)
    assert str(info.value).startswith(
        f"{FACTORS}: 12 rows share their key (symbol, date) with another, e.g. symbol=MSFT, "
        "date=2026-01-07, "
    )
    for key in ("symbol", (), ("symbol", "day"), ("date", "date")):
        with pytest.raises(InvalidInputError, match="key"):
            wh.replace_table(FACTORS, factors(2, 3), key=key)

    # The table's layout is its columns, their dtypes and its key: a frame that changes any of
    # them is refused, naming both layouts, instead of half-loaded.
    layout = f"{FACTORS} \\(whole table\\): the frame's columns .* differ from the table's"
    with pytest.raises(StorageError, match=layout):
        wh.replace_table(FACTORS, factors(2, 3).drop("note"), key=FACTORS_KEY)
    with pytest.raises(StorageError, match=layout):
        wh.replace_table(
            FACTORS, factors(2, 3).with_columns(pl.col("shares").cast(pl.Float64)), key=FACTORS_KEY
        )
    with pytest.raises(StorageError, match=f"{layout} .*key symbol, date\\)"):
        wh.replace_table(FACTORS, factors(2, 3), key=("date", "symbol"))
    with pytest.raises(InvalidInputError, match="dtype"):
        wh.replace_table(
            FACTORS, factors(2, 3).with_columns(pl.col("shares").cast(pl.Int32)), key=FACTORS_KEY
        )
    fresh = PostgresWarehouse(wh._url, schema=wh.schema)  # not from a remembered layout
    with fresh, pytest.raises(StorageError, match=layout):
        fresh.replace_table(FACTORS, factors(2, 3), key=("date", "symbol"))

    assert_frame_equal(wh.read_table(FACTORS), previous.sort(FACTORS_KEY))  # type: ignore[arg-type]


def test_a_table_name_is_partitioned_or_whole_never_both(
    wh: PostgresWarehouse, db: Any, pg_schema: str
) -> None:
    wh.replace_partition("core_bars", HOUR, bars(1, 2))
    wh.replace_table(FACTORS, factors(1, 1), key=FACTORS_KEY)

    with pytest.raises(InvalidInputError, match="core_bars is partitioned hourly .* not a whole"):
        wh.replace_table("core_bars", factors(1, 2), key=FACTORS_KEY)
    with pytest.raises(InvalidInputError, match="core_bars is partitioned hourly"):
        wh.read_table("core_bars")
    with pytest.raises(InvalidInputError, match="core_bars is partitioned hourly"):
        wh.scan_table("core_bars")
    whole = f"{FACTORS} is a whole table .* not a partitioned one"
    day = factors(2, 1)  # one row a symbol, all on 2026-01-05: a valid daily partition
    for warehouse in (wh, PostgresWarehouse(wh._url, schema=pg_schema)):
        with pytest.raises(InvalidInputError, match=whole):
            warehouse.replace_partition(FACTORS, "2026-01-05", day)
    with pytest.raises(InvalidInputError, match=whole):
        wh.read_partition(FACTORS, "2026-01-05")
    with pytest.raises(InvalidInputError, match=whole):
        wh.partition_keys(FACTORS)
    with pytest.raises(InvalidInputError, match=whole):
        wh.scan(FACTORS)
    with pytest.raises(InvalidInputError, match=whole):
        wh.scan(FACTORS, ["2026-01-05"])

    assert_frame_equal(wh.read_table(FACTORS), factors(1, 1).sort(FACTORS_KEY))  # type: ignore[arg-type]
    assert wh.read_partition("core_bars", HOUR).equals(bars(1, 2))  # type: ignore[union-attr]
    assert query(db, f"SELECT count(*) FROM {pg_schema}.fin_assets_partitions") == [(1,)]


def test_a_whole_table_never_written_reads_as_none_and_scans_as_an_error(
    wh: PostgresWarehouse, db: Any, pg_schema: str
) -> None:
    assert wh.read_table(FACTORS) is None  # no registry yet
    with pytest.raises(StorageError, match=f"{FACTORS}: whole table never written"):
        wh.scan_table(FACTORS)
    wh.replace_table("other_table", factors(1, 1), key=FACTORS_KEY)
    assert wh.read_table(FACTORS) is None  # the registry exists, without it
    with pytest.raises(StorageError, match=f"{FACTORS}: whole table never written"):
        wh.scan_table(FACTORS)


@pytest.mark.parametrize("table", ["Factors", "factors;drop table x", 'f"', "fin_assets_tables"])
def test_invalid_whole_table_names_are_refused_before_any_sql(
    wh: PostgresWarehouse, db: Any, pg_schema: str, table: str
) -> None:
    with pytest.raises(InvalidInputError):
        wh.replace_table(table, factors(1, 2), key=FACTORS_KEY)
    with pytest.raises(InvalidInputError):
        wh.read_table(table)
    with pytest.raises(InvalidInputError):
        wh.scan_table(table)
    assert query(db, "SELECT 1 FROM pg_namespace WHERE nspname = %s", pg_schema) == []


def test_a_whole_table_dropped_behind_the_warehouse_is_recreated(
    wh: PostgresWarehouse, db: Any, pg_schema: str
) -> None:
    wh.replace_table(FACTORS, factors(1, 3), key=FACTORS_KEY)
    operator_drop = f"DROP TABLE {pg_schema}.{FACTORS}"
    query_none(db, operator_drop)
    with pytest.raises(StorageError, match=f"{FACTORS} \\(whole table\\): .*gone"):
        wh.read_table(FACTORS)
    wh.replace_table(FACTORS, factors(2, 2), key=FACTORS_KEY)  # remembered layout, table gone
    assert_frame_equal(wh.read_table(FACTORS), factors(2, 2).sort(FACTORS_KEY))  # type: ignore[arg-type]


def query_none(conn: Any, statement: str) -> None:
    with conn.cursor() as cur:
        cur.execute(statement)


def test_parquet_and_postgres_give_back_equal_tables(wh: PostgresWarehouse, tmp_path: Any) -> None:
    """The same frames, both backends, row for row: a corporate-actions-like key of four
    columns, unsigned counts, and doubles PostgreSQL must not round."""
    lake = ParquetWarehouse(tmp_path / "lake")
    key = ("symbol", "date", "kind", "provider_id")
    doubles = random_doubles(60, seed=11)

    def actions(version: int) -> pl.DataFrame:
        base = factors(version, 15)  # 30 rows
        return pl.concat(
            [
                base.with_columns(kind=pl.lit("split"), provider_id=pl.lit(f"s{version}")),
                base.with_columns(kind=pl.lit("dividend"), provider_id=pl.lit("")),
            ]
        ).with_columns(
            amount=pl.Series(doubles[version:] + doubles[:version]),
            count=pl.Series([None if i % 7 == 0 else 2**32 - 1 - i for i in range(60)]).cast(
                pl.UInt32
            ),
        )

    for version in (1, 2):
        frame = actions(version)
        lake_result = lake.replace_table("corporate_actions", frame, key=key)
        pg_result = wh.replace_table("corporate_actions", frame, key=key)
        assert (lake_result.rows, lake_result.partition_key) == (pg_result.rows, "")

        from_lake, from_pg = (
            lake.read_table("corporate_actions"),
            wh.read_table("corporate_actions"),
        )
        assert from_lake is not None and from_pg is not None
        assert from_pg.schema == from_lake.schema == frame.schema
        assert_frame_equal(from_pg, from_lake)
        assert_frame_equal(from_pg, frame.sort(key))
        assert_frame_equal(
            wh.scan_table("corporate_actions").collect(),
            lake.scan_table("corporate_actions").collect(),
        )


# What fin_assets_tables looked like before whole tables (no key_columns, two grains).
OLD_REGISTRY_GRAIN_CHECK = "CHECK (grain IN ('hourly', 'daily'))"


def test_a_registry_from_before_whole_tables_is_read_as_is_and_upgraded_by_a_write(
    pg_url: str, pg_schema: str, db: Any
) -> None:
    with PostgresWarehouse(pg_url, schema=pg_schema) as old:
        old.replace_partition("core_bars", HOUR, bars(1, 2))
    registry = f"{pg_schema}.fin_assets_tables"
    query_none(
        db,
        f"ALTER TABLE {registry} DROP COLUMN key_columns,"
        " DROP CONSTRAINT fin_assets_tables_grain_check,"
        f" ADD CONSTRAINT fin_assets_tables_grain_check {OLD_REGISTRY_GRAIN_CHECK}",
    )

    def registry_columns() -> list[str]:
        rows = query(
            db,
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'fin_assets_tables'"
            " ORDER BY ordinal_position",
            pg_schema,
        )
        return [name for (name,) in rows]

    with PostgresWarehouse(pg_url, schema=pg_schema) as wh:
        # Reads work on the old registry and run no DDL on it.
        assert wh.read_partition("core_bars", HOUR).equals(bars(1, 2))  # type: ignore[union-attr]
        assert wh.partition_keys("core_bars") == [HOUR]
        assert wh.read_table(FACTORS) is None
        assert "key_columns" not in registry_columns()

        wh.replace_table(FACTORS, factors(1, 2), key=FACTORS_KEY)

        assert "key_columns" in registry_columns()
        assert_frame_equal(wh.read_table(FACTORS), factors(1, 2).sort(FACTORS_KEY))  # type: ignore[arg-type]
        assert wh.read_partition("core_bars", HOUR).equals(bars(1, 2))  # type: ignore[union-attr]
        wh.replace_partition("core_bars", HOUR, bars(2, 2))
        assert wh.read_partition("core_bars", HOUR).equals(bars(2, 2))  # type: ignore[union-attr]
    grains = query(db, f"SELECT table_name, grain, key_columns FROM {registry} ORDER BY 1")
    assert grains == [(FACTORS, "table", ["symbol", "date"]), ("core_bars", "hourly", None)]
