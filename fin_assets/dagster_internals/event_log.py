"""The embedded instance's event log: Dagster's SQLite storage, tuned for range runs.

A range run records several events per hourly partition (a planned and a landed
materialization per asset, one evaluation per quality check), so a 180-day backfill writes
tens of thousands of events, and Dagster's own SQLite storage pays for each one as if it were
alone: a new SQLAlchemy engine per write (which also throws away the compiled-statement cache),
a schema lookup per check evaluation, and, for a batch, one transaction per event. Measured
(``benchmarks/scale.py``, ``/tmp`` tmpfs): about 6 ms per event, which made events, not the API
or the tables, the cost of a deep backfill.

``FinAssetsSqliteEventLogStorage`` keeps Dagster's files, tables and layout
(``$DAGSTER_HOME/history/runs/``: an instance can switch to it and back) and changes only how
they are written:

- one engine per database file for the life of the storage (connections are still opened per
  use, as Dagster's ``NullPool`` does, so several processes share the files as before);
- the asset-check table looked up once instead of on every check evaluation;
- ``store_event_batch`` writes a batch of materializations and check evaluations in one
  transaction per database (the run's and the index), where Dagster's SQLite storage falls back
  to one write per event. Dagster hands batches to the storage when ``DAGSTER_EVENT_BATCH_SIZE``
  is set: creating this storage sets it (to ``EVENT_BATCH_SIZE`` unless the environment already
  does), and the checks of ``fin_assets/lib/checks.py`` send their per-partition evaluations as
  batches when the storage says it takes them (``takes_check_evaluation_batches``).

A batch is written whole or not at all (one transaction per database): a run killed mid-batch
leaves partitions without a recorded materialization, which the next run fills again — never a
recorded materialization without its data.

In ``dagster.yaml``::

    event_log_storage:
      module: fin_assets.dagster_internals.event_log
      class: FinAssetsSqliteEventLogStorage

With no ``config`` the files are those of the instance's own directory (``$DAGSTER_HOME``, or
the temporary one ``dagster dev`` makes without it), opened when the instance registers the
storage; ``config: {base_dir: DIR}`` puts them elsewhere, as Dagster's own storage does.

``event_log_postgres.FinAssetsPostgresEventLogStorage`` does the same for the PostgreSQL
instance (``deploy/postgres/dagster.yaml``), on dagster-postgres's tables, with what this module
shares: ``BATCHED_EVENTS``, ``planned_subset``, ``expanded_planned`` and ``write_index_rows``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckKey,
    DagsterEventType,
    DagsterRunStatus,
    EventLogEntry,
    Field,
    PartitionsDefinition,
    RunsFilter,
    StringSource,
    TimeWindowPartitionsDefinition,
)
from dagster._core.asset_graph_view.serializable_entity_subset import SerializableEntitySubset
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.definitions.partitions.subset import PartitionsSubset
from dagster._core.events import ASSET_EVENTS, AssetMaterializationPlannedData
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
    AssetCheckExecutionResolvedStatus,
    AssetCheckPartitionInfo,
)
from dagster._core.storage.asset_check_state import AssetCheckState, _process_run_statuses
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.storage.event_log import SqlEventLogStorage, SqliteEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.sqlite import create_db_conn_string
from dagster._serdes import ConfigurableClassData
from sqlalchemy import and_, bindparam, create_engine, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

# Events Dagster buffers before handing them to store_event_batch (it also flushes at the end of
# each batch: a step's materializations, a check step's evaluations).
EVENT_BATCH_SIZE = 1000
SQLITE_BUSY_TIMEOUT_S = 15  # Dagster's own: how long a write waits for another process's lock

BATCHED_EVENTS = {
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,  # a run's, written when it is created
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_OBSERVATION,
    DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    DagsterEventType.ASSET_CHECK_EVALUATION,
}


def history_dir(dagster_home: str) -> str:
    """Where Dagster's default SQLite storage keeps event logs under an instance directory."""
    return os.path.join(os.path.abspath(dagster_home), "history", "runs")


class FinAssetsSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log with cached engines and one-transaction batches."""

    takes_check_evaluation_batches = True

    def __init__(self, base_dir: str | None, inst_data: ConfigurableClassData | None = None):
        """``base_dir`` None: the files live under the directory of the instance this storage
        is registered with (``$DAGSTER_HOME``, or the temporary home ``dagster dev`` makes when
        it is unset), opened in ``register_instance``, which every instance calls on its event
        log as it is built."""
        self._engines: dict[str, Engine] = {}
        self._has_check_table = False
        self._pending_inst_data = inst_data
        if base_dir is not None:
            self._open(base_dir)

    def _open(self, base_dir: str) -> None:
        super().__init__(base_dir, inst_data=self._pending_inst_data)
        self._opened = True
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))

    def register_instance(self, instance: Any) -> None:
        if not getattr(self, "_opened", False):
            self._open(history_dir(instance.root_directory))
        super().register_instance(instance)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        # Both optional: with neither, the instance's own directory (``register_instance``).
        return {
            "base_dir": Field(StringSource, is_required=False),
            "dagster_home": Field(StringSource, is_required=False),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> FinAssetsSqliteEventLogStorage:
        config = config_value or {}
        if config.get("base_dir"):
            return cls(config["base_dir"], inst_data=inst_data)
        if config.get("dagster_home"):
            return cls(history_dir(config["dagster_home"]), inst_data=inst_data)
        return cls(None, inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            )
            self._engines[shard] = engine
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:  # type: ignore[override]
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    @property
    def supports_asset_checks(self) -> bool:  # type: ignore[override]
        # Dagster asks on every check evaluation and answers with a new engine each time; the
        # table, once there, does not go away.
        if not self._has_check_table:
            self._has_check_table = self.has_table(AssetCheckExecutionsTable.name)
        return self._has_check_table

    def has_table(self, table_name: str) -> bool:
        engine = self._engine("index")
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    def conn_string_for_shard(self, shard_name: str) -> str:
        return create_db_conn_string(self._base_dir, shard_name)

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        super().dispose()

    def get_asset_check_partition_info(
        self,
        keys: Sequence[AssetCheckKey],
        after_storage_id: int | None = None,
        partition_keys: Sequence[str] | None = None,
    ) -> Sequence[AssetCheckPartitionInfo]:
        """Dagster's answer, from two queries per asset instead of a join per check: each
        partition's latest materialization is looked up once for all of the asset's checks,
        and their latest executions are read together."""
        if partition_keys is not None:
            return super().get_asset_check_partition_info(keys, after_storage_id, partition_keys)
        assets = sorted({key.asset_key for key in keys}, key=lambda a: a.to_string())
        unpartitioned = self._get_latest_unpartitioned_materialization_storage_ids(assets)
        table = AssetCheckExecutionsTable
        infos: list[AssetCheckPartitionInfo] = []
        for asset in assets:
            names = sorted({key.name for key in keys if key.asset_key == asset})
            landed = self.get_latest_storage_id_by_partition(
                asset, DagsterEventType.ASSET_MATERIALIZATION
            )
            mine = and_(
                table.c.asset_key == asset.to_string(),
                table.c.check_name.in_(names),
                # Historical PLANNED rows may have no event storage id (as Dagster skips them).
                table.c.evaluation_event_storage_id.isnot(None),
            )
            latest = (
                select(func.max(table.c.id).label("id"))
                .where(mine)
                .group_by(table.c.check_name, table.c.partition)
                .subquery()
            )
            query = select(
                table.c.check_name,
                table.c.partition,
                table.c.execution_status,
                table.c.evaluation_event_storage_id,
                table.c.materialization_event_storage_id,
                table.c.run_id,
            ).join(latest, table.c.id == latest.c.id)
            with self.index_connection() as conn:
                rows = conn.execute(query).fetchall()
            for name, partition, status, event_id, target_id, run_id in rows:
                landed_id = max(
                    filter(None, [landed.get(partition), unpartitioned.get(asset)]), default=None
                )
                if after_storage_id is not None and not (
                    event_id > after_storage_id or (landed.get(partition) or 0) > after_storage_id
                ):
                    continue
                infos.append(
                    AssetCheckPartitionInfo(
                        check_key=AssetCheckKey(asset, name),
                        partition_key=partition,
                        latest_execution_status=AssetCheckExecutionRecordStatus(status),
                        latest_target_materialization_storage_id=target_id,
                        latest_planned_run_id=run_id,
                        latest_check_event_storage_id=event_id,
                        latest_materialization_storage_id=landed_id,
                    )
                )
        return infos

    def get_asset_check_state(
        self, keys: Sequence[tuple[AssetCheckKey, PartitionsDefinition | None]]
    ) -> Mapping[AssetCheckKey, AssetCheckState]:
        """Each check's partitions by status, as Dagster's ``bulk_update_asset_check_state``
        computes it, with the partitions of a status gathered into one subset at once.

        Dagster adds them one partition at a time, each union copying the subset so far: with
        a year of hourly partitions behind six checks, the UI's asset page took 12 s to answer
        (``benchmarks/ui_year.py``). A partition appears once per check in the records (its
        latest), so the order in which they are added does not matter."""
        check_keys = [key for key, _ in keys]
        initial = self.get_checkpointed_asset_check_state(check_keys)
        after = min((state.latest_storage_id for state in initial.values()), default=0)
        infos = self.get_asset_check_partition_info(check_keys, after_storage_id=after)
        by_key: dict[AssetCheckKey, list[AssetCheckPartitionInfo]] = {k: [] for k in check_keys}
        run_ids = set().union(*(state.in_progress_runs.keys() for state in initial.values()))
        for info in infos:
            by_key.setdefault(info.check_key, []).append(info)
            if info.latest_execution_status == AssetCheckExecutionRecordStatus.PLANNED:
                run_ids.add(info.latest_planned_run_id)
        finished = (
            self._instance.get_runs(
                filters=RunsFilter(run_ids=list(run_ids), statuses=FINISHED_STATUSES)
            )
            if run_ids
            else []
        )
        statuses = {run.run_id: run.status for run in finished}
        # id(partitions_def) -> (key -> is a partition of it, the keys that are), for its checks
        valid: dict[int, tuple[dict[str | None, bool], set[str]]] = {}
        memo: dict[tuple[int, tuple[str, ...]], PartitionsSubset] = {}
        return {
            key: _updated_check_state(
                initial[key], key, partitions_def, by_key[key], statuses, valid, memo
            )
            for key, partitions_def in keys
        }

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        # A run of N partitions is created with one planned event per asset (its subset)
        # instead of N: the process creating the run (the CLI, the daemon for a backfill) no
        # longer builds every partition's event at once. The storage writes the same
        # per-partition rows as before (see expanded_planned), which is what readers of planned
        # events (in-progress and failed partitions in the UI, automation) look at.
        return True

    def store_event(self, event: EventLogEntry) -> None:
        if planned_subset(event) is None:
            super().store_event(event)
        else:
            self.store_event_batch([event])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        for chunk in batches_of(events):
            self._store_batch(chunk)

    def _store_batch(self, events: Sequence[EventLogEntry]) -> None:
        run_id = events[0].run_id
        if not writes_in_one_transaction(events):
            super().store_event_batch(events)  # one write per event, as Dagster does
            return
        rows = [self._event_to_row(event) for event in events]  # serialized once, for both
        # executemany of one cached statement (a multi-row VALUES is compiled anew per size).
        table = SqlEventLogStorageTable
        with self.run_connection(run_id) as conn:
            conn.execute(table.insert(), rows)
        with self.index_connection() as conn:
            result = conn.execute(
                table.insert().returning(table.c.id, sort_by_parameter_order=True), rows
            )
            event_ids = [int(row[0]) for row in result.fetchall()]
            write_index_rows(self, conn, events, event_ids, rows)


def write_index_rows(
    storage: SqlEventLogStorage,
    conn: Connection,
    events: Sequence[EventLogEntry],
    event_ids: Sequence[int],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """What Dagster writes beside a batch of events, on the batch's transaction: the asset
    events' tags, each asset's latest event in the asset table, the check executions planned
    and evaluated."""
    assets = [
        (event, event_id)
        for event, event_id in zip(events, event_ids, strict=True)
        if event.get_dagster_event().event_type in ASSET_EVENTS
    ]
    if assets:
        storage._store_asset_event_tags(conn, [e for e, _ in assets], [i for _, i in assets])
        # The asset table keeps each asset's latest event only: the batch's last one.
        latest = {e.get_dagster_event().asset_key: (e, i) for e, i in assets}
        for event, event_id in latest.values():
            storage._store_asset_event(conn, event, event_id)
    evaluations = []
    for event, event_id, row in zip(events, event_ids, rows, strict=True):
        kind = event.get_dagster_event().event_type
        if kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluations.append(_check_row(event, event_id, row["event"]))
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
            _record_check_planned(conn, event, event_id, row["event"])
    _record_check_evaluations(conn, evaluations)


def batches_of(events: Sequence[EventLogEntry]) -> Iterator[Sequence[EventLogEntry]]:
    """``events`` in batches of at most EVENT_BATCH_SIZE, planned subsets expanded into their
    partitions' events (both storages write a batch in one transaction)."""
    if not any(planned_subset(event) is not None for event in events):
        if events:
            yield events
        return
    chunk: list[EventLogEntry] = []
    for event in expanded_planned(events):
        chunk.append(event)
        if len(chunk) == EVENT_BATCH_SIZE:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def writes_in_one_transaction(events: Sequence[EventLogEntry]) -> bool:
    """Whether a batch is one run's BATCHED_EVENTS (and no failed-to-materialize marker, which
    Dagster's storages drop): those are written in one transaction; any other batch is left to
    Dagster's own way."""
    run_id = events[0].run_id
    return bool(run_id) and all(
        e.run_id == run_id
        and e.is_dagster_event
        and e.get_dagster_event().event_type in BATCHED_EVENTS
        and not e.get_dagster_event().is_asset_failed_to_materialize
        for e in events
    )


