"""The rate-limit engine: spend the provider's whole quota, never more, from every process.

Pacing is GCRA (the "virtual scheduling" form of a token bucket): a quota of ``limit`` units per
``window_s`` seconds with a ``burst`` of units that may go back to back. Its whole state per
(provider, server, credential) is one number — the theoretical arrival time (TAT) — plus a
"paused until" instant set by a 429 or a ban. Each reservation books its slot atomically in a
``QuotaStore``, so callers queue instead of stampeding:

- ``MemoryQuotaStore``: one process (tests, a single script);
- ``SQLiteQuotaStore``: every process and run of a Dagster instance (a file next to it);
- a PostgreSQL store (production, several hosts) implements the same three methods.

The quota is either configured (the provider's documented one) or learned from the server's
own headers (``RateLimit-Policy``, ``X-RateLimit-*``), and a 429's ``Retry-After`` seen by one
process pauses all of them. Pacing keeps a small safety margin below the quota (2 % of the rate
and one unit of burst) so that clock jitter and uneven network delay do not turn into 429s.
"""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

SAFETY_RATE = 0.98  # pace at 98 % of the quota's rate
EPOCH_THRESHOLD = 1_000_000_000  # a "reset" above this is a Unix time, not seconds-from-now
T = TypeVar("T")


# -- policies and what servers say --------------------------------------------------------------
@dataclass(frozen=True)
class QuotaPolicy:
    """``limit`` units per ``window_s`` seconds, at most ``burst`` units back to back."""

    limit: float
    window_s: float
    burst: int = 1
    source: str = "configured"

    def __post_init__(self) -> None:
        if not (self.limit > 0 and self.window_s > 0 and self.burst >= 1):
            raise ValueError(
                f"invalid quota {self.limit}/{self.window_s}s burst {self.burst}: "
                "limit and window must be positive, burst at least 1"
            )

    @property
    def rate(self) -> float:
        return self.limit / self.window_s

    def paced(self) -> tuple[float, int]:
        """(seconds per unit, burst) the pacer actually uses: a margin under the quota."""
        return 1.0 / (self.rate * SAFETY_RATE), max(1, self.burst - 1)

    def describe(self) -> str:
        return f"{self.limit:g}/{self.window_s:g}s burst {self.burst} ({self.source})"


