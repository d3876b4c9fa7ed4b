"""What the alert sensor (``fin_assets/lib/alerts.py``) and the metrics exporter
(``fin_assets/tools/metrics/``) read of an instance that Dagster's public API does not name:
freshness and check-execution states, requested backfills, sensor cursors, and a time-window
partitions definition carried between processes.

The enums are Dagster's own, handed on so that the states compared are exactly the ones the UI
shows; each private name has its contract test (``tests/unit/test_dagster_contracts.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus, PartitionBackfill
from dagster._core.remote_representation.external_data import TimeWindowPartitionsSnap
from dagster._core.scheduler.instigation import InstigatorType
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

__all__ = [
    "AssetCheckExecutionRecord",
    "AssetCheckExecutionRecordStatus",
    "FreshnessState",
    "latest_check_executions",
    "partitions_from_json",
    "partitions_to_json",
    "requested_backfills",
    "sensor_cursors",
]


def latest_check_executions(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetCheckKey]
) -> Mapping[dg.AssetCheckKey, AssetCheckExecutionRecord]:
    """Each check's latest execution (the UI's check state), one query for all of them."""
    return instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys))


def requested_backfills(instance: dg.DagsterInstance) -> Sequence[PartitionBackfill]:
    """The backfills the daemon may still start runs for."""
    return instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED]))


def sensor_cursors(instance: dg.DagsterInstance, sensor_name: str) -> Iterator[str | None]:
    """The stored cursor of every sensor named ``sensor_name`` (one per code location)."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == sensor_name:
            yield getattr(state.instigator_data, "cursor", None)


def partitions_to_json(partitions: dg.TimeWindowPartitionsDefinition) -> str:
    """A time-window partitions definition as text another process can rebuild it from (the
    snapshot Dagster sends from a code server to the webserver)."""
    return dg.serialize_value(TimeWindowPartitionsSnap.from_def(partitions))


def partitions_from_json(text: str) -> dg.PartitionsDefinition:
    return dg.deserialize_value(text, TimeWindowPartitionsSnap).get_partitions_definition()
