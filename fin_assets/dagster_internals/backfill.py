"""A partition range as one run, the way ``dagster asset materialize --partition-range`` makes
it, and as an asset backfill the way the UI submits it: what ``fin-assets backfill``
(``fin_assets/tools/backfill.py``) needs of Dagster's command-line and backfill internals.

Dagster's public API has no call that builds the CLI's range run or a UI backfill from a
selection; every private name below has its contract test
(``tests/unit/test_dagster_contracts.py``).
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Callable, Sequence
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

from resources.errors import InvalidInputError

# The range check of every step (fin_assets/lib/partitions.py partition_range_keys), given by
# the caller: the seam sits below the library and imports nothing of it.
RangeCheck = Callable[..., list[str]]


@dataclass(frozen=True)
class RangeJob:
    """The implicit asset job of a selection, and the tags of one range run of it."""

    recon: Any  # ReconstructableJob
    repo: dg.RepositoryDefinition
    keys: list[dg.AssetKey]
    tags: dict[str, str]
    first: str
    last: str
    partitions: list[str]  # the range's partition keys, in time order


def resolve_range(
    module: str, select: str, first: str, last: str, *, check: RangeCheck
) -> RangeJob:
    """The implicit asset job of the selection and the run tags of the range, checked before
    anything runs: more strictly than ``dagster asset materialize`` checks them, which takes a
    key inside an hour and a reversed range. A selection or bound that cannot make one range
    run raises InvalidInputError naming the option, the asset and the key, with what to give
    instead (``check``: the steps' own range check, so the command refuses what a step would)."""
    origin = get_repository_python_origin_from_cli_opts(
        PythonPointerOpts(module_name=module, working_directory=os.getcwd())
    )
    repo = recon_repository_from_origin(origin).get_definition()
    keys = _selected(repo, select, module)
    # One range run, or one backfill of partition names, is of assets of one partitions
    # definition (Dagster's CLI says so too, but builds a job of hourly and daily assets).
    mixed = _mixed_partitions(repo, keys)
    job = repo.get_implicit_job_def_for_assets(keys)
    if mixed or job is None:
        raise InvalidInputError(f"--select {select}: {mixed or 'its assets cannot run in one job'}")
    where = f"--partition-range {first}...{last}"
    partitions: list[str] = []
    for key in keys:
        node = job.asset_layer.get(key)
        partitions_def = node.partitions_def
        if partitions_def is None:
            raise InvalidInputError(
                f"--select {select}: {key.to_user_string()} is not partitioned; "
                "materialize it without a range (`dagster asset materialize --select ...`)"
            )
        policy = node.backfill_policy
        if policy is None or policy.policy_type != BackfillPolicyType.SINGLE_RUN:
            raise InvalidInputError(
                f"--select {select}: {key.to_user_string()} has no BackfillPolicy.single_run(); "
                "a range of it needs one run per partition (launch it from the UI)"
            )
        partitions = check(partitions_def, first, last, asset=key.to_user_string(), where=where)
    recon = recon_job_from_origin(JobPythonOrigin(job.name, repository_origin=origin))
    tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    return RangeJob(recon, repo, keys, tags, first, last, partitions)


def _selected(repo: dg.RepositoryDefinition, select: str, module: str) -> list[dg.AssetKey]:
    """The asset keys ``--select`` names, in a stable order (messages name the first key that
    fails); InvalidInputError if it names none, or a key the code location does not have."""
    known = sorted(key.to_user_string() for key in repo.asset_graph.get_all_asset_keys())
    listing = f"`dagster asset list -m {module}` lists them"
    parts = [part.strip() for part in select.split(",")]
    if not all(parts):
        raise InvalidInputError(
            f"--select {select!r}: an empty asset key; give asset keys separated by commas, "
            f"e.g. {','.join(known[:2])} ({listing})"
        )
    try:
        keys = dg.AssetSelection.from_coercible(parts).resolve(repo.asset_graph)
    except dg.DagsterInvalidSubsetError:
        name = next((part for part in parts if part not in known), parts[0])
        raise InvalidInputError(
            f"--select {select}: {module} has no asset {name}; "
            f"{_nearest_keys(name, known)} ({listing})"
        ) from None
    except dg.DagsterError as exc:  # a selection string Dagster cannot parse
        raise InvalidInputError(
            f"--select {select}: {str(exc).splitlines()[0]} ({listing})"
        ) from None
    if not keys:
        raise InvalidInputError(f"--select {select}: selects no asset of {module} ({listing})")
    return sorted(keys, key=lambda key: key.to_user_string())


def _nearest_keys(name: str, known: Sequence[str]) -> str:
    """ "did you mean ..." for an asset key the code location does not have: the keys that hold
    its parts in order (``raw/bars`` -> ``raw/crypto/bars``), else the closest spellings."""
    parts = name.split("/")

    def holds(key: str) -> bool:
        rest = iter(key.split("/"))
        return all(part in rest for part in parts)

    near = [key for key in known if holds(key)] or difflib.get_close_matches(name, known, n=3)
    if near:
        return f"did you mean {' or '.join(near)}?"
    more = f" and {len(known) - 8} more" if len(known) > 8 else ""
    return f"its assets are {', '.join(known[:8])}{more}"


def _mixed_partitions(repo: dg.RepositoryDefinition, keys: Sequence[dg.AssetKey]) -> str:
    """Which two selected assets are partitioned differently ('' if none are)."""
    defs = {key: repo.asset_graph.get(key).partitions_def for key in keys}
    first = keys[0]
    other = next((key for key in keys if defs[key] != defs[first]), None)
    if other is None:
        return ""
    return (
        f"{first.to_user_string()} ({_describe(defs[first])}) and {other.to_user_string()} "
        f"({_describe(defs[other])}) are partitioned differently, and one range run takes "
        "assets of one partitions definition: backfill them separately"
    )


def _describe(partitions_def: dg.PartitionsDefinition | None) -> str:
    if partitions_def is None:
        return "not partitioned"
    text = str(partitions_def).rstrip(".")
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) and partitions_def.exclusions:
        text += ", less the closed periods of its calendar"
    return text


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
    names = job.partitions
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
