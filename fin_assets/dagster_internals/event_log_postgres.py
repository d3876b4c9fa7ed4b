"""The PostgreSQL instance's event log: dagster-postgres's storage, batched as the embedded one is.

Its own module: importing dagster-postgres costs about 0.5 s, which the embedded instance's
processes (every run worker and code server on SQLite) should not pay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from fin_assets.dagster_internals.event_log import (
    EVENT_BATCH_SIZE,
    FinAssetsSqliteEventLogStorage,
    batches_of,
    planned_subset,
    write_index_rows,
    writes_in_one_transaction,
)


class FinAssetsPostgresEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event log with a range run's events written as the embedded one writes
    them: one planned event per asset for a run's partitions (expanded into the same rows),
    and each batch of planned events, materializations, observations and check evaluations in
    one transaction, one ``INSERT ... RETURNING`` (psycopg2's multi-row VALUES pages) and one
    ``executemany`` per table.

    dagster-postgres writes only a batch of materializations alone in one statement: planned
    events and check evaluations go one per statement and transaction (Dagster issues #33831
    and #33494), which made a partition cost 8x the embedded instance's (issue 26's figures,
    ``make bench-scale``). The tables, rows and readers are dagster-postgres's own: an instance
    can switch to this class and back. A batch is written whole or not at all (one transaction):
    a run killed mid-batch leaves partitions without a recorded materialization, which the next
    run fills again.

    In ``deploy/postgres/dagster.yaml``::

        event_log_storage:
          module: fin_assets.dagster_internals.event_log_postgres
          class: FinAssetsPostgresEventLogStorage
          config:
            postgres_db: {...}      # as dagster-postgres's own
    """

    takes_check_evaluation_batches = True

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ):
        super().__init__(
            postgres_url,
            should_autocreate_tables=should_autocreate_tables,
            inst_data=inst_data,
            token_provider=token_provider,
        )
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(EVENT_BATCH_SIZE))

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> FinAssetsPostgresEventLogStorage:
        # dagster-postgres's builds its own class by name; the same arguments, this class.
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        return True  # as FinAssetsSqliteEventLogStorage's: the storage expands the subset

    def store_event(self, event: EventLogEntry) -> None:
        if planned_subset(event) is None:
            super().store_event(event)
        else:
            self.store_event_batch([event])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        for chunk in batches_of(events):
            self._store_batch(chunk)

    def _store_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not writes_in_one_transaction(events):
            super().store_event_batch(events)  # dagster-postgres's own way
            return
        rows = [self._event_to_row(event) for event in events]
        table = SqlEventLogStorageTable
        with self.index_transaction() as conn:
            result = conn.execute(
                table.insert().returning(table.c.id, sort_by_parameter_order=True), rows
            )
            event_ids = [int(row[0]) for row in result.fetchall()]
            write_index_rows(self, conn, events, event_ids, rows)

    # The same answers from fewer queries, as on the embedded instance (one SQL, both databases).
    get_asset_check_partition_info = FinAssetsSqliteEventLogStorage.get_asset_check_partition_info
    get_asset_check_state = FinAssetsSqliteEventLogStorage.get_asset_check_state