# Zero-padded key formats (Dagster's hourly and daily) and the shape of their keys.
_ORDERED_FORMATS = {
    "%Y-%m-%d-%H:%M": r"\d{4}-\d{2}-\d{2}-\d{2}:\d{2}",
    "%Y-%m-%d": r"\d{4}-\d{2}-\d{2}",
}


def _valid_keys(partitions_def: PartitionsDefinition, keys: set[str | None]) -> set[str]:
    """The keys that are partitions of ``partitions_def`` (as ``has_partition_key`` decides),
    with the definition's first and last windows computed once instead of once per key (and
    never by listing every partition, seconds for a few years of hours)."""
    named = {key for key in keys if key is not None}
    if not isinstance(partitions_def, TimeWindowPartitionsDefinition):
        return {key for key in named if partitions_def.has_partition_key(key)}
    first = partitions_def.get_first_partition_window()
    last = partitions_def.get_last_partition_window()
    if first is None or last is None:
        return set()
    if partitions_def.fmt in _ORDERED_FORMATS and not partitions_def.exclusions:
        # Keys of these formats sort as their times do: a range test on the strings, not a
        # strptime per key (30 us each: a quarter of a second per check-year of hours).
        low_key, high_key = (
            partitions_def.get_first_partition_key(),
            partitions_def.get_last_partition_key(),
        )
        assert low_key is not None and high_key is not None  # both windows exist (above)
        shape = re.compile(_ORDERED_FORMATS[partitions_def.fmt])
        return {k for k in named if low_key <= k <= high_key and shape.fullmatch(k)}
    low, high = first.start.timestamp(), last.start.timestamp()
    found = set()
    for key in named:
        try:
            start = partitions_def.start_time_for_partition_key(key)
        except ValueError:
            continue  # not a key of this definition at all
        if low <= start.timestamp() <= high and not partitions_def.is_window_start_excluded(start):
            found.add(key)
    return found


