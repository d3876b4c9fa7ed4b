"""Where the quota state lives: one process (``MemoryQuotaStore``) or every process of an instance
(``SQLiteQuotaStore``; ``resources.ratelimit.postgres`` for several hosts). Each reservation is
booked atomically, so callers queue instead of stampeding."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from resources.endpoints import Endpoint
from resources.ratelimit.gcra import (
    Learning,
    QuotaState,
    Reservation,
    pause_state,
    reserve_state,
)
from resources.ratelimit.policy import QuotaPolicy

T = TypeVar("T")


class QuotaStore(Protocol):
    def reserve(
        self, key: str, *, weight: int, now: float, policy: QuotaPolicy | None
    ) -> Reservation:
        """Atomically book ``weight`` units under ``policy`` (or the learned one)."""
        ...

    def pause(self, key: str, *, until: float, reason: str, policy: QuotaPolicy | None) -> None:
        """Nobody sends under ``key`` before ``until`` (epoch seconds)."""
        ...

    def learn(self, key: str, policy: QuotaPolicy) -> None:
        """Remember a quota learned from the server, for every process."""
        ...

    def learned(self, key: str) -> QuotaPolicy | None: ...

    def paused_until(self, key: str) -> tuple[float, str]:
        """(epoch seconds before which nobody may send, why)."""
        ...

    def apply(self, key: str, now: float, change: Callable[[QuotaState], T]) -> T:
        """Run ``change`` on the key's state atomically (a key never seen starts at TAT =
        ``now``) and keep what it did: the pacer's learning steps
        (``resources/ratelimit/learning.py``) are such changes."""
        ...


# The columns of a persisted store's row per key, after ``key``: SQLite and PostgreSQL alike.
STATE_COLUMNS = (
    "tat",
    "paused_until",
    "pause_reason",
    "learned_limit",
    "learned_window_s",
    "learned_burst",
    "learned_source",
    "learning",
)


def state_from_row(row: tuple[Any, ...]) -> QuotaState:
    """A ``QuotaState`` from the ``STATE_COLUMNS`` of a stored row."""
    learned = QuotaPolicy(row[3], row[4], row[5], row[6]) if row[3] else None
    learning = Learning.from_json(json.loads(row[7])) if row[7] else Learning()
    return QuotaState(row[0], row[1], row[2], learned, learning)


def state_to_row(state: QuotaState) -> tuple[Any, ...]:
    """The ``STATE_COLUMNS`` values that store ``state``."""
    p = state.learned
    return (
        state.tat,
        state.paused_until,
        state.pause_reason,
        p.limit if p else None,
        p.window_s if p else None,
        p.burst if p else None,
        p.source if p else None,
        json.dumps(state.learning.to_json(), separators=(",", ":")),
    )


class TransactionalQuotaStore:
    """The ``QuotaStore`` methods of a store that keeps each key's ``QuotaState`` in a database.

    A subclass supplies two things: ``_transaction(key, now, change)`` loads the key's state
    (a key never seen starts at TAT = ``now``) with the key locked against every other process,
    applies ``change``, saves the state and returns what ``change`` returned; ``_peek(key)``
    reads the state without changing it (None: never seen).
    """

    def _transaction(self, key: str, now: float, change: Callable[[QuotaState], T]) -> T:
        raise NotImplementedError

    def apply(self, key: str, now: float, change: Callable[[QuotaState], T]) -> T:
        return self._transaction(key, now, change)

    def _peek(self, key: str) -> QuotaState | None:
        raise NotImplementedError

    def reserve(
        self, key: str, *, weight: int, now: float, policy: QuotaPolicy | None
    ) -> Reservation:
        return self._transaction(
            key, now, lambda s: reserve_state(s, weight=weight, now=now, policy=policy)
        )

    def pause(self, key: str, *, until: float, reason: str, policy: QuotaPolicy | None) -> None:
        self._transaction(
            key, until, lambda s: pause_state(s, until=until, reason=reason, policy=policy)
        )

    def learn(self, key: str, policy: QuotaPolicy) -> None:
        def change(state: QuotaState) -> None:
            state.learned = policy

        self._transaction(key, time.time(), change)

    def learned(self, key: str) -> QuotaPolicy | None:
        state = self._peek(key)
        return state.learned if state else None

    def paused_until(self, key: str) -> tuple[float, str]:
        state = self._peek(key)
        return (state.paused_until, state.pause_reason) if state else (0.0, "")


class MemoryQuotaStore:
    """Quota state of one process."""

    def __init__(self) -> None:
        self._states: dict[str, QuotaState] = {}
        self._lock = threading.Lock()

    def reserve(
        self, key: str, *, weight: int, now: float, policy: QuotaPolicy | None
    ) -> Reservation:
        with self._lock:
            state = self._states.setdefault(key, QuotaState(tat=now))
            return reserve_state(state, weight=weight, now=now, policy=policy)

    def pause(self, key: str, *, until: float, reason: str, policy: QuotaPolicy | None) -> None:
        with self._lock:
            state = self._states.setdefault(key, QuotaState())
            pause_state(state, until=until, reason=reason, policy=policy)

    def learn(self, key: str, policy: QuotaPolicy) -> None:
        with self._lock:
            self._states.setdefault(key, QuotaState()).learned = policy

    def learned(self, key: str) -> QuotaPolicy | None:
        with self._lock:
            state = self._states.get(key)
            return state.learned if state else None

    def paused_until(self, key: str) -> tuple[float, str]:
        with self._lock:
            state = self._states.get(key)
            return (state.paused_until, state.pause_reason) if state else (0.0, "")

    def apply(self, key: str, now: float, change: Callable[[QuotaState], T]) -> T:
        with self._lock:
            return change(self._states.setdefault(key, QuotaState(tat=now)))


class SQLiteQuotaStore(TransactionalQuotaStore):
    """Quota state shared by every process on the machine through one SQLite file.

    Each reservation is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken before the
    state is read), so two processes can never book the same slot. The state is a cache of the
    server's quota: ``synchronous=NORMAL`` is enough, losing it on power loss costs nothing.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        # Two processes opening a brand-new store at once race to switch it to WAL; SQLite
        # answers that race with SQLITE_BUSY *without* calling the busy handler, so the
        # connect timeout does not cover it. Retry the set-up until the same deadline.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self._init_schema()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    self._conn.close()
                    raise
                time.sleep(0.05)

    def _init_schema(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS quota_state (
                 key TEXT PRIMARY KEY,
                 tat REAL NOT NULL,
                 paused_until REAL NOT NULL DEFAULT 0,
                 pause_reason TEXT NOT NULL DEFAULT '',
                 learned_limit REAL, learned_window_s REAL, learned_burst INTEGER,
                 learned_source TEXT, learning TEXT
               )"""
        )
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(quota_state)")}
        if "learning" not in columns:  # a store written before the quota was learned
            self._conn.execute("ALTER TABLE quota_state ADD COLUMN learning TEXT")

    def close(self) -> None:
        self._conn.close()

    def _select(self, key: str) -> QuotaState | None:
        row = self._conn.execute(
            f"SELECT {', '.join(STATE_COLUMNS)} FROM quota_state WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else state_from_row(row)

    def _save(self, key: str, state: QuotaState) -> None:
        self._conn.execute(
            f"INSERT INTO quota_state (key, {', '.join(STATE_COLUMNS)})"
            f" VALUES (?, {', '.join('?' for _ in STATE_COLUMNS)})"
            " ON CONFLICT(key) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in STATE_COLUMNS),
            (key, *state_to_row(state)),
        )

    def _transaction(self, key: str, now: float, change: Callable[[QuotaState], T]) -> T:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                state = self._select(key)
                before = None if state is None else state_to_row(state)
                if state is None:
                    state = QuotaState(tat=now)
                result = change(state)
                if state_to_row(state) != before:  # most answers change nothing: no write
                    self._save(key, state)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def _peek(self, key: str) -> QuotaState | None:
        with self._lock:
            return self._select(key)


def quota_key(provider: str, base_url: str, api_key: str | None) -> str:
    """One quota per provider, server and credential: ``provider|public URL|fingerprint``.
    Neither the key nor a password in the URL is stored (``resources/endpoints.py``)."""
    endpoint = Endpoint.parse(base_url, where=f"{provider} base URL")
    return f"{provider}|{endpoint.public_url}|{endpoint.fingerprint(api_key)}"
