"""A partition range as one run, the way ``dagster asset materialize --partition-range`` makes
it, and as an asset backfill the way the UI submits it: what ``fin-assets backfill``
(``fin_assets/tools/backfill.py``) needs of Dagster's command-line and backfill internals.

Dagster's public API has no call that builds the CLI's range run or a UI backfill from a
selection; every private name below has its contract test
(``tests/unit/test_dagster_contracts.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._cli.workspace.cli_target import get_repository_python_origin_from_cli_opts
from dagster._core.definitions.backfill_policy import BackfillPolicyType
from dagster._core.execution.api import execute_run_iterator
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.origin import JobPythonOrigin
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
)
from dagster._core.utils import make_new_backfill_id
from dagster._utils.hosted_user_process import recon_job_from_origin, recon_repository_from_origin
from dagster_shared.cli import PythonPointerOpts


class BackfillError(Exception):
    """A backfill that cannot start: bad selection or range, no daemon for --submit."""


@dataclass(frozen=True)
class RangeJob:
    """The implicit asset job of a selection, and the tags of one range run of it."""

    recon: Any  # ReconstructableJob
    repo: dg.RepositoryDefinition
    keys: list[dg.AssetKey]
    tags: dict[str, str]
    first: str
    last: str


def resolve_range(module: str, select: str, first: str, last: str) -> RangeJob:
    """The implicit asset job of the selection and the run tags of the range, checked the way
    ``dagster asset materialize`` checks them; a bad selection or bound raises BackfillError."""
    origin = get_repository_python_origin_from_cli_opts(
        PythonPointerOpts(module_name=module, working_directory=os.getcwd())
    )
    repo = recon_repository_from_origin(origin).get_definition()
    try:
        keys = sorted(  # in a stable order: messages name the first key that fails
            dg.AssetSelection.from_coercible(select.split(",")).resolve(repo.asset_graph),
            key=lambda key: key.to_user_string(),
        )
    except dg.DagsterInvalidSubsetError as exc:
        raise BackfillError(f"--select {select}: {exc}") from None
    job = repo.get_implicit_job_def_for_assets(keys)
    if job is None:
        raise BackfillError(f"--select {select}: the assets do not share one partitions definition")
    for key in keys:
        node = job.asset_layer.get(key)
        partitions_def = node.partitions_def
        if partitions_def is None:
            raise BackfillError(f"--select: {key.to_user_string()} is not partitioned")
        policy = node.backfill_policy
        if policy is None or policy.policy_type != BackfillPolicyType.SINGLE_RUN:
            raise BackfillError(
                f"--select: {key.to_user_string()} has no BackfillPolicy.single_run(); "
                "a range of it needs one run per partition (launch it from the UI)"
            )
        for bound in (first, last):
            if not partitions_def.has_partition_key(bound):
                raise BackfillError(
                    f"--partition-range: {bound!r} is not a partition of "
                    f"{key.to_user_string()} (hourly keys look like 2026-01-05-13:00)"
                )
    recon = recon_job_from_origin(JobPythonOrigin(job.name, repository_origin=origin))
    tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    return RangeJob(recon, repo, keys, tags, first, last)


def create_range_run(instance: dg.DagsterInstance, job: RangeJob) -> dg.DagsterRun:
    """The range's one run, as the CLI creates it (same job, tags and selection)."""
    return instance.create_run_for_job(
        job_def=job.recon.get_definition(),
        run_config={},
        tags=job.tags,
        job_code_origin=job.recon.get_python_origin(),
        asset_selection=frozenset(job.keys),
    )


def execute_in_process(job: RangeJob, run: dg.DagsterRun, instance: dg.DagsterInstance) -> None:
    """Execute ``run`` in this process. Its events are stored by the instance and not kept
    here: keeping them is what grows ``dagster asset materialize``'s memory."""
    for _event in execute_run_iterator(job.recon, run, instance):
        pass


def submit_backfill(instance: dg.DagsterInstance, job: RangeJob, title: str) -> tuple[str, int]:
    """An asset backfill of the range for the daemon (what the UI's "Materialize selected"
    submits); returns its id and how many partitions it covers."""
    partitions_def = job.repo.asset_graph.get(job.keys[0]).partitions_def
    assert partitions_def is not None  # resolve_range refused unpartitioned assets
    keys = partitions_def.get_partition_keys()
    names = keys[keys.index(job.first) : keys.index(job.last) + 1]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=job.repo.asset_graph,
        partition_names=names,
        asset_selection=job.keys,
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id, len(names)


def backfill_requested(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    """Whether the daemon may still start runs for the backfill."""
    backfill = instance.get_backfill(backfill_id)
    return backfill is not None and backfill.status == BulkActionStatus.REQUESTED


def backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> Sequence[dg.RunRecord]:
    """The runs the daemon started for the backfill, oldest first."""
    return instance.get_run_records(
        dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}), ascending=True
    )