def _updated_check_state(
    state: AssetCheckState,
    key: AssetCheckKey,
    partitions_def: PartitionsDefinition | None,
    infos: Sequence[AssetCheckPartitionInfo],
    run_statuses: Mapping[str, DagsterRunStatus],
    valid: dict[int, tuple[dict[str | None, bool], set[str]]],
    memo: dict[tuple[int, tuple[str, ...]], PartitionsSubset],
) -> AssetCheckState:
    """``AssetCheckState.with_updates``, one union or difference per status."""
    if partitions_def is None:
        return state.with_updates(key, partitions_def, infos, run_statuses)  # one record at most
    # Checks of one definition share what is known of their keys; each adds what it alone has.
    seen = valid.setdefault(id(partitions_def), ({}, set()))
    judged, known = seen
    unjudged = {i.partition_key for i in infos if i.partition_key not in judged}
    good = _valid_keys(partitions_def, unjudged) if unjudged else set()
    for partition in unjudged:
        judged[partition] = partition in good
    known.update(good)
    Status = AssetCheckExecutionResolvedStatus
    added: dict[AssetCheckExecutionResolvedStatus, list[str]] = {s: [] for s in Status}
    cleared: list[str] = []
    planned: dict[str, list[str]] = {}
    for info in infos:
        partition = info.partition_key
        if partition is None or partition not in known:
            continue
        recorded = info.latest_execution_status
        if recorded == AssetCheckExecutionRecordStatus.PLANNED:
            added[Status.IN_PROGRESS].append(partition)
            planned.setdefault(info.latest_planned_run_id, []).append(partition)
        elif recorded in (
            AssetCheckExecutionRecordStatus.SUCCEEDED,
            AssetCheckExecutionRecordStatus.FAILED,
        ):
            if info.is_current:
                status = (
                    Status.SUCCEEDED
                    if recorded == AssetCheckExecutionRecordStatus.SUCCEEDED
                    else Status.FAILED
                )
                added[status].append(partition)
            else:
                cleared.append(partition)  # materialized again since: no status until checked

    def subset(partitions: list[str]) -> SerializableEntitySubset[AssetCheckKey]:
        # Checks of one asset mostly share their partitions' statuses: parse each set once.
        memo_key = (id(partitions_def), tuple(partitions))
        if memo_key not in memo:
            memo[memo_key] = (
                # Keys validated above: no second pass over every hour of the definition.
                # ``empty_subset`` is typed as the base PartitionsSubset, whose
                # ``with_partition_keys`` has no ``validate``; a time window definition's is a
                # TimeWindowPartitionsSubset, whose ``with_partition_keys`` takes it.
                partitions_def.empty_subset().with_partition_keys(  # type: ignore[call-arg]
                    partitions, validate=False
                )
                if isinstance(partitions_def, TimeWindowPartitionsDefinition)
                else partitions_def.subset_with_partition_keys(partitions)
            )
        return SerializableEntitySubset.from_coercible_value(key, memo[memo_key], partitions_def)

    empty = SerializableEntitySubset.empty(key, partitions_def)
    stale = subset(cleared) if cleared else None
    subsets: dict[AssetCheckExecutionResolvedStatus, SerializableEntitySubset[AssetCheckKey]] = {}
    for status in Status:
        current = state.subsets.get(status, empty)
        if added[status]:
            current = current.compute_union(subset(added[status]))
        if stale is not None:
            current = current.compute_difference(stale)
        subsets[status] = current
    in_progress = dict(state.in_progress_runs)
    for run_id, partitions in planned.items():
        in_progress[run_id] = in_progress.get(run_id, empty).compute_union(subset(partitions))
    latest = max(
        (
            max(i.latest_check_event_storage_id, i.latest_materialization_storage_id or 0)
            for i in infos
        ),
        default=state.latest_storage_id,
    )
    # Runs that finished since: their planned partitions become skipped or execution-failed.
    resolved, still_running = _process_run_statuses(
        key, partitions_def, subsets, in_progress, run_statuses
    )
    return AssetCheckState(
        latest_storage_id=latest, subsets=resolved, in_progress_runs=still_running
    )


