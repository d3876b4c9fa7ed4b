"""``PostgresWarehouse``: the warehouse tables in PostgreSQL, one row set per partition.

Same interface as the Parquet lake (``resources/warehouse.py``), for several hosts sharing one
database. Each table holds its polars frame's columns plus ``partition_start timestamptz`` (the
start of the partition's UTC window: hourly ``2026-01-05-03:00`` -> 2026-01-05T03:00Z, daily
``2026-01-05`` -> 2026-01-05T00:00Z; partition columns are times, never strings), indexed, and a
primary key on ``(symbol, ts)`` or ``(symbol, date)``.

Two small tables in the same schema describe what was written:

- ``fin_assets_tables``: per table its grain (hourly/daily, or ``table`` for a whole table) and
  its polars columns and dtypes, so reads give back exactly the dtypes written (``UInt32`` is
  stored as ``bigint``) and a frame that no longer matches the table is refused instead of
  half-loaded; for a whole table also its key (``key_columns``; NULL for a partitioned table,
  whose key its columns give);
- ``fin_assets_partitions``: per materialized partition its row count and write time. An hour
  with no bars is still a materialized partition (the Parquet lake keeps an empty file for it), so
  partitions are listed from here, not from ``DISTINCT partition_start`` of the data.

Replacing a partition is one transaction: advisory lock on (table, partition), update the
partition registry, ``DELETE`` the partition's rows, ``COPY`` the new ones from an in-memory CSV,
``COMMIT``. Re-runs therefore replace instead of append, a writer killed at any point leaves the
previous rows (nothing commits), and readers never see a half-written partition.

Whole tables (``replace_table``: corporate actions, adjustment factors, ...) have no
``partition_start``; their primary key is the key their writer names. Replacing one is the same
transaction over the whole table: advisory lock on the table, ``DELETE`` every row, ``COPY``,
``COMMIT``. On its first write the table is created and registered in that same transaction, so
a registered whole table is one written at least once, and a first write that fails leaves no
trace: ``read_table`` gives None until a write commits.

Reading is one transaction too: ``COPY (SELECT ... ORDER BY key) TO STDOUT`` in CSV, with the
session's time zone, date style and float digits pinned (``READ_SETTINGS``) so the text is exact,
parsed by polars a batch of rows at a time into the dtypes of the registry.

A ``PostgresWarehouse`` keeps its connections and what it has checked between calls (see the
class), so a partition costs its own round trips and COMMIT, not a new connection and the
registry and layout queries; ``close()`` it (or use it in ``with``) when done.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import polars as pl
import psycopg2
from psycopg2 import errorcodes, sql
from psycopg2.extensions import ISOLATION_LEVEL_READ_COMMITTED, TRANSACTION_STATUS_IDLE
from psycopg2.extras import Json

from resources.errors import (
    DataValidationError,
    FinAssetsError,
    InvalidInputError,
    StorageError,
)
from resources.storage.base import WHOLE_TABLE, WriteResult, check_table_key, wrong_kind_error
from resources.storage.pg import POSTGRES_SCHEMES, connect, redact_url
from resources.validation import (
    HOURLY_KEY_RE,
    TABLE_RE,
    validate_partition_key,
    validate_table,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

PARTITION_COLUMN = "partition_start"

TABLES_REGISTRY = "fin_assets_tables"

PARTITIONS_REGISTRY = "fin_assets_partitions"

# The grain registered for a whole (unpartitioned) table; the others are partitioned.
WHOLE_GRAIN = "table"

GRAINS = ("hourly", "daily", WHOLE_GRAIN)

# The registry's CHECK on grain, named so that a registry from before whole tables (whose inline
# CHECK PostgreSQL named so too) can be upgraded in place.
GRAIN_CHECK = f"{TABLES_REGISTRY}_grain_check"

APPLICATION_NAME = "fin-assets warehouse"  # who holds a lock or a connection, in pg_stat_activity

COPY_CHUNK_BYTES = 64 * 1024

# polars writes Datetime('us', 'UTC') with an explicit offset, so PostgreSQL reads the instant
# as UTC whatever the session's TimeZone is.
CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f%:z"

# How a read's transaction has PostgreSQL print values, so that what COPY sends back parses to
# exactly the values written whatever the server's or the role's settings: timestamps in UTC
# and ISO order (DateStyle 'SQL' would print 01/05/2026), and floats exactly. Since PostgreSQL
# 12 any extra_float_digits above 0 prints the shortest text that reads back to the same bits
# (what the default 1 already does); before 12, 3 prints 17 significant digits, exact too.
READ_SETTINGS = (
    "SET LOCAL TIME ZONE 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL extra_float_digits = 3"
)

# A timestamptz and a date as PostgreSQL prints them under READ_SETTINGS: 2026-01-05
# 03:00:00+00, with .123456 (trailing zeros dropped) before the offset when there are
# microseconds, and 2026-01-05. Parsed with these formats, never by polars' guess of a pattern
# (which reads a lone 05/01/2026 as some day). Years outside 1-9999 (BC, five digits) do not
# parse: a loud error, not a wrong instant.
COPY_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.f%#z"
COPY_DATE_FORMAT = "%Y-%m-%d"

UTC_MICROSECONDS = pl.Datetime("us", "UTC")

# After these, what a warehouse object remembers about its schema (the registry exists, a
# table's layout) may be stale: a table or the schema was dropped or altered behind its back.
_STALE_CATALOG_ERRORS = frozenset(
    {errorcodes.UNDEFINED_TABLE, errorcodes.INVALID_SCHEMA_NAME, errorcodes.UNDEFINED_COLUMN}
)

# Whether the tables registry (schema, name) has key_columns, added with whole tables.
_REGISTRY_IS_CURRENT = (
    "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a"
    " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND a.attname = 'key_columns'"
    " AND NOT a.attisdropped)"
)

# The dtypes warehouse tables use: (polars dtype, name kept in the registry, PostgreSQL type).
# Text is COLLATE "C" so ORDER BY symbol is byte order, as polars sorts, on any database locale.
_TYPES: tuple[tuple[pl.DataType, str, str], ...] = (
    (pl.String(), "String", 'text COLLATE "C"'),
    (pl.Float64(), "Float64", "double precision"),
    (pl.Int64(), "Int64", "bigint"),
    (pl.UInt32(), "UInt32", "bigint"),
    (pl.Datetime("us", "UTC"), "Datetime(us, UTC)", "timestamptz"),
    (pl.Date(), "Date", "date"),
)

_DTYPE_BY_NAME = {name: dtype for dtype, name, _ in _TYPES}

_PG_TYPE_BY_NAME = {name: pg_type for _, name, pg_type in _TYPES}


def _lock_key(*parts: str) -> int:
    """A bigint for ``pg_advisory_xact_lock``. Python's ``hash()`` is salted per process, and
    two processes writing the same partition must derive the same key: hence sha256."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# -- partitions and table layouts -------------------------------------------------------------