@dataclass(frozen=True)
class RateLimitSignal:
    """What one response said about the quota. Every field may be unknown."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None  # seconds from now until the quota is replenished
    policy: QuotaPolicy | None = None
    source: str = ""


_PARAM = re.compile(r'(?:^|;)\s*([a-z][a-z0-9_-]*)\s*=\s*("?)([^;",]*)\2', re.IGNORECASE)


def _params(item: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(3) for m in _PARAM.finditer(item)}


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def reset_to_seconds(value: float, *, now_epoch: float) -> float:
    """``X-RateLimit-Reset`` is seconds-from-now for some providers, a Unix time (s or ms) for
    others: a value past 2001-09-09 cannot be a sensible delay, so it is read as an epoch."""
    if value >= EPOCH_THRESHOLD * 1000:
        value /= 1000.0  # epoch milliseconds
    if value >= EPOCH_THRESHOLD:
        return max(0.0, value - now_epoch)
    return max(0.0, value)


def parse_rate_limit_headers(
    headers: Mapping[str, str], *, now_epoch: float | None = None
) -> RateLimitSignal | None:
    """Read the IETF draft ``RateLimit``/``RateLimit-Policy`` and the ``X-RateLimit-*`` family.

    ``RateLimit-Policy: "default";q=100;w=60`` (draft 08+) or ``100;w=60`` (draft 07) gives the
    quota itself; ``RateLimit: "default";r=50;t=30`` or ``limit=100, remaining=50, reset=30``
    and ``X-RateLimit-Limit/-Remaining/-Reset`` give the current state. Headers are matched
    case-insensitively; anything unparseable is ignored rather than trusted.
    """
    h = {k.lower(): v for k, v in headers.items()}
    now_epoch = time.time() if now_epoch is None else now_epoch
    policy = None
    limit = remaining = reset_s = None
    sources = []
    if "ratelimit-policy" in h:
        first = h["ratelimit-policy"].split(",")[0]
        params = _params(first)
        quota = _number(params.get("q")) or _number(first.split(";")[0].strip().strip('"'))
        window = _number(params.get("w"))
        if quota and window and quota > 0 and window > 0:
            burst = _number(params.get("burst"))
            policy = QuotaPolicy(quota, window, max(1, int(burst or 1)), "RateLimit-Policy")
            limit = quota
            sources.append("RateLimit-Policy")
    if "ratelimit" in h:
        value = h["ratelimit"]
        params = _params(value.replace(",", ";"))
        remaining = _number(params.get("r", params.get("remaining")))
        reset = _number(params.get("t", params.get("reset")))
        reset_s = reset_to_seconds(reset, now_epoch=now_epoch) if reset is not None else None
        limit = _number(params.get("limit")) or limit
        sources.append("RateLimit")
    for name in ("x-ratelimit-limit", "ratelimit-limit"):
        if name in h and limit is None:
            limit = _number(h[name])
    for name in ("x-ratelimit-remaining", "ratelimit-remaining"):
        if name in h and remaining is None:
            remaining = _number(h[name])
            sources.append(name)
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        if name in h and reset_s is None:
            reset = _number(h[name])
            reset_s = reset_to_seconds(reset, now_epoch=now_epoch) if reset is not None else None
    if policy is None and limit is None and remaining is None and reset_s is None:
        return None
    return RateLimitSignal(limit, remaining, reset_s, policy, "+".join(sources) or "headers")


# -- the shared state -----------------------------------------------------------------------
@dataclass(frozen=True)
class Reservation:
    wait_s: float
    reason: str


def gcra_book(
    *,
    tat: float,
    paused_until: float,
    now: float,
    weight: int,
    interval: float | None,
    burst: int,
) -> tuple[float, float]:
    """Book ``weight`` units: (when they may be sent, the new TAT). Pure, so every store
    (memory, SQLite, PostgreSQL) computes exactly the same schedule."""
    if interval is None:  # no quota known yet: only a pause holds us back
        return max(now, paused_until), tat
    # Standard GCRA: the booking moves the TAT by weight intervals from max(TAT, now), and may
    # be sent once that TAT is no more than `burst` intervals ahead of the send time.
    new_tat = max(tat, now) + weight * interval
    send_at = new_tat - burst * interval
    if now < paused_until and send_at < paused_until:  # as if it arrived when the pause ends
        new_tat += paused_until - send_at
        send_at = paused_until
    return max(now, send_at), new_tat


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


@dataclass
class _State:
    tat: float = 0.0
    paused_until: float = 0.0
    pause_reason: str = ""
    learned: QuotaPolicy | None = None


def _reserve_state(
    state: _State, *, weight: int, now: float, policy: QuotaPolicy | None
) -> Reservation:
    active = policy or state.learned
    interval, burst = active.paced() if active else (None, 1)
    send_at, state.tat = gcra_book(
        tat=state.tat,
        paused_until=state.paused_until,
        now=now,
        weight=weight,
        interval=interval,
        burst=burst,
    )
    wait = send_at - now
    if state.paused_until > now and send_at <= state.paused_until + 1e-9:
        reason = f"shared pause: {state.pause_reason}"
    elif active is not None:
        reason = f"pacing to quota {active.describe()}"
    else:
        reason = "no quota known yet"
    return Reservation(max(0.0, wait), reason)


def _pause_state(state: _State, *, until: float, reason: str, policy: QuotaPolicy | None) -> None:
    if until > state.paused_until:
        state.paused_until, state.pause_reason = until, reason
    active = policy or state.learned
    if active is not None:
        # After the pause, one request at its end and then the paced rate, not a full burst:
        # the server's bucket is only known to hold one unit when Retry-After runs out.
        interval, burst = active.paced()
        state.tat = max(state.tat, until + (burst - 1) * interval)


# The columns of a persisted store's row per key, after ``key``: SQLite and PostgreSQL alike.
STATE_COLUMNS = (
    "tat",
    "paused_until",
    "pause_reason",
    "learned_limit",
    "learned_window_s",
    "learned_burst",
    "learned_source",
)


def _state_from_row(row: tuple[Any, ...]) -> _State:
    """A ``_State`` from the ``STATE_COLUMNS`` of a stored row."""
    learned = QuotaPolicy(row[3], row[4], row[5], row[6]) if row[3] else None
    return _State(row[0], row[1], row[2], learned)


def _state_to_row(state: _State) -> tuple[Any, ...]:
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
    )


class _TransactionalQuotaStore:
    """The ``QuotaStore`` methods of a store that keeps each key's ``_State`` in a database.

    A subclass supplies two things: ``_transaction(key, now, change)`` loads the key's state
    (a key never seen starts at TAT = ``now``) with the key locked against every other process,
    applies ``change``, saves the state and returns what ``change`` returned; ``_peek(key)``
    reads the state without changing it (None: never seen).
    """

    def _transaction(self, key: str, now: float, change: Callable[[_State], T]) -> T:
        raise NotImplementedError

    def _peek(self, key: str) -> _State | None:
        raise NotImplementedError

    def reserve(
        self, key: str, *, weight: int, now: float, policy: QuotaPolicy | None
    ) -> Reservation:
        return self._transaction(
            key, now, lambda s: _reserve_state(s, weight=weight, now=now, policy=policy)
        )

    def pause(self, key: str, *, until: float, reason: str, policy: QuotaPolicy | None) -> None:
        self._transaction(
            key, until, lambda s: _pause_state(s, until=until, reason=reason, policy=policy)
        )

    def learn(self, key: str, policy: QuotaPolicy) -> None:
        def change(state: _State) -> None:
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
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def reserve(
        self, key: str, *, weight: int, now: float, policy: QuotaPolicy | None
    ) -> Reservation:
        with self._lock:
            state = self._states.setdefault(key, _State(tat=now))
            return _reserve_state(state, weight=weight, now=now, policy=policy)

    def pause(self, key: str, *, until: float, reason: str, policy: QuotaPolicy | None) -> None:
        with self._lock:
            state = self._states.setdefault(key, _State())
            _pause_state(state, until=until, reason=reason, policy=policy)

    def learn(self, key: str, policy: QuotaPolicy) -> None:
        with self._lock:
            self._states.setdefault(key, _State()).learned = policy

    def learned(self, key: str) -> QuotaPolicy | None:
        with self._lock:
            state = self._states.get(key)
            return state.learned if state else None

    def paused_until(self, key: str) -> tuple[float, str]:
        with self._lock:
            state = self._states.get(key)
            return (state.paused_until, state.pause_reason) if state else (0.0, "")


class SQLiteQuotaStore(_TransactionalQuotaStore):
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
                 learned_source TEXT
               )"""
        )

    def close(self) -> None:
        self._conn.close()

    def _select(self, key: str) -> _State | None:
        row = self._conn.execute(
            f"SELECT {', '.join(STATE_COLUMNS)} FROM quota_state WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else _state_from_row(row)

    def _save(self, key: str, state: _State) -> None:
        self._conn.execute(
            "INSERT INTO quota_state (key, tat, paused_until, pause_reason, learned_limit,"
            " learned_window_s, learned_burst, learned_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET tat = excluded.tat,"
            " paused_until = excluded.paused_until, pause_reason = excluded.pause_reason,"
            " learned_limit = excluded.learned_limit, learned_window_s = excluded.learned_window_s,"
            " learned_burst = excluded.learned_burst, learned_source = excluded.learned_source",
            (key, *_state_to_row(state)),
        )

    def _transaction(self, key: str, now: float, change: Callable[[_State], T]) -> T:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                state = self._select(key)
                if state is None:
                    state = _State(tat=now)
                result = change(state)
                self._save(key, state)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def _peek(self, key: str) -> _State | None:
        with self._lock:
            return self._select(key)


def quota_key(provider: str, base_url: str, api_key: str | None) -> str:
    """One quota per provider, server and credential; the key itself is never stored."""
    credential = hashlib.sha256(api_key.encode()).hexdigest()[:12] if api_key else "anonymous"
    return f"{provider}|{base_url.rstrip('/')}|{credential}"


# -- what the client talks to ---------------------------------------------------------------
class Pacer(Protocol):
    def reserve(self, weight: int = 1) -> float:
        """Claim ``weight`` units of quota; return how many seconds to wait before sending."""
        ...

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        """The server said stop (429, ban): nobody sends for ``seconds``."""
        ...

    def observe(self, signal: RateLimitSignal | None) -> None:
        """Learn from what a response said about the quota."""
        ...

    def describe_last_wait(self) -> str: ...

    def pause_remaining(self) -> tuple[float, str]:
        """Seconds of a shared pause still to run (set after our slot was booked), and why."""
        ...


class NoPacer:
    def reserve(self, weight: int = 1) -> float:
        return 0.0

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        return None

    def observe(self, signal: RateLimitSignal | None) -> None:
        return None

    def describe_last_wait(self) -> str:
        return "no pacing"

    def pause_remaining(self) -> tuple[float, str]:
        return 0.0, ""


class SharedPacer:
    """Pacing for one quota key over a ``QuotaStore``, configured or learning from headers."""

    def __init__(
        self,
        store: QuotaStore,
        key: str,
        *,
        policy: QuotaPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.key = key
        self.policy = policy  # None: learn it from the server
        self._clock = clock
        self._last_reason = ""
        self._window_estimate = 0.0

    def reserve(self, weight: int = 1) -> float:
        booking = self.store.reserve(self.key, weight=weight, now=self._clock(), policy=self.policy)
        self._last_reason = booking.reason
        return booking.wait_s

    def describe_last_wait(self) -> str:
        return self._last_reason

    def pause_remaining(self) -> tuple[float, str]:
        until, reason = self.store.paused_until(self.key)
        return max(0.0, until - self._clock()), reason

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        self.store.pause(
            self.key,
            until=self._clock() + seconds,
            reason=reason or "server asked to wait",
            policy=self.policy,
        )

    def observe(self, signal: RateLimitSignal | None) -> None:
        if signal is None:
            return
        if self.policy is None:
            learned = signal.policy or self._policy_from_counters(signal)
            if learned is not None and learned != self.store.learned(self.key):
                self.store.learn(self.key, learned)
        # The quota is spent (someone else may share it: another tool on the same IP or key):
        # wait for the server's reset instead of collecting a 429. Under a stated token-bucket
        # policy, remaining 0 is the normal state of a paced client, not a reason to stop.
        spent = signal.remaining is not None and signal.remaining <= 0
        if spent and signal.reset_s and signal.policy is None:
            self.pause_for(signal.reset_s, reason=f"quota spent ({signal.source})")

    def _policy_from_counters(self, signal: RateLimitSignal) -> QuotaPolicy | None:
        """``X-RateLimit-Limit`` with a reset but no policy: the longest reset seen so far is
        our estimate of the window (the first request of a window sees the whole of it)."""
        if not signal.limit or not signal.reset_s:
            return None
        self._window_estimate = max(self._window_estimate, signal.reset_s)
        return QuotaPolicy(signal.limit, self._window_estimate, 1, signal.source or "X-RateLimit")


class TokenBucketPacer(SharedPacer):
    """In-process pacing at a fixed rate: a ``SharedPacer`` over a private memory store."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        super().__init__(
            MemoryQuotaStore(), "local", policy=_ExactPolicy(rate_per_s, 1.0, burst), clock=clock
        )


class _ExactPolicy(QuotaPolicy):
    """A policy paced exactly at its rate and burst: for in-process tests and tools."""

    def paced(self) -> tuple[float, int]:
        return 1.0 / self.rate, self.burst
