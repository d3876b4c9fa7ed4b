"""How a check step records its evaluations: pointed at the materialization each evaluated, and
as one batch per chunk of partitions when the instance's event log takes batches
(``fin_assets/dagster_internals/event_log.py``). Used by the quality checks
(``fin_assets/lib/checks.py``).

Dagster's public API has neither: a yielded ``AssetCheckResult`` cannot name its target
materialization per partition, and there is no public way to log events as one batch. Every
private name below has its contract test (``tests/unit/test_dagster_contracts.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dagster as dg

# Not exported by `dagster`: the pointer to the materialization a check evaluated. Without it,
# Dagster never considers a partition's check current, so it never counts as passed.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

# Also not exported: how a step logs events as one batch (see EvaluationWriter), and the error
# Dagster raises for a blocking check that failed.
from dagster._core.errors import DagsterAssetCheckFailedError
from dagster._core.events import DagsterEventBatchMetadata, generate_event_batch_id


def check_failed_error(message: str) -> Exception:
    """What Dagster raises when a yielded blocking check fails (the step fails with it)."""
    return DagsterAssetCheckFailedError(message)


def target_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: Sequence[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each partition's latest materialization, in two queries for the whole chunk (one per
    partition made the check step of a deep backfill a query per hour)."""
    storage = instance.event_log_storage
    latest = storage.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(partition_keys)
    )
    if not latest:
        return {}
    records = storage.get_asset_event_summary_records(
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        asset_key=asset_key,
        storage_ids=list(latest.values()),
    )
    return {
        record.partition: AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id or "", timestamp=record.timestamp
        )
        for record in records
        if record.partition is not None
    }


class EvaluationWriter:
    """Records a check step's evaluations: as batches (one transaction per chunk of
    partitions) when the instance's event log takes them
    (``fin_assets/dagster_internals/event_log.py``),
    otherwise one event each, as Dagster does.

    A batched evaluation is logged here rather than yielded, so Dagster does not see it fail:
    ``blocking_failures`` lists the blocking ones for the step to fail on, with Dagster's words.
    """

    def __init__(self, context: dg.AssetCheckExecutionContext) -> None:
        self._context = context
        self.batched = bool(
            getattr(context.instance.event_log_storage, "takes_check_evaluation_batches", False)
        )
        self.blocking_failures: list[dg.AssetCheckEvaluation] = []

    def write(
        self, evaluations: Sequence[dg.AssetCheckEvaluation]
    ) -> Iterator[dg.AssetCheckEvaluation]:
        """Record ``evaluations``; yields those the step must yield itself (unbatched)."""
        if not self.batched:
            yield from evaluations
            return
        # The step's own context: Dagster's public API has no way to log an evaluation as part
        # of a batch, and DagsterEvent.from_step is what a yielded evaluation goes through.
        step_context = self._context.op_execution_context._step_execution_context
        batch = generate_event_batch_id()
        for index, evaluation in enumerate(evaluations):
            if not evaluation.passed and evaluation.blocking:
                self.blocking_failures.append(evaluation)
            dg.DagsterEvent.from_step(
                event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                step_context=step_context,
                event_specific_data=evaluation,
                message=f"Asset check '{evaluation.check_name}' on "
                f"'{evaluation.asset_key.to_user_string()}' "
                + ("passed." if evaluation.passed else "did not pass.")
                + (
                    ""
                    if evaluation.description is None
                    else f" Description: '{evaluation.description}'"
                ),
                batch_metadata=DagsterEventBatchMetadata(batch, index == len(evaluations) - 1),
            )