def _window(partition_key: str) -> tuple[str, datetime, datetime]:
    """(grain, start, end) of a partition's UTC window."""
    key = validate_partition_key(partition_key)
    # The key is valid (a real day and hour), so its digits are read in place: a second
    # strptime was most of what 8,760 keys (a year of hours, one scan) cost.
    day = (int(key[0:4]), int(key[5:7]), int(key[8:10]))
    if HOURLY_KEY_RE.fullmatch(key):
        start = datetime(*day, int(key[11:13]), tzinfo=UTC)
        return "hourly", start, start + timedelta(hours=1)
    start = datetime(*day, tzinfo=UTC)
    return "daily", start, start + timedelta(days=1)


# A partition's key from its partition_start, printed by PostgreSQL's to_char (of the start in
# UTC): a year of hourly keys comes back as 8,760 strings instead of 8,760 timestamps that
# Python then parses and formats.
_KEY_PATTERNS = {"hourly": "YYYY-MM-DD-HH24:00", "daily": "YYYY-MM-DD"}


@dataclass(frozen=True)
class _Layout:
    """A table's grain and its columns with their polars dtype names, in order; a whole table's
    key too (a partitioned table's key is derived from its columns)."""

    grain: str
    columns: tuple[tuple[str, str], ...]
    whole_key: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def key(self) -> tuple[str, ...]:
        if self.grain == WHOLE_GRAIN:
            return self.whole_key
        return ("symbol", "ts") if "ts" in self.names else ("symbol", "date")

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema({name: _DTYPE_BY_NAME[dtype] for name, dtype in self.columns})

    def describe(self) -> str:
        return ", ".join(f"{name} {dtype}" for name, dtype in self.columns)


def _columns_of(frame: pl.DataFrame, *, table: str) -> tuple[tuple[str, str], ...]:
    """The frame's (column, dtype name) pairs, if PostgreSQL can hold them as they are."""
    columns = []
    for name, dtype in frame.schema.items():
        if not TABLE_RE.fullmatch(name) or name == PARTITION_COLUMN:
            raise InvalidInputError(
                f"{table}: column name {name!r} refused: expected [a-z][a-z0-9_]*, "
                f"not {PARTITION_COLUMN!r}"
            )
        match = next((n for d, n, _ in _TYPES if dtype == d), None)
        if match is None:
            supported = ", ".join(n for _, n, _ in _TYPES)
            raise InvalidInputError(
                f"{table}: column {name} has dtype {dtype}, which the PostgreSQL warehouse does "
                f"not store; cast it to one of {supported}"
            )
        columns.append((name, match))
    return tuple(columns)


def _layout_of(frame: pl.DataFrame, *, grain: str, table: str) -> _Layout:
    layout = _Layout(grain, _columns_of(frame, table=table))
    names = layout.names
    if "symbol" not in names or ("ts" not in names and "date" not in names):
        raise InvalidInputError(
            f"{table}: a warehouse table needs a symbol column and a ts or date column "
            f"(its primary key); the frame has {', '.join(names) or 'no columns'}"
        )
    return layout


def _whole_layout_of(frame: pl.DataFrame, key: Sequence[str], *, table: str) -> _Layout:
    """A whole table's layout; its rows checked against ``key`` (no nulls, no duplicates)."""
    columns = _columns_of(frame, table=table)
    return _Layout(WHOLE_GRAIN, columns, check_table_key(frame, key, table=table))