def planned_subset(event: EventLogEntry) -> PartitionsSubset | None:
    dagster_event = event.dagster_event
    if dagster_event is None or not dagster_event.is_asset_materialization_planned:
        return None
    return dagster_event.asset_materialization_planned_data.partitions_subset


def expanded_planned(events: Iterable[EventLogEntry]) -> Iterator[EventLogEntry]:
    """Each planned event of a partition subset as the planned events of its partitions, one
    by one, exactly as Dagster writes them when a storage does not take subsets."""
    for event in events:
        subset = planned_subset(event)
        if subset is None:
            yield event
            continue
        dagster_event = event.get_dagster_event()
        asset_key = dagster_event.asset_materialization_planned_data.asset_key
        for key in subset.get_partition_keys():
            yield event._replace(
                dagster_event=dagster_event._replace(
                    event_specific_data=AssetMaterializationPlannedData(
                        asset_key, partition=key, partitions_subset=None
                    )
                )
            )


def _insert_timestamp(event: EventLogEntry) -> datetime:
    return datetime.fromtimestamp(event.timestamp, UTC).replace(tzinfo=None)  # as Dagster stores it


def _record_check_planned(
    conn: Connection, event: EventLogEntry, event_id: int, serialized: str
) -> None:
    """What Dagster's ``_store_asset_check_evaluation_planned`` does, on the caller's
    transaction: one PLANNED row per partition the run will evaluate."""
    planned = event.get_dagster_event().event_specific_data
    assert isinstance(planned, AssetCheckEvaluationPlanned)
    keys = (
        list(planned.partitions_subset.get_partition_keys())
        if planned.partitions_subset
        else [None]
    )
    common = {
        "asset_key": planned.asset_key.to_string(),
        "check_name": planned.check_name,
        "run_id": event.run_id,
        "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
        "evaluation_event": serialized,
        "evaluation_event_timestamp": _insert_timestamp(event),
        "evaluation_event_storage_id": event_id,
    }
    # executemany in chunks: one multi-row VALUES over a range's hours (Dagster's way) compiled
    # a statement of 8 parameters per hour, tens of MiB at the peak of the process creating the
    # run (the CLI, or the daemon for a backfill).
    insert = AssetCheckExecutionsTable.insert()
    for start in range(0, len(keys), EVENT_BATCH_SIZE):
        conn.execute(
            insert, [{**common, "partition": key} for key in keys[start : start + EVENT_BATCH_SIZE]]
        )


