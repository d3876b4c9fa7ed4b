"""PostgresQuotaStore: the schedule SQLiteQuotaStore books, shared by every process of one DB."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from fin_assets.lib.resources import MarketApiResource
from resources.errors import StorageError
from resources.ratelimit.gcra import Reservation
from resources.ratelimit.policy import ARRIVAL_JITTER_S, QuotaPolicy
from resources.ratelimit.postgres import PostgresQuotaStore
from resources.ratelimit.stores import MemoryQuotaStore, SQLiteQuotaStore

POLICY = QuotaPolicy(20, 1.0, 5)


@pytest.fixture
def key() -> str:
    return f"simulator|http://127.0.0.1:8765|{secrets.token_hex(6)}"


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[PostgresQuotaStore, PostgresQuotaStore]]:
    one, two = PostgresQuotaStore(pg_url), PostgresQuotaStore(pg_url)  # two "processes"
    yield one, two
    one.close()
    two.close()


def test_two_stores_book_exactly_the_sqlite_schedule(
    stores: tuple[PostgresQuotaStore, PostgresQuotaStore], key: str, tmp_path: Path
) -> None:
    reference = SQLiteQuotaStore(tmp_path / "quota.sqlite")
    learned = QuotaPolicy(10, 2.0, 3, "RateLimit-Policy")
    t0 = 1_767_600_000.123
    # (method, args): alternating between the two PostgreSQL stores, the same calls to SQLite.
    calls: list[tuple[str, dict[str, object]]] = [
        ("reserve", {"weight": 1, "now": t0, "policy": None}),
        ("learn", {"policy": learned}),
        *[("reserve", {"weight": 1, "now": t0 + i * 0.01, "policy": None}) for i in range(6)],
        ("reserve", {"weight": 3, "now": t0 + 0.1, "policy": POLICY}),
        *[("reserve", {"weight": 1, "now": t0 + 0.1, "policy": POLICY}) for _ in range(8)],
        ("pause", {"until": t0 + 5.5, "reason": "429 from simulator", "policy": POLICY}),
        *[("reserve", {"weight": 2, "now": t0 + 0.2 + i / 3, "policy": POLICY}) for i in range(5)],
        ("reserve", {"weight": 1, "now": t0 + 60, "policy": None}),
    ]
    try:
        for i, (method, kwargs) in enumerate(calls):
            ours = getattr(stores[i % 2], method)(key, **kwargs)
            theirs = getattr(reference, method)(key, **kwargs)
            assert ours == theirs, f"call {i}: {method}({kwargs})"
            if isinstance(ours, Reservation):
                assert ours.wait_s == theirs.wait_s  # to the last bit, not approximately
        assert stores[0].learned(key) == reference.learned(key) == learned
        assert stores[1].paused_until(key) == reference.paused_until(key)
    finally:
        reference.close()


def test_a_pause_and_a_learned_policy_are_seen_by_the_other_store(
    stores: tuple[PostgresQuotaStore, PostgresQuotaStore], key: str
) -> None:
    one, two = stores
    assert two.paused_until(key) == (0.0, "")
    assert two.learned(key) is None

    one.pause(key, until=1_767_600_100.5, reason="Retry-After 30 s", policy=None)
    one.learn(key, QuotaPolicy(100, 60.0, 1, "X-RateLimit"))

    assert two.paused_until(key) == (1_767_600_100.5, "Retry-After 30 s")
    assert two.learned(key) == QuotaPolicy(100, 60.0, 1, "X-RateLimit")
    booking = two.reserve(key, weight=1, now=1_767_600_090.0, policy=None)
    # The pause, then the pacer's arrival-jitter allowance (resources/ratelimit/policy.py).
    assert booking.wait_s == pytest.approx(10.5 + ARRIVAL_JITTER_S)
    assert booking.reason == "shared pause: Retry-After 30 s"


def test_concurrent_bookings_from_two_stores_never_share_a_slot(
    stores: tuple[PostgresQuotaStore, PostgresQuotaStore], key: str
) -> None:
    now, per_thread = 1_767_600_000.0, 25
    waits: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def book(store: PostgresQuotaStore) -> None:
        barrier.wait()
        for _ in range(per_thread):
            wait = store.reserve(key, weight=1, now=now, policy=POLICY).wait_s
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=book, args=(stores[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    memory = MemoryQuotaStore()  # the same 100 bookings one after the other
    expected = [memory.reserve(key, weight=1, now=now, policy=POLICY).wait_s for _ in range(100)]
    assert sorted(waits) == expected


def test_the_table_has_the_sqlite_columns(
    stores: tuple[PostgresQuotaStore, PostgresQuotaStore], pg_url: str, tmp_path: Path
) -> None:
    SQLiteQuotaStore(tmp_path / "q.sqlite").close()
    with sqlite3.connect(tmp_path / "q.sqlite") as lite:
        sqlite_columns = [row[1] for row in lite.execute("PRAGMA table_info(quota_state)")]
    lite.close()
    conn = psycopg2.connect(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'fin_assets_quota_state' ORDER BY ordinal_position"
            )
            pg_columns = [name for (name,) in cur.fetchall()]
    finally:
        conn.close()
    assert pg_columns == sqlite_columns


def test_market_api_resource_picks_the_store_from_the_setting(pg_url: str, tmp_path: Path) -> None:
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        pacer = MarketApiResource(quota_store=url).pacer()
        assert isinstance(pacer.store, PostgresQuotaStore)
        pacer.close()
    sqlite_pacer = MarketApiResource(quota_store=str(tmp_path / "q.sqlite")).pacer()
    assert isinstance(sqlite_pacer.store, SQLiteQuotaStore)
    sqlite_pacer.close()
    assert isinstance(MarketApiResource().pacer().store, MemoryQuotaStore)


def test_an_unreachable_database_fails_at_once_without_the_password() -> None:
    with pytest.raises(StorageError) as info:
        PostgresQuotaStore("postgresql://fin:s3cret@127.0.0.1:1/quota")
    assert "cannot connect" in str(info.value)
    assert "s3cret" not in str(info.value)