def _check_rows(
    frame: pl.DataFrame, layout: _Layout, *, where: str, start: datetime, end: datetime
) -> None:
    """Refuse rows the primary key or the partition window would make wrong.

    A row outside the window would be filed under this partition and then collide with (or
    survive the replacement of) the partition it belongs to, so it is refused here."""
    key = list(layout.key)
    column = pl.col(key[1])
    if key[1] == "ts":
        outside = (column < start) | (column >= end)
    else:
        last_day = (end - timedelta(microseconds=1)).date()
        outside = (column < start.date()) | (column > last_day)
    duplicated = pl.struct(key).is_duplicated()
    # One pass over the frame for every check, since this runs on each write; the offending
    # rows are looked for only to name one in the error.
    nulls, duplicates, outsiders = frame.select(
        nulls=pl.any_horizontal(pl.col(key).is_null().any()),
        duplicates=duplicated.sum(),
        outsiders=outside.sum(),
    ).row(0)
    if nulls:
        raise DataValidationError(f"{where}: null {' or '.join(key)} in the frame")
    if duplicates:
        example = frame.filter(duplicated).row(0, named=True)
        raise DataValidationError(
            f"{where}: {duplicates} rows share their ({', '.join(key)}) with another, "
            f"e.g. {example[key[0]]} {example[key[1]]}"
        )
    if outsiders:
        raise DataValidationError(
            f"{where}: {outsiders} rows lie outside the partition window "
            f"[{start.isoformat()}, {end.isoformat()}), "
            f"e.g. {frame.filter(outside).row(0, named=True)[key[1]]}"
        )


def _csv_payload(frame: pl.DataFrame, start: datetime | None) -> bytes:
    """The frame plus its partition_start (none for a whole table: ``start`` None), as CSV for
    ``COPY ... WITH (FORMAT csv)``.

    Nulls go out as empty unquoted fields (COPY's NULL) while an empty string is quoted ``""``;
    floats are written with the shortest repr that round-trips (``0.30000000000000004``), and
    NaN/inf in spellings PostgreSQL accepts; timestamps carry microseconds and ``+00:00``."""
    buffer = io.BytesIO()
    if start is not None:
        frame = frame.with_columns(pl.lit(start, pl.Datetime("us", "UTC")).alias(PARTITION_COLUMN))
    frame.write_csv(
        buffer,
        include_header=False,
        datetime_format=CSV_DATETIME_FORMAT,
        date_format="%Y-%m-%d",
        null_value="",
        quote_style="necessary",
    )
    return buffer.getvalue()


def frame_from_copy_csv(payload: bytes, schema: pl.Schema) -> pl.DataFrame:
    """Rows that ``COPY (SELECT <schema's columns> ...) TO STDOUT WITH (FORMAT csv)`` sent under
    ``READ_SETTINGS``, as a frame of ``schema`` (the layout's dtypes, so ``UInt32`` from bigint).

    COPY's CSV prints a NULL as an empty unquoted field and an empty string as ``""``; polars
    reads them back as null and "" (``empty_string_is_null`` is about the unquoted field).
    Floats come as PostgreSQL's exact text (``0.30000000000000004``, ``-0``, ``1e-300``,
    ``NaN``, ``Infinity``), which polars parses to the same bits. Timestamps and dates are read
    as text and parsed here in their one format. A value that does not fit its dtype raises a
    ``PolarsError`` (a negative UInt32, a date in another style) instead of becoming null."""
    parsed: dict[pl.DataType, Callable[[pl.Expr], pl.Expr]] = {
        UTC_MICROSECONDS: lambda text: text.str.to_datetime(
            COPY_DATETIME_FORMAT, time_unit="us", time_zone="UTC"
        ),
        pl.Date(): lambda text: text.str.to_date(COPY_DATE_FORMAT),
    }
    texts = [name for name, dtype in schema.items() if dtype in parsed]
    frame = pl.read_csv(
        payload,
        has_header=False,
        schema={name: pl.String() if name in texts else dtype for name, dtype in schema.items()},
        separator=",",
        quote_char='"',
        empty_string_is_null=True,
        raise_if_empty=False,
    )
    return frame.with_columns(parsed[schema[name]](pl.col(name)) for name in texts)


class _CopyFrames:
    """What ``copy_expert`` writes a ``COPY ... TO STDOUT`` into: every ``batch_rows`` rows
    become a polars frame at once, so at most one batch's CSV text exists beside the frames.

    PostgreSQL sends each row of a COPY out in a message of its own (the protocol promises it)
    and psycopg2 calls ``write`` once per message, so a batch ends at a row's end even when a
    string holds a newline, and its frame must have exactly as many rows as there were writes:
    a misparse cannot pass as extra or missing rows. A batch that does not parse is remembered
    and the rest of the COPY drained unparsed, so that the COPY ends cleanly and the connection
    stays usable; ``frame`` then raises."""

    def __init__(self, schema: pl.Schema, *, batch_rows: int) -> None:
        self._schema = schema
        self._batch_rows = batch_rows
        self._rows: list[bytes] = []
        self._frames: list[pl.DataFrame] = []
        self._error: str | None = None

    def write(self, row: bytes) -> None:
        if self._error is not None:
            return
        self._rows.append(row)
        if len(self._rows) >= self._batch_rows:
            self._parse()

    def _parse(self) -> None:
        rows, self._rows = self._rows, []
        try:
            frame = frame_from_copy_csv(b"".join(rows), self._schema)
        except pl.exceptions.PolarsError as exc:
            self._error = str(exc).strip().splitlines()[0]
            return
        if frame.height != len(rows):
            self._error = f"{len(rows)} rows parsed as {frame.height}"
            return
        self._frames.append(frame)

    def frame(self, where: str, columns: str) -> pl.DataFrame:
        """The rows read, in order; a ``StorageError`` naming ``where`` if some did not parse."""
        if self._rows and self._error is None:
            self._parse()
        if self._error is not None:
            raise StorageError(
                f"{where}: the rows PostgreSQL sent do not read back as the table's registered "
                f"columns ({columns}): {self._error}; was the table altered by hand?"
            )
        if not self._frames:
            return pl.DataFrame(schema=self._schema)
        return pl.concat(self._frames, rechunk=True)


