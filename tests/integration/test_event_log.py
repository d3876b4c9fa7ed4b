"""The project's event log (fin_assets/dagster_internals/event_log.py) against Dagster's own SQLite
storage: the
same runs must leave the same record — materialized partitions, check executions per partition
with their status and target, the asset's latest materialization, events by type — whichever
of the two wrote it. The checks write their evaluations in batches only on ours, so this also
compares the batched path with Dagster's one-event-at-a-time path."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionResolvedStatus,
    AssetCheckPartitionInfo,
)
from dagster._core.storage.asset_check_state import AssetCheckState
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

from fin_assets.dagster_internals.event_log import FinAssetsSqliteEventLogStorage
from fin_assets.definitions import build_definitions
from resources.simulator.server import MarketSimulator
from resources.storage.parquet import ParquetWarehouse
from tests.conftest import fin_env, run_range, step_failure_messages
from tests.helpers import product_instance, recorded_check_evaluations

HOURS = [f"2026-01-05-{h:02d}:00" for h in range(6)]
BARS = dg.AssetKey(["core", "bars"])
RAW = dg.AssetKey(["raw", "bars"])
CHECKS = (
    "ohlc_invariants",
    "unique_symbol_ts",
    "positive_prices",
    "missing_minutes",
    "price_jumps",
    "frozen_prices",
)


@contextlib.contextmanager
def dagster_default_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        assert type(inst.event_log_storage) is SqliteEventLogStorage
        yield inst


def _record(instance: dg.DagsterInstance, runs: list[str]) -> dict[str, object]:
    """What a user can read back, with storage ids and run ids replaced by run order."""
    storage = instance.event_log_storage
    order = {run_id: n for n, run_id in enumerate(runs)}
    executions = {}
    for name in CHECKS:
        key = dg.AssetCheckKey(BARS, name)
        for partition in HOURS:
            history = storage.get_asset_check_execution_history(
                key, limit=10, partition_filter=PartitionKeyFilter(key=partition)
            )
            executions[(name, partition)] = [
                (
                    order[r.run_id],
                    r.status.value,
                    r.event.dagster_event.partition if r.event and r.event.dagster_event else None,
                )
                for r in history
            ]
    targets = {}
    for evaluation in recorded_check_evaluations(instance, runs[-1]):
        if evaluation.check_name in CHECKS:
            target = evaluation.target_materialization_data
            assert target is not None
            # The target is the partition's latest materialization, by storage id.
            latest = storage.get_latest_storage_id_by_partition(
                BARS, dg.DagsterEventType.ASSET_MATERIALIZATION, {evaluation.partition or ""}
            )
            assert latest[evaluation.partition or ""] == target.storage_id
            targets[(evaluation.check_name, evaluation.partition)] = (
                order[target.run_id],
                evaluation.passed,
            )
    events: collections.Counter[str] = collections.Counter()
    for run_id in runs:
        for record in instance.get_records_for_run(run_id, limit=100_000).records:
            event = record.event_log_entry.dagster_event
            if event is not None and "ASSET" in event.event_type_value:
                events[event.event_type_value] += 1
    latest_event = instance.get_latest_materialization_event(BARS)
    assert latest_event is not None and latest_event.dagster_event is not None
    return {
        "materialized": {
            key.to_user_string(): sorted(instance.get_materialized_partitions(key))
            for key in (RAW, BARS)
        },
        "executions": executions,
        "targets": targets,
        "events": dict(events),
        "latest": (order[latest_event.run_id], latest_event.dagster_event.partition),
    }


def event_log_scenario(
    sim: MarketSimulator, data: Path, instance: dg.DagsterInstance
) -> dict[str, object]:
    """Six hours landed, a duplicated row written into hour 3, the checks run on the range."""
    defs = build_definitions(fin_env(sim, data))
    landed = run_range(defs, "bars_hourly_job", HOURS[0], HOURS[-1], instance=instance)
    assert landed.success
    wh = ParquetWarehouse(data / "warehouse")
    frame = wh.read_partition("core_bars", HOURS[3])
    assert frame is not None
    wh.replace_partition("core_bars", HOURS[3], frame.vstack(frame.head(1)))
    checked = run_range(defs, "core_bars_checks_job", HOURS[0], HOURS[-1], instance=instance)
    assert not checked.success
    (message,) = step_failure_messages(checked)
    assert "1 blocking asset check failed with ERROR severity" in message
    assert "unique_symbol_ts" in message
    # Hour 5 lands again after its checks.
    again = run_range(defs, "bars_hourly_job", HOURS[5], HOURS[5], instance=instance)
    assert again.success
    _assert_check_state_as_dagster_computes_it(instance, defs)
    return _record(instance, [landed.run_id, checked.run_id, again.run_id])


def _by_status(state: AssetCheckState) -> dict[str, list[str]]:
    """A check's partitions by status, as the UI counts them."""
    return {
        s.value: sorted(v.subset_value.get_partition_keys())
        for s, v in state.subsets.items()
        if v.size
    }


def _sorted(infos: Sequence[AssetCheckPartitionInfo]) -> list[AssetCheckPartitionInfo]:
    assert infos
    return sorted(infos, key=lambda i: (i.check_key.name, i.partition_key or ""))


def _middle_storage_id(instance: dg.DagsterInstance) -> int:
    """A cursor between the checks' evaluations and hour 5's second materialization."""
    records = instance.fetch_materializations(BARS, limit=100).records
    return records[0].storage_id - 1  # the newest: hour 5 landing again