def _check_row(event: EventLogEntry, event_id: int, serialized: str) -> dict[str, Any]:
    evaluation = event.get_dagster_event().asset_check_evaluation_data
    target = evaluation.target_materialization_data
    return {
        "k_asset_key": evaluation.asset_key.to_string(),
        "k_check_name": evaluation.check_name,
        "k_run_id": event.run_id,
        "k_partition": evaluation.partition,
        "execution_status": (
            AssetCheckExecutionRecordStatus.SUCCEEDED
            if evaluation.passed
            else AssetCheckExecutionRecordStatus.FAILED
        ).value,
        "evaluation_event": serialized,
        "evaluation_event_timestamp": _insert_timestamp(event),
        "evaluation_event_storage_id": event_id,
        "materialization_event_storage_id": target.storage_id if target else None,
    }


_VALUES = (
    "execution_status",
    "evaluation_event",
    "evaluation_event_timestamp",
    "evaluation_event_storage_id",
    "materialization_event_storage_id",
)


def _record_check_evaluations(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """What Dagster's ``_update_asset_check_evaluation`` does per evaluation, on the caller's
    transaction and as one statement for the batch: the row the run's planned event created
    for (check, partition) becomes the evaluation; one without such a row is added."""
    if not rows:
        return
    table = AssetCheckExecutionsTable
    match = and_(
        table.c.asset_key == bindparam("k_asset_key"),
        table.c.check_name == bindparam("k_check_name"),
        table.c.run_id == bindparam("k_run_id"),
        table.c.partition == bindparam("k_partition"),
    )
    update = table.update().where(match).values({name: bindparam(name) for name in _VALUES})
    keyed = [row for row in rows if row["k_partition"] is not None]
    updated = conn.execute(update, keyed).rowcount if keyed else 0
    if updated == len(rows):
        return
    # Some evaluation had no planned row (or no partition): settle those one by one.
    for row in rows:
        partition = (
            table.c.partition.is_(None)
            if row["k_partition"] is None
            else table.c.partition == row["k_partition"]
        )
        found = conn.execute(
            select(table.c.id)
            .where(
                table.c.asset_key == row["k_asset_key"],
                table.c.check_name == row["k_check_name"],
                table.c.run_id == row["k_run_id"],
                partition,
                table.c.evaluation_event_storage_id == row["evaluation_event_storage_id"],
            )
            .limit(1)
        ).first()
        if found is not None:
            continue  # updated above
        values = {name: row[name] for name in _VALUES}
        changed = conn.execute(
            table.update()
            .where(
                table.c.asset_key == row["k_asset_key"],
                table.c.check_name == row["k_check_name"],
                table.c.run_id == row["k_run_id"],
                partition,
            )
            .values(values)
        ).rowcount
        if changed == 0:
            conn.execute(
                table.insert().values(
                    asset_key=row["k_asset_key"],
                    check_name=row["k_check_name"],
                    run_id=row["k_run_id"],
                    partition=row["k_partition"],
                    **values,
                )
            )
