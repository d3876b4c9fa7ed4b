"""The PostgreSQL instance's event log (fin_assets/dagster_internals/event_log_postgres.py)
against dagster-postgres's own storage, each on a database of its own: the same runs must leave
the same record, whichever wrote it, and a batch is written whole or not at all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster_postgres import PostgresEventLogStorage

import fin_assets.dagster_internals.event_log_postgres as event_log_postgres
from fin_assets.dagster_internals.event_log_postgres import FinAssetsPostgresEventLogStorage
from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator
from tests.conftest import fin_env, run_range
from tests.integration.test_event_log import HOURS, event_log_scenario
from tests.postgres.conftest import throwaway_database

OURS = ("fin_assets.dagster_internals.event_log_postgres", "FinAssetsPostgresEventLogStorage")
STOCK = ("dagster_postgres.event_log", "PostgresEventLogStorage")


@contextlib.contextmanager
def instance_on(url: str, storage: tuple[str, str]) -> Iterator[dg.DagsterInstance]:
    module, name = storage
    # SQLAlchemy 2.1 takes postgresql:// for psycopg 3; dagster-postgres uses psycopg2.
    config = {"postgres_url": url.replace("postgresql://", "postgresql+psycopg2://", 1)}
    overrides = {"event_log_storage": {"module": module, "class": name, "config": config}}
    with dg.instance_for_test(overrides=overrides) as instance:
        yield instance


def count(url: str, query: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query)
        return int(cur.fetchone()[0])


@pytest.mark.slow(25)
def test_ours_records_what_dagster_postgres_records(sim: MarketSimulator, tmp_path: Path) -> None:
    with (
        throwaway_database("fin_assets_evlog_") as ours_url,
        throwaway_database("fin_assets_evlog_") as stock_url,
    ):
        with instance_on(ours_url, OURS) as instance:
            assert type(instance.event_log_storage) is FinAssetsPostgresEventLogStorage
            ours = event_log_scenario(sim, tmp_path / "ours", instance)
        with instance_on(stock_url, STOCK) as instance:
            assert type(instance.event_log_storage) is PostgresEventLogStorage
            stock = event_log_scenario(sim, tmp_path / "stock", instance)
        # Straight from the tables: the same rows, however they were written.
        tables = ("event_logs", "asset_event_tags", "asset_check_executions", "asset_keys")
        rows = {
            t: (
                count(ours_url, f"SELECT count(*) FROM {t}"),
                count(stock_url, f"SELECT count(*) FROM {t}"),
            )
            for t in tables
        }
    assert ours["materialized"] == {"raw/bars": HOURS, "core/bars": HOURS}
    assert ours == stock
    assert all(mine == theirs for mine, theirs in rows.values()), rows


def test_a_batch_that_dies_halfway_leaves_nothing_and_the_next_run_fills_it(
    sim: MarketSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose write dies after its events were inserted (the process killed, the
    connection lost) leaves none of that batch; running the range again records what the stock
    storage records for one successful run."""
    with (
        throwaway_database("fin_assets_evlog_") as ours_url,
        throwaway_database("fin_assets_evlog_") as stock_url,
    ):
        with instance_on(ours_url, OURS) as instance:
            defs = build_definitions(fin_env(sim, tmp_path / "ours"))
            real = event_log_postgres.write_index_rows

            def dies_after_the_insert(*args: object) -> None:
                real(*args)  # type: ignore[arg-type]
                raise ConnectionError("server closed the connection unexpectedly")

            monkeypatch.setattr(event_log_postgres, "write_index_rows", dies_after_the_insert)
            before = count(ours_url, "SELECT count(*) FROM event_logs")
            with pytest.raises(ConnectionError):
                instance.event_log_storage.store_event_batch(planned_batch())
            assert count(ours_url, "SELECT count(*) FROM event_logs") == before
            assert count(ours_url, "SELECT count(*) FROM asset_check_executions") == 0
            monkeypatch.undo()
            landed = run_range(defs, "bars_hourly_job", HOURS[0], HOURS[-1], instance=instance)
            assert landed.success
            ours = sorted(instance.get_materialized_partitions(dg.AssetKey(["core", "bars"])))
            our_rows = count(ours_url, "SELECT count(*) FROM asset_check_executions")
        with instance_on(stock_url, STOCK) as instance:
            defs = build_definitions(fin_env(sim, tmp_path / "stock"))
            stock_run = run_range(defs, "bars_hourly_job", HOURS[0], HOURS[-1], instance=instance)
            assert stock_run.success
            stock = sorted(instance.get_materialized_partitions(dg.AssetKey(["core", "bars"])))
            stock_rows = count(stock_url, "SELECT count(*) FROM asset_check_executions")
    assert ours == stock == HOURS
    assert our_rows == stock_rows


def planned_batch() -> list[dg.EventLogEntry]:
    """The planned materializations of a range's partitions, as a run's creation writes them."""
    from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent

    entries = []
    for hour in HOURS:
        event = DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
            job_name="bars_hourly_job",
            event_specific_data=AssetMaterializationPlannedData(
                dg.AssetKey(["core", "bars"]), partition=hour
            ),
        )
        entries.append(
            dg.EventLogEntry(
                error_info=None,
                level=10,
                user_message="",
                run_id="run-killed",
                timestamp=1_767_000_000.0,
                job_name="bars_hourly_job",
                dagster_event=event,
            )
        )
    return entries