def _assert_check_state_as_dagster_computes_it(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    """Each check's partitions by status (what the UI's asset page asks for): ours gathers
    them in bulk, Dagster one partition at a time; the answer must be the same."""
    partitions_def = defs.resolve_assets_def(BARS).partitions_def
    keys = [(dg.AssetCheckKey(BARS, name), partitions_def) for name in CHECKS]
    storage = instance.event_log_storage
    check_keys = [key for key, _ in keys]
    for after in (None, 0, _middle_storage_id(instance)):
        assert _sorted(storage.get_asset_check_partition_info(check_keys, after)) == _sorted(
            SqlEventLogStorage.get_asset_check_partition_info(storage, check_keys, after)
        )
    ours = storage.get_asset_check_state(keys)
    theirs = EventLogStorage.get_asset_check_state(storage, keys)
    statuses = {}
    for key, _ in keys:
        assert ours[key].latest_storage_id == theirs[key].latest_storage_id
        assert ours[key].in_progress_runs == theirs[key].in_progress_runs
        mine = _by_status(ours[key])
        assert mine == _by_status(theirs[key])
        statuses[key.name] = mine
    # (Dagster 1.13 keeps hour 5's result after it lands again; both storages agree on that.)
    assert statuses["unique_symbol_ts"] == {
        "SUCCEEDED": [HOURS[0], HOURS[1], HOURS[2], HOURS[4], HOURS[5]],
        "FAILED": [HOURS[3]],
    }


@pytest.mark.slow(15)
def test_ours_records_what_dagsters_own_sqlite_storage_records(
    sim: MarketSimulator, tmp_path: Path
) -> None:
    with product_instance() as instance:
        assert isinstance(instance.event_log_storage, FinAssetsSqliteEventLogStorage)
        ours = event_log_scenario(sim, tmp_path / "ours", instance)
    with dagster_default_instance() as instance:
        theirs = event_log_scenario(sim, tmp_path / "dagster", instance)

    assert ours["materialized"] == {"raw/bars": HOURS, "core/bars": HOURS}
    executions = ours["executions"]
    assert isinstance(executions, dict)
    assert executions[("unique_symbol_ts", HOURS[3])][0][1] == "FAILED"
    assert executions[("unique_symbol_ts", HOURS[2])][0][1] == "SUCCEEDED"
    assert len(executions[("ohlc_invariants", HOURS[0])]) == 2  # both runs evaluated it
    assert ours == theirs


def test_a_batch_keeps_its_order_and_each_assets_latest_event() -> None:
    from dagster._core.events import DagsterEvent, StepMaterializationData

    def entry(key: str, partition: str) -> dg.EventLogEntry:
        event = DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name="job",
            step_key="step",
            event_specific_data=StepMaterializationData(
                dg.AssetMaterialization(asset_key=key, partition=partition, tags={"t": partition})
            ),
        )
        return dg.EventLogEntry(
            error_info=None,
            level=10,
            user_message="",
            run_id="run-1",
            timestamp=1_767_000_000.0,
            step_key="step",
            job_name="job",
            dagster_event=event,
        )

    batch = [entry("a", "p1"), entry("b", "p1"), entry("a", "p2"), entry("b", "p0")]
    with product_instance() as instance:
        instance.event_log_storage.store_event_batch(batch)
        for key, latest in (("a", "p2"), ("b", "p0")):
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None and event.dagster_event is not None
            assert event.dagster_event.partition == latest
            records = instance.fetch_materializations(dg.AssetKey(key), limit=10).records
            # Newest first, each with its own tags: ids were matched to rows in order.
            assert [r.partition_key for r in records] == (
                ["p2", "p1"] if key == "a" else ["p0", "p1"]
            )
            assert [r.asset_materialization.tags for r in records] == [  # type: ignore[union-attr]
                {"t": r.partition_key} for r in records
            ]
        run_log = instance.get_records_for_run("run-1").records
        assert [r.event_log_entry.dagster_event.partition for r in run_log] == [  # type: ignore[union-attr]
            "p1",
            "p1",
            "p2",
            "p0",
        ]


def test_checks_evaluated_on_different_partitions_keep_their_own_statuses() -> None:
    hourly = dg.HourlyPartitionsDefinition(start_date="2026-01-05-00:00")
    evaluated = {"first_check": HOURS[:2], "second_check": HOURS[2:5]}
    with product_instance() as instance:
        for name, hours in evaluated.items():
            for hour in hours:
                instance.report_runless_asset_event(
                    dg.AssetCheckEvaluation(
                        asset_key=BARS, check_name=name, passed=hour != HOURS[3], partition=hour
                    )
                )
        keys = [(dg.AssetCheckKey(BARS, name), hourly) for name in evaluated]
        storage = instance.event_log_storage
        ours = storage.get_asset_check_state(keys)
        theirs = EventLogStorage.get_asset_check_state(storage, keys)
        for key, _ in keys:
            assert _by_status(ours[key]) == _by_status(theirs[key])
        second = ours[dg.AssetCheckKey(BARS, "second_check")].subsets
        assert sorted(
            second[AssetCheckExecutionResolvedStatus.SUCCEEDED].subset_value.get_partition_keys()
        ) == [HOURS[2], HOURS[4]]
        assert list(
            second[AssetCheckExecutionResolvedStatus.FAILED].subset_value.get_partition_keys()
        ) == [HOURS[3]]
