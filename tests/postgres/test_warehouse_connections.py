"""PostgresWarehouse keeps its connections and its checks between calls: what that must not
break (a connection the server ended, a table dropped behind its back, several threads) and
what it must not leave behind (idle connections after close() or after a Dagster step)."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta
from typing import Any

import dagster as dg
import pytest

from fin_assets.lib.resources import WarehouseResource
from resources.errors import StorageError
from resources.storage.postgres import PostgresWarehouse
from tests.helpers import ExecutemanyPostgresWarehouse, wait_for
from tests.postgres.test_warehouse_postgres import (
    HOUR,
    HOUR_START,
    HeldWarehouse,
    bars,
    query,
    run_in_thread,
)

NEXT_HOUR = "2026-01-05-04:00"


@pytest.fixture
def app() -> str:
    """An application_name of this test's own, so its connections can be counted alone."""
    return f"fin-assets-test-{secrets.token_hex(4)}"


def named(url: str, app: str) -> str:
    # connect() keeps what the URL sets: the warehouse's sessions carry this test's name.
    return f"{url}?application_name={app}"


def operator(db: Any, statement: str) -> None:
    """A statement someone else runs on the warehouse's database (no result)."""
    with db.cursor() as cur:
        cur.execute(statement)


def backends(db: Any, app: str) -> list[int]:
    rows = query(db, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", app)
    return sorted(pid for (pid,) in rows)


def terminate(db: Any, app: str) -> None:
    """What a server restart, an idle timeout or an operator does to an idle session."""
    pids = backends(db, app)
    assert pids, "no session to end"
    query(db, "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", pids)
    wait_for("the sessions to end", lambda: not backends(db, app), timeout=10)


def test_calls_share_one_connection(pg_url: str, pg_schema: str, db: Any, app: str) -> None:
    with ExecutemanyPostgresWarehouse(named(pg_url, app), schema=pg_schema) as wh:
        wh.replace_partition("core_bars", HOUR, bars(1, 5))
        first = backends(db, app)
        for version in range(2, 5):
            wh.replace_partition("core_bars", HOUR, bars(version, 5))
            wh.replace_partition_executemany(
                "core_bars", NEXT_HOUR, bars(version, 5, start=HOUR_START + timedelta(hours=1))
            )
            assert wh.read_partition("core_bars", HOUR).equals(bars(version, 5))  # type: ignore[union-attr]
            assert wh.partition_keys("core_bars") == [HOUR, NEXT_HOUR]
            assert wh.scan("core_bars", [HOUR]).collect().equals(bars(version, 5))
        assert len(first) == 1
        assert backends(db, app) == first
        # Between calls the session is idle, not idle in a transaction holding share locks
        # that would block someone else's DROP or ALTER (a listing commits nothing).
        wh.partition_keys("core_bars")
        states = query(db, "SELECT state FROM pg_stat_activity WHERE application_name = %s", app)
        assert states == [("idle",)]
    wait_for("close() to end the session", lambda: not backends(db, app), timeout=10)


def test_a_write_after_the_server_ended_the_connection_succeeds(
    pg_url: str, pg_schema: str, db: Any, app: str
) -> None:
    with PostgresWarehouse(named(pg_url, app), schema=pg_schema) as wh:
        wh.replace_partition("core_bars", HOUR, bars(1, 5))
        terminate(db, app)

        wh.replace_partition("core_bars", HOUR, bars(2, 5))  # reconnects, writes once
        assert len(backends(db, app)) == 1
        terminate(db, app)
        back = wh.read_partition("core_bars", HOUR)  # reads reconnect too
        assert back is not None and back.equals(bars(2, 5))
        terminate(db, app)
        assert wh.partition_keys("core_bars") == [HOUR]
    assert query(db, f"SELECT count(*) FROM {pg_schema}.core_bars") == [(15,)]


def test_a_server_that_stays_away_is_an_error_naming_the_partition_without_password(
    pg_url: str, pg_schema: str, db: Any, app: str
) -> None:
    wh = PostgresWarehouse(named(pg_url, app), schema=pg_schema)
    wh.replace_partition("core_bars", HOUR, bars(1, 5))
    # The connection it holds dies, and the server it would reconnect to is not there: one
    # retry, then the error (never a silent success, never a loop).
    wh._url = "postgresql://fin:s3cret@127.0.0.1:1/db?password=s3cret"  # nothing listens on 1
    terminate(db, app)
    with pytest.raises(StorageError) as info:
        wh.replace_partition("core_bars", HOUR, bars(2, 5))
    message = str(info.value)
    assert f"core_bars partition {HOUR}" in message
    assert "cannot connect" in message
    assert "s3cret" not in message
    wh.close()


def test_a_table_dropped_behind_the_warehouse_is_recreated(
    pg_url: str, pg_schema: str, db: Any, app: str
) -> None:
    with PostgresWarehouse(named(pg_url, app), schema=pg_schema) as wh:
        wh.replace_partition("core_bars", HOUR, bars(1, 5))
        operator(db, f"DROP TABLE {pg_schema}.core_bars")

        with pytest.raises(StorageError, match=f"core_bars partition {HOUR}: .*gone"):
            wh.read_partition("core_bars", HOUR)
        later = bars(2, 4, start=HOUR_START + timedelta(hours=1))
        wh.replace_partition("core_bars", NEXT_HOUR, later)

        # The rows of HOUR went with the table: it reads as not materialized, not as empty.
        assert wh.partition_keys("core_bars") == [NEXT_HOUR]
        assert wh.read_partition("core_bars", HOUR) is None
        assert wh.read_partition("core_bars", NEXT_HOUR).equals(later)  # type: ignore[union-attr]

        operator(db, f"DROP SCHEMA {pg_schema} CASCADE")  # registry and tables, all gone
        wh.replace_partition("core_bars", HOUR, bars(3, 2))
        assert wh.partition_keys("core_bars") == [HOUR]
        assert wh.read_partition("core_bars", HOUR).equals(bars(3, 2))  # type: ignore[union-attr]


def test_a_table_changed_behind_the_warehouse_is_an_error_naming_it(
    pg_url: str, pg_schema: str, db: Any
) -> None:
    with PostgresWarehouse(pg_url, schema=pg_schema) as wh:
        wh.replace_partition("core_bars", HOUR, bars(1, 5))
        operator(db, f"ALTER TABLE {pg_schema}.core_bars DROP COLUMN vwap")
        with pytest.raises(StorageError, match=f"core_bars partition {HOUR}: .*vwap"):
            wh.replace_partition("core_bars", HOUR, bars(2, 5))
    assert query(db, f"SELECT DISTINCT provider FROM {pg_schema}.core_bars") == [("v1",)]


def test_threads_sharing_one_warehouse_write_every_partition(
    pg_url: str, pg_schema: str, db: Any, app: str
) -> None:
    hours = [HOUR_START + timedelta(hours=h) for h in range(8)]
    frames = {f"{h:%Y-%m-%d-%H}:00": bars(h.hour, 50, start=h) for h in hours}
    with PostgresWarehouse(named(pg_url, app), schema=pg_schema) as wh:
        wh.replace_partition("core_bars", HOUR, frames[HOUR])  # creates the table
        barrier = threading.Barrier(4)

        def writer(keys: list[str]) -> None:
            barrier.wait()
            for _ in range(3):
                for key in keys:
                    wh.replace_partition("core_bars", key, frames[key])
                    assert wh.read_partition("core_bars", key).equals(frames[key])  # type: ignore[union-attr]

        keys = sorted(frames)
        runs = [run_in_thread(writer, keys[i::4]) for i in range(4)]
        for thread, _ in runs:
            thread.join(120)
        assert [errors for _, errors in runs] == [[], [], [], []]
        assert 1 <= len(backends(db, app)) <= 4  # at most one per thread at a time
        assert wh.partition_keys("core_bars") == keys
    wait_for("close() to end every session", lambda: not backends(db, app), timeout=10)
    assert query(db, f"SELECT count(*) FROM {pg_schema}.core_bars") == [(8 * 150,)]


def test_close_ends_idle_connections_and_those_in_use_when_their_call_ends(
    pg_url: str, pg_schema: str, db: Any, app: str
) -> None:
    wh = PostgresWarehouse(named(pg_url, app), schema=pg_schema)
    wh.replace_partition("core_bars", HOUR, bars(0, 5))
    held = HeldWarehouse(named(pg_url, app), schema=pg_schema)
    thread, errors = run_in_thread(
        held.replace_partition,
        "core_bars",
        NEXT_HOUR,
        bars(1, 2000, start=HOUR_START + timedelta(hours=1)),
    )
    assert held.reached.wait(30), "the write never reached its COPY"
    assert len(backends(db, app)) == 2  # wh's idle one, held's busy one

    wh.close()
    held.close()  # mid-COPY: the write goes on, its connection is closed when it ends
    wait_for("the idle session to end", lambda: len(backends(db, app)) == 1, timeout=10)
    held.release.set()
    thread.join(30)
    assert errors == []
    wait_for("the busy session to end after its call", lambda: not backends(db, app), timeout=10)

    # A closed warehouse still works: it connects again (and can be closed again).
    assert held.read_partition("core_bars", NEXT_HOUR).height == 6000  # type: ignore[union-attr]
    held.close()
    wait_for("the second close", lambda: not backends(db, app), timeout=10)


def test_a_dagster_step_closes_the_warehouse_it_used(pg_url: str, db: Any, app: str) -> None:
    table = f"probe_{secrets.token_hex(4)}"
    used: list[Any] = []  # still referenced after the run: only close() ends its session

    @dg.asset
    def probe(warehouse: WarehouseResource) -> None:
        wh = warehouse.warehouse()
        assert warehouse.warehouse() is wh  # one object, one connection, for the whole step
        wh.replace_partition(table, HOUR, bars(1, 3))
        wh.replace_partition(table, NEXT_HOUR, bars(2, 3, start=HOUR_START + timedelta(hours=1)))
        used.append((wh, len(backends(db, app))))

    result = dg.materialize(
        [probe], resources={"warehouse": WarehouseResource(url=named(pg_url, app))}
    )

    assert result.success
    assert [sessions for _, sessions in used] == [1]
    wait_for(
        "the step's teardown to close the warehouse", lambda: not backends(db, app), timeout=10
    )
