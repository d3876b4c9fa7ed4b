"""``PostgresQuotaStore``: the shared quota state in PostgreSQL, for processes on several hosts.

The same state and the same arithmetic as ``SQLiteQuotaStore``: one row per quota key in
``fin_assets_quota_state`` (the SQLite table's columns), and every change is one transaction that
locks the key's row with ``SELECT ... FOR UPDATE``; the quota methods themselves are the SQLite
store's, from ``TransactionalQuotaStore`` in ``resources/ratelimit.py``. Given the same calls, it
books exactly the slots the SQLite store books, and two processes can never book the same slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
from psycopg2 import sql

from resources.errors import StorageError
from resources.ratelimit.gcra import QuotaState
from resources.ratelimit.stores import (
    STATE_COLUMNS,
    TransactionalQuotaStore,
    state_from_row,
    state_to_row,
)
from resources.storage.pg import connect, redact_url

TABLE = "fin_assets_quota_state"
_TABLE = sql.Identifier(TABLE)
_CREATE = sql.SQL(
    """CREATE TABLE IF NOT EXISTS {} (
         key text PRIMARY KEY,
         tat double precision NOT NULL,
         paused_until double precision NOT NULL DEFAULT 0,
         pause_reason text NOT NULL DEFAULT '',
         learned_limit double precision, learned_window_s double precision,
         learned_burst integer, learned_source text, learning text
       )"""
).format(_TABLE)
# A table created before the quota was learned gains the column (idempotent, no lock needed).
_MIGRATE = sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS learning text").format(_TABLE)
_INSERT = sql.SQL("INSERT INTO {} (key, tat) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING").format(
    _TABLE
)
_SELECT = sql.SQL("SELECT {} FROM {} WHERE key = %s").format(
    sql.SQL(", ").join(map(sql.Identifier, STATE_COLUMNS)), _TABLE
)
_SELECT_FOR_UPDATE = _SELECT + sql.SQL(" FOR UPDATE")
_UPDATE = sql.SQL("UPDATE {} SET {} WHERE key = %s").format(
    _TABLE, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in STATE_COLUMNS)
)
_CREATE_LOCK_KEY = 0x66696E5F71756F74  # "fin_quot": any constant every process agrees on

T = TypeVar("T")


class PostgresQuotaStore(TransactionalQuotaStore):
    """Quota state shared by every process that reaches one PostgreSQL database.

    One connection per store, used under a lock (one transaction at a time per process, as with
    SQLite). A connection that failed is dropped and the next call opens a new one, so a
    database restart costs one failed reservation, not the rest of the run.
    """

    def __init__(self, url: str) -> None:
        self.location = redact_url(url)
        self._url = url
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._lock:
            self._connection()  # fail at start, not at the first request, if it is unreachable

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = connect(self._url, application_name="fin-assets quota")
        except psycopg2.Error as exc:
            raise StorageError(f"quota store {self.location}: cannot connect: {exc}") from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s) IS NULL", (TABLE,))
                if cur.fetchone()[0]:
                    # Processes starting together would race on CREATE TABLE IF NOT EXISTS
                    # (one fails on the catalog's unique index): serialize on an advisory lock.
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK_KEY,))
                    cur.execute(_CREATE)
                cur.execute(
                    "SELECT 1 FROM information_schema.columns"
                    " WHERE table_name = %s AND column_name = 'learning'",
                    (TABLE,),
                )
                if cur.fetchone() is None:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK_KEY,))
                    cur.execute(_MIGRATE)
            conn.commit()
        except psycopg2.Error as exc:
            conn.close()
            raise StorageError(f"quota store {self.location}: {exc}") from exc
        self._conn = conn
        return conn

    def _run(self, what: str, work: Callable[[Any], T]) -> T:
        """``work`` in one transaction on the store's connection, committed when it returns."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    result = work(cur)
                conn.commit()
                return result
            except psycopg2.Error as exc:
                # The connection may be dead (server restart, network): drop it, reconnect later.
                conn.close()
                self._conn = None
                raise StorageError(f"quota store {self.location}: {what}: {exc}") from exc
            except BaseException:
                conn.rollback()
                raise

    def _transaction(self, key: str, now: float, change: Callable[[QuotaState], T]) -> T:
        def work(cur: Any) -> T:
            # A new key starts at TAT = now, as SQLiteQuotaStore's missing row does; then the
            # row exists and FOR UPDATE makes every other booking of this key wait for ours.
            cur.execute(_INSERT, (key, now))
            cur.execute(_SELECT_FOR_UPDATE, (key,))
            state = state_from_row(cur.fetchone())
            before = state_to_row(state)
            result = change(state)
            if state_to_row(state) != before:  # most answers change nothing: no write
                cur.execute(_UPDATE, (*state_to_row(state), key))
            return result

        return self._run(f"key {key}", work)

    def _peek(self, key: str) -> QuotaState | None:
        def work(cur: Any) -> QuotaState | None:
            cur.execute(_SELECT, (key,))
            row = cur.fetchone()
            return None if row is None else state_from_row(row)

        return self._run(f"key {key}", work)