# -- the warehouse ----------------------------------------------------------------------------
class PostgresWarehouse:
    """Warehouse tables in one PostgreSQL schema; see the module docstring for the layout.

    Connections are kept between calls: a call borrows an idle connection of this object (or
    opens one) and gives it back once its transaction has ended, so a step writing 24
    partitions connects once, not 24 times. A running call holds its connection alone, so the
    object is safe to use from several threads; it keeps as many idle connections as calls
    ever ran at once in this process. ``close()`` (or leaving a ``with`` block) closes them;
    the object stays usable and reconnects on its next call.

    What a write has checked (the registry exists, a table's layout) is remembered, so later
    writes skip those queries. A call that fails on something remembered - a connection the
    server closed meanwhile (restart, ``pg_terminate_backend``, idle timeout), or a table or
    schema dropped behind the object's back - forgets it and runs once more on a new
    connection. That is safe because every call is one transaction and a replace is idempotent.

    ``batch_rows`` is how many rows a read parses at once: the CSV text held in memory beside
    the frames read so far.
    """

    def __init__(self, url: str, *, schema: str = "public", batch_rows: int = 50_000) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in POSTGRES_SCHEMES:
            raise InvalidInputError(
                f"not a PostgreSQL URL (scheme {scheme!r}): use postgresql://user@host:5432/db"
            )
        if batch_rows < 1:
            raise InvalidInputError(f"batch_rows must be at least 1, got {batch_rows}")
        self._url = url
        self.schema = validate_table(schema)
        self.batch_rows = batch_rows
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        # close() bumps it: a connection lent before close() is closed when it comes back.
        self._generation = 0
        self._pid = os.getpid()
        self._inherited: list[Any] = []
        self._registry_ready = False
        self._layouts: dict[str, _Layout] = {}  # tables this object created or checked

    @property
    def location(self) -> str:
        return redact_url(self._url)

    def _ident(self, table: str) -> sql.Composed:
        return sql.Identifier(self.schema, table)

    # -- connections ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the idle connections (and those in use, as their calls end)."""
        with self._lock:
            self._adopt_process()
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn in idle:
            conn.close()

    def __enter__(self) -> PostgresWarehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _adopt_process(self) -> None:
        """After a fork, leave the parent's connections alone (called under ``_lock``).

        The child shares their sockets: using one would interleave two processes' messages,
        and closing one would end the parent's session. They are kept referenced, never
        closed, and the child opens its own."""
        if self._pid != os.getpid():
            self._inherited.extend(self._idle)
            self._idle = []
            self._pid = os.getpid()

    def _borrow(self, what: str) -> tuple[Any, int, bool]:
        """(connection, generation, whether it was reused) for one call."""
        with self._lock:
            self._adopt_process()
            generation = self._generation
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, generation, True
        try:
            conn = connect(self._url, application_name=APPLICATION_NAME)
        except psycopg2.Error as exc:
            raise StorageError(
                f"{what}: cannot connect to the PostgreSQL warehouse {self.location}: {exc}"
            ) from None
        # The lock-then-DELETE protocol below relies on each statement seeing rows committed
        # before it started: READ COMMITTED, whatever the server's default.
        conn.set_session(isolation_level=ISOLATION_LEVEL_READ_COMMITTED, autocommit=False)
        return conn, generation, False

    def _give_back(self, conn: Any, generation: int) -> None:
        try:
            if conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
                # A read's transaction ends now, not at the connection's next use: an idle
                # session inside a transaction keeps its share locks, which would block
                # someone else's DROP or ALTER of the table.
                conn.rollback()
        except psycopg2.Error:
            conn.close()
            return
        with self._lock:
            if generation == self._generation and self._pid == os.getpid():
                self._idle.append(conn)
                return
        conn.close()

    def _forget(self) -> None:
        """Drop what this object remembers about its schema; the next write checks again."""
        with self._lock:
            self._registry_ready = False
            self._layouts.clear()

    def _run(self, what: str, work: Callable[[Any], T]) -> T:
        """``work(conn)`` on a connection of this object; database errors become
        ``StorageError`` naming ``what``.

        ``work`` commits what it writes; a transaction it leaves open is rolled back when the
        connection is given back. A connection that saw a database error or an interrupt is
        closed, never reused: closing without COMMIT rolls back, so an error anywhere inside
        leaves the tables as they were."""
        for attempt in (1, 2):
            conn, generation, reused = self._borrow(what)
            try:
                result = work(conn)
            except psycopg2.Error as exc:
                lost = bool(conn.closed)  # the server or the network ended the session
                conn.close()
                stale = exc.pgcode in _STALE_CATALOG_ERRORS
                if stale:
                    self._forget()
                if attempt == 1 and (stale or (lost and reused)):
                    log.warning(
                        "%s: %s; running it again on a new connection",
                        what,
                        "a table was dropped or changed meanwhile" if stale else "connection lost",
                    )
                    continue
                raise StorageError(f"{what}: PostgreSQL warehouse {self.location}: {exc}") from exc
            except FinAssetsError:
                # Refused on purpose between two statements (a frame that does not fit the
                # table, a partition not materialized): the session itself is sound.
                self._give_back(conn, generation)
                raise
            except BaseException:
                conn.close()  # an interrupt may have come mid-statement or mid-COPY
                raise
            self._give_back(conn, generation)
            return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    # -- registry ------------------------------------------------------------------------------
    def _registry_exists(self, cur: Any) -> bool:
        """Whether the registry tables exist. ``_registry_ready`` says more: they exist and are
        current (a registry from before whole tables reads fine but is upgraded on a write)."""
        if not self._registry_ready:
            cur.execute(
                "SELECT (SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = %s"
                f" AND tablename IN (%s, %s)) = 2, {_REGISTRY_IS_CURRENT}",
                (self.schema, TABLES_REGISTRY, PARTITIONS_REGISTRY, self.schema, TABLES_REGISTRY),
            )
            exists, current = cur.fetchone()
            self._registry_ready = exists and current
            return bool(exists)
        return True

    def _registry_current(self, cur: Any) -> bool:
        cur.execute(f"SELECT {_REGISTRY_IS_CURRENT}", (self.schema, TABLES_REGISTRY))
        return bool(cur.fetchone()[0])

    def _create_registry(self, conn: Any) -> None:
        with conn.cursor() as cur:
            self._registry_exists(cur)
            if self._registry_ready:
                return
            # Two first writers would both CREATE ... IF NOT EXISTS and one would fail on the
            # catalog's unique index: serialize creation on a lock of its own.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("registry", self.schema),))
            cur.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s)",
                (self.schema,),
            )
            if cur.fetchone()[0]:
                cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
            grains = sql.SQL(", ").join(sql.Literal(g) for g in GRAINS)
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " table_name text PRIMARY KEY,"
                    " grain text NOT NULL CONSTRAINT {} CHECK (grain IN ({})),"
                    " columns jsonb NOT NULL,"
                    " key_columns jsonb,"
                    " created_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._ident(TABLES_REGISTRY), sql.Identifier(GRAIN_CHECK), grains)
            )
            if not self._registry_current(cur):
                # A registry written before whole tables: it learns their grain and their key.
                # Partitioned tables' rows stay as they are (key_columns NULL).
                cur.execute(
                    sql.SQL(
                        "ALTER TABLE {} ADD COLUMN key_columns jsonb,"
                        " DROP CONSTRAINT IF EXISTS {},"
                        " ADD CONSTRAINT {} CHECK (grain IN ({}))"
                    ).format(
                        self._ident(TABLES_REGISTRY),
                        sql.Identifier(GRAIN_CHECK),
                        sql.Identifier(GRAIN_CHECK),
                        grains,
                    )
                )
                log.info("upgraded %s.%s for whole tables", self.schema, TABLES_REGISTRY)
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " table_name text NOT NULL REFERENCES {} ON DELETE CASCADE,"
                    " partition_start timestamptz NOT NULL,"
                    " row_count bigint NOT NULL,"
                    " written_at timestamptz NOT NULL DEFAULT now(),"
                    " PRIMARY KEY (table_name, partition_start))"
                ).format(self._ident(PARTITIONS_REGISTRY), self._ident(TABLES_REGISTRY))
            )
        conn.commit()
        self._registry_ready = True

    def _registration(self, cur: Any, table: str) -> tuple[_Layout, bool] | None:
        """(the registered layout, whether the table itself exists), or None: not registered."""
        if not self._registry_exists(cur):
            return None
        # key_columns read through to_jsonb(row): NULL, not an error, in a registry from before
        # whole tables that no write has upgraded yet (a reader does not run DDL).
        cur.execute(
            sql.SQL(
                "SELECT grain, columns, to_jsonb(r) -> 'key_columns',"
                " EXISTS (SELECT 1 FROM pg_catalog.pg_tables"
                " WHERE schemaname = %s AND tablename = %s) FROM {} AS r WHERE table_name = %s"
            ).format(self._ident(TABLES_REGISTRY)),
            (self.schema, table, table),
        )
        row = cur.fetchone()
        if row is None:
            return None
        grain, columns, key, exists = row
        layout = _Layout(grain, tuple((name, dtype) for name, dtype in columns), tuple(key or ()))
        return layout, exists

    def _layout(self, cur: Any, table: str, what: str) -> _Layout | None:
        """A registered table's layout for a read, None if the table was never written."""
        found = self._registration(cur, table)
        if found is None:
            return None
        layout, exists = found
        if not exists:
            raise StorageError(
                f"{what}: {self.schema}.{table} is registered in {TABLES_REGISTRY} but the "
                "table is gone (dropped by hand?); the next write of it recreates it empty"
            )
        return layout

    def _ensure_table(self, conn: Any, table: str, wanted: _Layout, partition_key: str) -> None:
        """Create the table on its first write; refuse a frame or key that does not fit it."""
        layout = self._layouts.get(table)
        if layout is None:
            layout = self._create_or_read_layout(conn, table, wanted)
            self._layouts[table] = layout
        self._check_grain(table, layout, wanted.grain, partition_key)
        if layout.columns != wanted.columns:
            raise StorageError(
                f"{table} partition {partition_key}: the frame's columns ({wanted.describe()}) "
                f"differ from the table's ({layout.describe()}); write matching frames or "
                "migrate the table"
            )

    def _create_or_read_layout(
        self, conn: Any, table: str, wanted: _Layout, *, commit: bool = True
    ) -> _Layout:
        """The table's registered layout, or ``wanted`` once the table is created with it.

        ``commit=False`` leaves the creation to the caller's transaction (a whole table is
        created and registered together with its first rows); the DDL lock is then held until
        the caller commits."""
        self._create_registry(conn)
        with conn.cursor() as cur:
            found = self._registration(cur, table)
            if found is None or not found[1]:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("ddl", self.schema),))
                found = self._registration(cur, table)  # created while we waited?
            if found is not None and not found[1]:
                # Its rows are gone with it: forget its partitions too (the registry's foreign
                # key cascades), so they read as not materialized instead of as empty.
                log.warning(
                    "warehouse table %s.%s is registered but was dropped: recreating it empty",
                    self.schema,
                    table,
                )
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE table_name = %s").format(
                        self._ident(TABLES_REGISTRY)
                    ),
                    (table,),
                )
                found = None
            if found is None:
                self._create_table(cur, table, wanted)
                layout = wanted
            else:
                layout = found[0]
        if commit:
            conn.commit()
        return layout

    def _create_table(self, cur: Any, table: str, layout: _Layout) -> None:
        whole = layout.grain == WHOLE_GRAIN
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_PG_TYPE_BY_NAME[dtype]))
            for name, dtype in layout.columns
        ]
        if not whole:
            columns.append(
                sql.SQL("{} timestamptz NOT NULL").format(sql.Identifier(PARTITION_COLUMN))
            )
        cur.execute(
            sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                self._ident(table),
                sql.SQL(", ").join(columns),
                sql.SQL(", ").join(sql.Identifier(c) for c in layout.key),
            )
        )
        if not whole:
            cur.execute(
                sql.SQL("CREATE INDEX ON {} ({})").format(
                    self._ident(table), sql.Identifier(PARTITION_COLUMN)
                )
            )
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (table_name, grain, columns, key_columns) VALUES (%s, %s, %s, %s)"
            ).format(self._ident(TABLES_REGISTRY)),
            (
                table,
                layout.grain,
                Json([list(c) for c in layout.columns]),
                Json(list(layout.key)) if whole else None,
            ),
        )
        log.info("created warehouse table %s.%s (%s)", self.schema, table, layout.describe())

    # -- writes --------------------------------------------------------------------------------
    def replace_partition(self, table: str, partition_key: str, frame: pl.DataFrame) -> WriteResult:
        """Replace the partition's rows with ``frame``: lock, DELETE, COPY, COMMIT."""
        return self._replace(table, partition_key, frame, load=self._load_copy)

    def _replace(
        self,
        table: str,
        partition_key: str,
        frame: pl.DataFrame,
        *,
        load: Callable[[Any, str, _Layout, pl.DataFrame, datetime], int],
    ) -> WriteResult:
        """One partition replaced; ``load(cursor, table, layout, frame, partition_start)`` sends
        the rows and returns the bytes sent. A seam: the executemany baseline the benchmarks
        compare COPY against is a subclass in the tests (``tests/helpers.py``)."""
        table = self._check_table(table)
        grain, start, end = _window(partition_key)
        where = f"{table} partition {partition_key}"
        layout = _layout_of(frame, grain=grain, table=table)
        _check_rows(frame, layout, where=where, start=start, end=end)

        def write(conn: Any) -> tuple[int, int]:
            self._ensure_table(conn, table, layout, partition_key)
            with conn.cursor() as cur:
                # What comes before the rows is one round trip (three statements), since every
                # round trip is paid again per partition: lock the partition, record its new
                # row count, DELETE its old rows. Concurrent writers of one partition queue on
                # the lock until the holder commits; the next one's DELETE then sees (and
                # removes) those rows, so the partition ends as one whole copy instead of two
                # interleaved ones or a primary-key violation. DELETE then load instead of
                # appending: re-running a partition replaces it.
                cur.execute(
                    sql.SQL(
                        "SELECT pg_advisory_xact_lock(%s);"
                        " INSERT INTO {} (table_name, partition_start, row_count)"
                        " VALUES (%s, %s, %s)"
                        " ON CONFLICT (table_name, partition_start) DO UPDATE"
                        " SET row_count = excluded.row_count, written_at = now();"
                        " WITH gone AS (DELETE FROM {} WHERE {} = %s RETURNING 1)"
                        " SELECT count(*) FROM gone"
                    ).format(
                        self._ident(PARTITIONS_REGISTRY),
                        self._ident(table),
                        sql.Identifier(PARTITION_COLUMN),
                    ),
                    (
                        _lock_key("partition", self.schema, table, start.isoformat()),
                        table,
                        start,
                        frame.height,
                        start,
                    ),
                )
                deleted = cur.fetchone()[0]
                sent = load(cur, table, layout, frame, start)
            # Only now do the DELETE and the new rows become visible, together. A writer that
            # dies before this line (killed mid-COPY, network gone) never commits: the server
            # rolls back, the previous rows stay and the advisory lock goes with the session.
            conn.commit()
            return deleted, sent

        deleted, sent = self._run(where, write)
        log.info(
            "replaced %s.%s partition %s: %d rows (%d before)",
            self.schema,
            table,
            partition_key,
            frame.height,
            deleted,
        )
        return WriteResult(
            table, partition_key, frame.height, sent, f"{self.location}/{self.schema}.{table}"
        )

    def _copy_source(self, payload: bytes) -> IO[bytes]:
        """What COPY reads from; a method so tests can hold a COPY midway."""
        return io.BytesIO(payload)

    def _load_copy(
        self, cur: Any, table: str, layout: _Layout, frame: pl.DataFrame, start: datetime
    ) -> int:
        return self._copy(cur, table, [*layout.names, PARTITION_COLUMN], _csv_payload(frame, start))

    def _copy(self, cur: Any, table: str, columns: list[str], payload: bytes) -> int:
        """``COPY`` the CSV ``payload`` into ``columns`` of the table; the bytes sent."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
            self._ident(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
        cur.copy_expert(statement, self._copy_source(payload), size=COPY_CHUNK_BYTES)
        return len(payload)

    # -- whole tables --------------------------------------------------------------------------
    def replace_table(self, table: str, frame: pl.DataFrame, *, key: Sequence[str]) -> WriteResult:
        """Replace every row of the whole table with ``frame``: lock, DELETE, COPY, COMMIT."""
        table = self._check_table(table)
        layout = _whole_layout_of(frame, key, table=table)
        where = f"{table} (whole table)"

        def write(conn: Any) -> tuple[int, int]:
            self._ensure_whole_table(conn, table, layout)
            with conn.cursor() as cur:
                # As for a partition (see _replace): concurrent writers of the table queue on
                # its lock, and each one's DELETE sees the rows the previous one committed, so
                # the table ends as one whole copy. DELETE, not TRUNCATE: TRUNCATE's exclusive
                # lock would block readers until COMMIT, where DELETE lets them go on reading
                # the previous version.
                cur.execute(
                    sql.SQL(
                        "SELECT pg_advisory_xact_lock(%s);"
                        " WITH gone AS (DELETE FROM {} RETURNING 1) SELECT count(*) FROM gone"
                    ).format(self._ident(table)),
                    (_lock_key("table", self.schema, table),),
                )
                deleted = cur.fetchone()[0]
                sent = self._copy(cur, table, layout.names, _csv_payload(frame, None))
            conn.commit()
            # Remembered only once committed: a first write that failed created nothing.
            self._layouts[table] = layout
            return deleted, sent

        deleted, sent = self._run(where, write)
        log.info(
            "replaced %s.%s (whole table): %d rows (%d before)",
            self.schema,
            table,
            frame.height,
            deleted,
        )
        return WriteResult(
            table, WHOLE_TABLE, frame.height, sent, f"{self.location}/{self.schema}.{table}"
        )

    def _ensure_whole_table(self, conn: Any, table: str, wanted: _Layout) -> None:
        """Create the whole table in the write's transaction on its first write; refuse a
        partitioned table, or a frame whose columns or key differ from the table's."""
        layout = self._layouts.get(table)
        if layout is None:
            layout = self._create_or_read_layout(conn, table, wanted, commit=False)
        if layout.grain != WHOLE_GRAIN:
            raise wrong_kind_error(table, kind=layout.grain)
        if layout.columns != wanted.columns or layout.key != wanted.key:
            raise StorageError(
                f"{table} (whole table): the frame's columns ({wanted.describe()}) and key "
                f"({', '.join(wanted.key)}) differ from the table's ({layout.describe()}; key "
                f"{', '.join(layout.key)}); write matching frames or migrate the table"
            )

    def read_table(self, table: str) -> pl.DataFrame | None:
        """The whole table ordered by its key, in the dtypes written; None if never written."""
        table = self._check_table(table)
        where = f"{table} (whole table)"

        def read(conn: Any) -> pl.DataFrame | None:
            with conn.cursor() as cur:
                layout = self._layout(cur, table, where)
            if layout is None:
                return None
            if layout.grain != WHOLE_GRAIN:
                raise wrong_kind_error(table, kind=layout.grain)
            return self._read(conn, table, layout, None, where=where)

        return self._run(where, read)

    def replace_partitions(
        self, table: str, partitions: Sequence[tuple[str, pl.DataFrame]], *, by_day: bool = False
    ) -> list[WriteResult]:
        """Each partition replaced in its own transaction (``by_day`` changes nothing here: a
        partition is rows of one table either way)."""
        return [self.replace_partition(table, key, frame) for key, frame in partitions]

    def compact(self, table: str, partition_keys: Sequence[str]) -> None:
        """Nothing to do: a scan of any number of partitions is one query over one table."""
        self._check_table(table)

    def scan_table(self, table: str) -> pl.LazyFrame:
        """The whole table, collected, then lazy (as ``scan``)."""
        frame = self.read_table(table)
        if frame is None:
            raise StorageError(
                f"{table}: whole table never written to the PostgreSQL warehouse "
                f"{self.location} (schema {self.schema})"
            )
        return frame.lazy()

    # -- reads ---------------------------------------------------------------------------------
    def read_partition(self, table: str, partition_key: str) -> pl.DataFrame | None:
        table = self._check_table(table)
        grain, start, _ = _window(partition_key)
        where = f"{table} partition {partition_key}"

        def read(conn: Any) -> pl.DataFrame | None:
            with conn.cursor() as cur:
                layout = self._layout(cur, table, where)
                if layout is None:
                    return None
                self._check_grain(table, layout, grain, partition_key)
                cur.execute(
                    sql.SQL(
                        "SELECT 1 FROM {} WHERE table_name = %s AND partition_start = %s"
                    ).format(self._ident(PARTITIONS_REGISTRY)),
                    (table, start),
                )
                if cur.fetchone() is None:
                    return None
            return self._read(conn, table, layout, [start], where=where)

        return self._run(where, read)

    def partition_keys(self, table: str) -> list[str]:
        table = self._check_table(table)
        where = f"{table}: listing partitions"

        def keys(conn: Any) -> list[str]:
            with conn.cursor() as cur:
                layout = self._layout(cur, table, where)
                if layout is None:
                    return []
                self._check_partitioned(table, layout)
                return self._keys(cur, table, layout)

        return self._run(where, keys)

    def scan(self, table: str, partition_keys: list[str] | None = None) -> pl.LazyFrame:
        """The requested partitions (default: all), sorted by key; collected, then lazy."""
        table = self._check_table(table)
        requested = None if partition_keys is None else [(k, *_window(k)) for k in partition_keys]
        where = f"{table}: scan"

        def scan(conn: Any) -> pl.DataFrame:
            with conn.cursor() as cur:
                layout = self._layout(cur, table, where)
                if layout is not None:
                    self._check_partitioned(table, layout)
                    for key, grain, _, _ in requested or ():
                        self._check_grain(table, layout, grain, key)
                if requested is None:
                    starts = None
                    found = layout is not None and self._has_partitions(cur, table)
                else:
                    # Only the requested starts are looked up: listing and formatting every key
                    # of the table (8,760 for a year of hours) cost more than the check itself.
                    starts = [start for _, _, start, _ in requested]
                    present = set() if layout is None else self._present(cur, table, starts)
                    missing = [key for key, _, start, _ in requested if start not in present]
                    if missing:
                        raise StorageError(
                            f"{table}: partitions not materialized yet: {', '.join(missing)}"
                        )
                    found = bool(present)
            if layout is None or not found:
                raise StorageError(
                    f"{table}: no partitions in the PostgreSQL warehouse {self.location}"
                )
            return self._read(conn, table, layout, starts, where=where)

        return self._run(where, scan).lazy()

    def _keys(self, cur: Any, table: str, layout: _Layout) -> list[str]:
        cur.execute(
            sql.SQL(
                "SELECT to_char(partition_start AT TIME ZONE 'UTC', %s) FROM {}"
                " WHERE table_name = %s ORDER BY partition_start"
            ).format(self._ident(PARTITIONS_REGISTRY)),
            (_KEY_PATTERNS[layout.grain], table),
        )
        return [key for (key,) in cur.fetchall()]

    def _has_partitions(self, cur: Any, table: str) -> bool:
        cur.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE table_name = %s)").format(
                self._ident(PARTITIONS_REGISTRY)
            ),
            (table,),
        )
        return bool(cur.fetchone()[0])

    def _present(self, cur: Any, table: str, starts: list[datetime]) -> set[datetime]:
        """Which of ``starts`` are materialized partitions of the table."""
        cur.execute(
            sql.SQL(
                "SELECT partition_start FROM {} WHERE table_name = %s AND partition_start = ANY(%s)"
            ).format(self._ident(PARTITIONS_REGISTRY)),
            (table, starts),
        )
        return {start for (start,) in cur.fetchall()}

    def _read(
        self,
        conn: Any,
        table: str,
        layout: _Layout,
        starts: list[datetime] | None,
        *,
        where: str,
    ) -> pl.DataFrame:
        """Rows of the given partitions (None: all), ordered by the primary key, in the dtypes
        written.

        One ``COPY (SELECT ... ORDER BY key) TO STDOUT`` in CSV, printed under
        ``READ_SETTINGS`` and parsed by polars in batches of ``batch_rows`` rows (see
        ``_CopyFrames``): one bytes object per row on the way (psycopg2 hands each row over
        alone), none per value, and at most one batch's text in memory beside the frames."""
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in layout.names), self._ident(table)
        )
        if starts is not None:
            query += sql.SQL(" WHERE {} = ANY({})").format(
                sql.Identifier(PARTITION_COLUMN), sql.Literal(starts)
            )
        query += sql.SQL(" ORDER BY {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in layout.key)
        )
        # CSV's defaults are the ones frame_from_copy_csv reads: comma, '"' quoting and
        # escaping, NULL as an empty unquoted field.
        statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)
        frames = _CopyFrames(layout.schema, batch_rows=self.batch_rows)
        with conn.cursor() as cur:
            cur.execute(READ_SETTINGS)  # SET LOCAL: until this transaction ends
            cur.copy_expert(statement, frames)
        conn.commit()
        return frames.frame(where, layout.describe())

    # -- checks --------------------------------------------------------------------------------
    @staticmethod
    def _check_table(table: str) -> str:
        table = validate_table(table)
        if table in (TABLES_REGISTRY, PARTITIONS_REGISTRY):
            raise InvalidInputError(f"{table} is the warehouse's own registry, not a table")
        return table

    @staticmethod
    def _check_partitioned(table: str, layout: _Layout) -> None:
        if layout.grain == WHOLE_GRAIN:
            raise wrong_kind_error(table, kind="whole")

    @classmethod
    def _check_grain(cls, table: str, layout: _Layout, grain: str, key: str) -> None:
        cls._check_partitioned(table, layout)
        if grain != layout.grain:
            raise InvalidInputError(
                f"{table} is partitioned {layout.grain}; {key} is a {grain} key"
            )
