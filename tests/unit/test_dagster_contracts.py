"""The contract of the seam into Dagster's internals.

``fin_assets/dagster_internals/`` is the only place in the product that imports Dagster's
internals (``dagster._*``) or a Dagster library's internal modules (``dagster_celery.tasks``,
``dagster_shared.serdes``, ...); ``tests/unit/test_module_structure.py`` enforces it. This file
states, for every private name the seam uses, what the seam relies on of it: a Dagster upgrade
that moves or changes one fails here, naming it and the seam function that needs it, instead of
in a backfill at run time.

- ``IMPORTS``: every name the seam imports from Dagster's internals and what it relies on of it
  (parameters, members, enum values, tag strings); a completeness test keeps the table whole.
- ``STORAGE_MEMBERS``: what ``event_log.py`` overrides, calls or reads of Dagster's
  ``SqliteEventLogStorage``, private members included; ``COLUMNS``: the columns it writes and
  reads directly.
- ``MEMBERS``: what the seam calls or reads on Dagster's objects that Dagster does not declare
  public (``OpExecutionContext._step_execution_context``, ``DagsterInstance.add_backfill``...).
- Behaviour contracts, where they are cheap: what those names do for the seam.

Private modules are imported inside the tests (``internal``), never at the top of this file: a
moved module fails its own contract, not the collection of the whole file.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import celery
import dagster as dg
import pytest
import sqlalchemy as sa
from dagster_celery import celery_executor

from tests.helpers import PROJECT_ROOT
from tests.unit.test_module_structure import DAGSTER_INTERNAL, imports_of

SEAM = PROJECT_ROOT / "fin_assets" / "dagster_internals"
STORAGE_MODULE = "dagster._core.storage.event_log"
MISSING = object()

# -- how a contract is stated ---------------------------------------------------------------
# A check takes the Dagster object and returns what no longer holds ([] when the contract does).
Check = Callable[[Any], list[str]]
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def relied_on(name: str, uses: str, problems: Sequence[str]) -> str:
    """The failure message: which private name broke, how, and what fin-assets needs it for."""
    return (
        f"{name} changed: {'; '.join(problems)}. fin-assets relies on it in "
        f"fin_assets/dagster_internals/{uses}"
    )


def internal(module: str, name: str, uses: str | None = None) -> Any:
    """``module.name``, or a failure naming it when a Dagster upgrade moved it (``uses``: what
    the seam needs it for; by default, its row in ``IMPORTS`` says)."""
    try:
        parent = importlib.import_module(module)
        if not hasattr(parent, name):  # `from package import submodule` imports it: so does this
            importlib.import_module(f"{module}.{name}")
        return getattr(parent, name)
    except (ImportError, AttributeError) as exc:
        if uses is None:
            pytest.fail(f"{module}.{name} is gone ({exc}): see its contract in IMPORTS")
        pytest.fail(relied_on(f"{module}.{name}", uses, [f"it is gone ({exc})"]))


def takes(*positional: str, kw: Sequence[str] = ()) -> Check:
    """A callable the seam calls with ``positional`` (in this order) and ``kw`` (by keyword);
    any other parameter must have a default: a new required one breaks the seam's call."""

    def check(fn: Any) -> list[str]:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            return [f"has no signature ({exc})"]
        params = [p for p in signature.parameters.values() if p.name not in ("self", "cls")]
        in_order = [p for p in params if p.kind in _POSITIONAL]
        star_args = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
        problems = []
        for index, name in enumerate(positional):
            if index < len(in_order) and in_order[index].name != name:
                problems.append(f"parameter {index + 1} is {in_order[index].name!r}, not {name!r}")
            elif index >= len(in_order) and not star_args:
                problems.append(f"takes no parameter {index + 1} ({name!r})")
        by_name = {p.name: p for p in params}
        problems += [
            f"takes no keyword {name!r}"
            for name in kw
            if name not in by_name or by_name[name].kind not in _KEYWORD
        ]
        problems += [
            f"requires {p.name!r}, which the seam does not pass"
            for p in params
            if p.default is p.empty and p.kind not in _VARIADIC and p.name not in {*positional, *kw}
        ]
        return problems

    return check


def has(*names: str) -> Check:
    return lambda obj: [f"has no {name!r}" for name in names if not hasattr(obj, name)]


def on(member: str, check: Check) -> Check:
    """``check`` applied to ``obj.member``."""

    def run(obj: Any) -> list[str]:
        value = getattr(obj, member, MISSING)
        if value is MISSING:
            return [f"has no {member!r}"]
        return [f"{member}: {problem}" for problem in check(value)]

    return run


def enum_of(*names: str, **values: str) -> Check:
    """An enum with members ``names``, and ``values`` as the values of those named."""

    def check(enum: Any) -> list[str]:
        members = getattr(enum, "__members__", {})
        problems = [f"has no member {name}" for name in [*names, *values] if name not in members]
        problems += [
            f"{name} is {members[name].value!r}, not {value!r}"
            for name, value in values.items()
            if name in members and members[name].value != value
        ]
        return problems

    return check


def equals(expected: Any) -> Check:
    return lambda value: [] if value == expected else [f"is {value!r}, not {expected!r}"]


def holds(predicate: Callable[[Any], bool], what: str) -> Check:
    """A behaviour, said in words (``what``) for the message when it stops holding."""

    def check(obj: Any) -> list[str]:
        try:
            return [] if predicate(obj) else [f"no longer {what}"]
        except Exception as exc:
            return [f"no longer {what} (raised {exc!r})"]

    return check


def builds(**fields: Any) -> Check:
    """A class the seam builds with these keywords, and reads the same values back from."""

    def check(cls: Any) -> list[str]:
        try:
            built = cls(**fields)
        except Exception as exc:
            return [f"cannot be built with {sorted(fields)} ({exc})"]
        return [
            f"{name} reads back {getattr(built, name, MISSING)!r}, not {value!r}"
            for name, value in fields.items()
            if getattr(built, name, MISSING) != value
        ]

    return check


def all_of(*checks: Check) -> Check:
    return lambda obj: [problem for check in checks for problem in check(obj)]


def exists(_: Any) -> list[str]:
    """Only that it is there: a missing member fails before any check runs."""
    return []


is_property = holds(lambda v: isinstance(v, property | functools.cached_property), "a property")


# -- what the seam relies on of each name it imports ----------------------------------------
CHECK_KEY = dg.AssetCheckKey(dg.AssetKey("prices"), "no_gaps")
RUN_STATUS = dg.DagsterRunStatus
EVENT = dg.DagsterEventType
# The event types event_log.py:_store_batch writes in one transaction (its BATCHED_EVENTS), and
# those of them it must also record in the asset tables, as Dagster's store_event does.
BATCHED = {
    EVENT.ASSET_MATERIALIZATION_PLANNED,
    EVENT.ASSET_MATERIALIZATION,
    EVENT.ASSET_OBSERVATION,
    EVENT.ASSET_CHECK_EVALUATION_PLANNED,
    EVENT.ASSET_CHECK_EVALUATION,
}
BATCHED_ASSET_EVENTS = {
    EVENT.ASSET_MATERIALIZATION_PLANNED,
    EVENT.ASSET_MATERIALIZATION,
    EVENT.ASSET_OBSERVATION,
}


def _check_partition_info(cls: Any) -> list[str]:
    status = internal(
        "dagster._core.storage.asset_check_execution_record", "AssetCheckExecutionRecordStatus"
    )
    fields = {
        "check_key": CHECK_KEY,
        "partition_key": "2024-01-01",
        "latest_execution_status": status.SUCCEEDED,
        "latest_target_materialization_storage_id": 5,
        "latest_planned_run_id": "run",
        "latest_check_event_storage_id": 7,
        "latest_materialization_storage_id": 5,
    }
    problems = builds(**fields)(cls)
    if problems:
        return problems
    # _updated_check_state: an evaluation of an older materialization is no longer current.
    if not cls(**fields).is_current:
        problems.append("is_current is False for an evaluation of the latest materialization")
    if cls(**{**fields, "latest_materialization_storage_id": 6}).is_current:
        problems.append("is_current is True for an evaluation of an older materialization")
    return problems


def _one_op_plan() -> Any:
    create_execution_plan = internal(
        "dagster._core.execution.api", "create_execution_plan", "waiting.py (a plan to build on)"
    )

    @dg.op
    def fetch() -> None: ...

    @dg.job
    def fetch_job() -> None:
        fetch()

    return create_execution_plan(fetch_job)


def _active_execution(cls: Any) -> list[str]:
    """What waiting.py:PatientActiveExecution overrides of Dagster's ActiveExecution, with the
    arguments Dagster's loops pass, and the state it reads of a built one."""
    problems = all_of(
        on("get_steps_to_execute", takes("limit")),
        on("concurrency_event_iterator", takes("plan_context")),
        on("plan_events_iterator", takes("job_context")),
        on("has_in_flight_steps", is_property),
    )(cls)
    retry_mode = internal("dagster._core.execution.retries", "RetryMode", "waiting.py")
    built = cls(_one_op_plan(), retry_mode.ENABLED)
    state = {
        "_executable": list,  # steps ready to start (or blocked on a pool slot)
        "_pending_skip": list,
        "_pending_abandon": list,
        "_waiting_to_retry": dict,  # step key -> time.time() its retry is due
        "_instance_concurrency_context": type(None),  # None when built without one
    }
    for name, kind in state.items():
        value = getattr(built, name, MISSING)
        if not isinstance(value, kind):
            problems.append(f"a built one's {name} is {value!r}, not a {kind.__name__}")
    return problems


def _start_builds_the_module_class(module: Any) -> bool:
    """ExecutionPlan.start builds whatever ``module.ActiveExecution`` is when it is called."""
    retry_mode = internal("dagster._core.execution.retries", "RetryMode", "waiting.py")
    dagsters = module.ActiveExecution

    class Substitute(dagsters):
        pass

    module.ActiveExecution = Substitute
    try:
        return isinstance(_one_op_plan().start(retry_mode.ENABLED), Substitute)
    finally:
        module.ActiveExecution = dagsters


_ORIGIN = "dagster._core.origin"
_BACKFILL = "dagster._core.execution.backfill"
_CHECK_RECORD = "dagster._core.storage.asset_check_execution_record"
_CHECK_EVALUATION = "dagster._core.definitions.asset_checks.asset_check_evaluation"
_TYPES_ONLY = "names a type in annotations only"

# (module, name, where the seam uses it and for what, what it relies on)
IMPORTS: list[tuple[str, str, str, Check]] = [
    # event_log.py
    (
        "dagster._core.asset_graph_view.serializable_entity_subset",
        "SerializableEntitySubset",
        "event_log.py:_updated_check_state (a check's partitions of each status)",
        all_of(
            on("from_coercible_value", takes("key", "value", "partitions_def")),
            on("empty", takes("key", "partitions_def")),
            on("compute_union", takes("other")),
            on("compute_difference", takes("other")),
        ),
    ),
    (
        _CHECK_EVALUATION,
        "AssetCheckEvaluationPlanned",
        "event_log.py:_record_check_planned (one PLANNED row per partition)",
        has("asset_key", "check_name", "partitions_subset"),
    ),
    (
        "dagster._core.definitions.partitions.subset",
        "PartitionsSubset",
        "event_log.py:expanded_planned (the partitions of a planned event's subset)",
        has("get_partition_keys", "with_partition_keys"),
    ),
    (
        "dagster._core.events",
        "ASSET_EVENTS",
        "event_log.py:_store_batch (which batched events also go to the asset tables)",
        holds(
            lambda events: set(events) & BATCHED == BATCHED_ASSET_EVENTS,
            f"includes exactly {sorted(e.value for e in BATCHED_ASSET_EVENTS)} of those batched",
        ),
    ),
    (
        "dagster._core.events",
        "AssetMaterializationPlannedData",
        "event_log.py:expanded_planned (a planned event per partition)",
        all_of(
            takes("asset_key", kw=("partition", "partitions_subset")),
            has("asset_key", "partitions_subset"),
        ),
    ),
    (
        _CHECK_RECORD,
        "AssetCheckExecutionRecordStatus",
        "event_log.py:_record_check_evaluations (the execution_status column's values); "
        "instance.py re-exports it to lib/alerts.py and tools/metrics/",
        enum_of(PLANNED="PLANNED", SUCCEEDED="SUCCEEDED", FAILED="FAILED"),
    ),
    (
        _CHECK_RECORD,
        "AssetCheckExecutionResolvedStatus",
        "event_log.py:_updated_check_state (the statuses a check's partitions are sorted in)",
        enum_of("IN_PROGRESS", "SUCCEEDED", "FAILED", "EXECUTION_FAILED", "SKIPPED"),
    ),
    (
        _CHECK_RECORD,
        "AssetCheckPartitionInfo",
        "event_log.py:get_asset_check_partition_info (built from its own query)",
        _check_partition_info,
    ),
    (
        "dagster._core.storage.asset_check_state",
        "AssetCheckState",
        "event_log.py:get_asset_check_state (the state it computes, as Dagster would)",
        all_of(
            builds(latest_storage_id=3, subsets={}, in_progress_runs={}),
            on("with_updates", takes("key", "partitions_def", "partition_records", "run_statuses")),
        ),
    ),
    (
        "dagster._core.storage.asset_check_state",
        "_process_run_statuses",
        "event_log.py:_updated_check_state (partitions of finished runs leave IN_PROGRESS)",
        takes("key", "partitions_def", "subsets", "in_progress_runs", "run_statuses"),
    ),
    (
        "dagster._core.storage.dagster_run",
        "FINISHED_STATUSES",
        "event_log.py:get_asset_check_state (the runs whose planned checks are settled)",
        holds(
            lambda statuses: (
                {RUN_STATUS.SUCCESS, RUN_STATUS.FAILURE, RUN_STATUS.CANCELED} <= set(statuses)
            ),
            "includes SUCCESS, FAILURE and CANCELED",
        ),
    ),
    (
        STORAGE_MODULE,
        "SqliteEventLogStorage",
        "event_log.py:FinAssetsSqliteEventLogStorage (its base class; see STORAGE_MEMBERS)",
        on("__init__", takes("base_dir", kw=("inst_data",))),
    ),
    (
        STORAGE_MODULE,
        "SqlEventLogStorage",
        "event_log.py:write_index_rows (the storage of either instance it writes through)",
        has("_store_asset_event_tags", "_store_asset_event", "_event_to_row"),
    ),
    # event_log_postgres.py
    (
        "dagster_postgres.utils",
        "pg_url_from_config",
        "event_log_postgres.py:from_config_value (the URL of postgres_url or postgres_db)",
        all_of(
            takes("config_value"),
            holds(
                lambda f: (
                    f({"postgres_url": "postgresql://u@h:5432/d"}) == "postgresql://u@h:5432/d"
                ),
                "the URL as configured",
            ),
        ),
    ),
    (
        "dagster_postgres.utils",
        "get_token_provider_from_config",
        "event_log_postgres.py:from_config_value (none without a token config)",
        all_of(
            takes("config_value"),
            holds(lambda f: f({"postgres_url": "postgresql://u@h/d"}) is None, "None"),
        ),
    ),
    (
        "dagster._core.storage.event_log.schema",
        "AssetCheckExecutionsTable",
        "event_log.py:_record_check_evaluations, get_asset_check_partition_info (see COLUMNS)",
        all_of(
            holds(lambda t: isinstance(t, sa.Table), "a sqlalchemy Table"),
            on("name", equals("asset_check_executions")),
        ),
    ),
    (
        "dagster._core.storage.event_log.schema",
        "SqlEventLogStorageTable",
        "event_log.py:_store_batch (one executemany per database; see COLUMNS)",
        all_of(
            holds(lambda t: isinstance(t, sa.Table), "a sqlalchemy Table"),
            on("name", equals("event_logs")),
        ),
    ),
    (
        "dagster._core.storage.sqlite",
        "create_db_conn_string",
        "event_log.py:conn_string_for_shard (the same files as Dagster's storage)",
        all_of(
            takes("base_dir", "db_name"),
            holds(lambda f: f("/h/runs", "index") == "sqlite:////h/runs/index.db", "a file URL"),
        ),
    ),
    (
        "dagster._serdes",
        "ConfigurableClassData",
        "event_log.py:FinAssetsSqliteEventLogStorage.__init__ (inst_data, handed to Dagster)",
        builds(
            module_name="fin_assets.dagster_internals.event_log", class_name="C", config_yaml=""
        ),
    ),
    # backfill.py
    (
        "dagster._cli.workspace.cli_target",
        "get_repository_python_origin_from_cli_opts",
        "backfill.py:resolve_range (the code location, as `dagster asset materialize -m`)",
        takes("params"),
    ),
    (
        "dagster._core.definitions.backfill_policy",
        "BackfillPolicyType",
        "backfill.py:resolve_range (only single-run assets make one range run)",
        all_of(
            enum_of("SINGLE_RUN"),
            holds(
                lambda t: dg.BackfillPolicy.single_run().policy_type is t.SINGLE_RUN,
                "what BackfillPolicy.single_run().policy_type is",
            ),
        ),
    ),
    (
        "dagster._core.execution.api",
        "execute_run_iterator",
        "backfill.py:execute_in_process",
        takes("job", "dagster_run", "instance"),
    ),
    (
        _BACKFILL,
        "BulkActionStatus",
        "backfill.py:backfill_requested, instance.py:requested_backfills",
        enum_of("REQUESTED"),
    ),
    (
        _BACKFILL,
        "PartitionBackfill",
        "backfill.py:submit_backfill; instance.py:requested_backfills hands it to "
        "tools/metrics/ (asset_backfill_data)",
        all_of(
            on(
                "from_asset_partitions",
                takes(
                    kw=(
                        "backfill_id",
                        "asset_graph",
                        "partition_names",
                        "asset_selection",
                        "backfill_timestamp",
                        "tags",
                        "dynamic_partitions_store",
                        "all_partitions",
                        "title",
                        "description",
                        "run_config",
                    )
                ),
            ),
            has("backfill_id", "status", "asset_backfill_data"),
        ),
    ),
    (
        _BACKFILL,
        "BulkActionsFilter",
        "instance.py:requested_backfills",
        has("statuses"),
    ),
    (
        _ORIGIN,
        "JobPythonOrigin",
        "backfill.py:resolve_range (the implicit asset job's origin)",
        takes("job_name", kw=("repository_origin",)),
    ),
    (
        "dagster._core.storage.tags",
        "ASSET_PARTITION_RANGE_START_TAG",
        "backfill.py:resolve_range (the range run's tags, as the CLI writes them)",
        equals("dagster/asset_partition_range_start"),
    ),
    (
        "dagster._core.storage.tags",
        "ASSET_PARTITION_RANGE_END_TAG",
        "backfill.py:resolve_range (the range run's tags, as the CLI writes them)",
        equals("dagster/asset_partition_range_end"),
    ),
    (
        "dagster._core.storage.tags",
        "BACKFILL_ID_TAG",
        "backfill.py:backfill_runs (the runs the daemon started for a backfill)",
        equals("dagster/backfill"),
    ),
    (
        "dagster._core.utils",
        "make_new_backfill_id",
        "backfill.py:submit_backfill",
        all_of(takes(), holds(lambda f: isinstance(f(), str) and f() != f(), "a new str id")),
    ),
    (
        "dagster._utils.hosted_user_process",
        "recon_job_from_origin",
        "backfill.py:resolve_range (the job a range run executes)",
        takes("origin"),
    ),
    (
        "dagster._utils.hosted_user_process",
        "recon_repository_from_origin",
        "backfill.py:resolve_range (the code location's definitions)",
        takes("origin"),
    ),
    (
        "dagster_shared.cli",
        "PythonPointerOpts",
        "backfill.py:resolve_range (`-m module` from the working directory)",
        builds(module_name="fin_assets.definitions", working_directory="/srv/fin-assets"),
    ),
    # check_events.py
    (
        _CHECK_EVALUATION,
        "AssetCheckEvaluationTargetMaterializationData",
        "check_events.py:target_materializations (the materialization a check evaluated)",
        builds(storage_id=11, run_id="run", timestamp=1_700_000_000.5),
    ),
    (
        "dagster._core.errors",
        "DagsterAssetCheckFailedError",
        "check_events.py:check_failed_error (a blocking failure fails the step as Dagster's)",
        all_of(
            holds(lambda cls: issubclass(cls, dg.DagsterError), "a DagsterError"),
            holds(lambda cls: str(cls("2 checks failed")) == "2 checks failed", "its message"),
        ),
    ),
    (
        "dagster._core.events",
        "DagsterEventBatchMetadata",
        "check_events.py:EvaluationWriter.write (evaluations logged as one batch)",
        takes("id", "is_end"),
    ),
    (
        "dagster._core.events",
        "generate_event_batch_id",
        "check_events.py:EvaluationWriter.write",
        all_of(takes(), holds(lambda f: isinstance(f(), str) and f() != f(), "a new str id")),
    ),
    # instance.py
    (
        "dagster._core.definitions.freshness",
        "FreshnessState",
        "instance.py re-exports it: lib/alerts.py:freshness_alerts compares FAIL and PASS, "
        "tools/metrics/ labels states by value.lower()",
        enum_of(
            PASS="PASS",
            WARN="WARN",
            FAIL="FAIL",
            UNKNOWN="UNKNOWN",
            NOT_APPLICABLE="NOT_APPLICABLE",
        ),
    ),
    (
        "dagster._core.remote_representation.external_data",
        "TimeWindowPartitionsSnap",
        "instance.py:partitions_to_json, partitions_from_json",
        all_of(on("from_def", takes("partitions_def")), on("get_partitions_definition", takes())),
    ),
    (
        "dagster._core.scheduler.instigation",
        "InstigatorType",
        "instance.py:sensor_cursors",
        enum_of("SENSOR"),
    ),
    (
        _CHECK_RECORD,
        "AssetCheckExecutionRecord",
        "instance.py:latest_check_executions, read by lib/alerts.py:check_alerts and "
        "tools/metrics/ (status, evaluation, create_timestamp)",
        has("status", "evaluation", "create_timestamp"),
    ),
    # celery.py
    (
        "dagster._core.events",
        "EngineEventData",
        "celery.py:LiveRunStepTask.__call__ (the step-taken engine event)",
        takes("metadata"),
    ),
    (
        "dagster._grpc.types",
        "ExecuteStepArgs",
        "celery.py:LiveRunStepTask.__call__ (the step message's run and steps)",
        has("run_id", "step_keys_to_execute", "instance_ref"),
    ),
    (
        "dagster_celery.executor",
        "CeleryExecutor",
        "celery.py:make_worker_app (the executor's app settings); "
        "executors.py:fin_assets_celery_executor (the executor dagster-celery's creates)",
        all_of(
            on("for_cli", takes(kw=("broker", "backend", "config_source"))),
            on("app_args", takes()),
        ),
    ),
    (
        "dagster_celery.make_app",
        "make_app",
        "celery.py:make_worker_app",
        takes("app_args"),
    ),
    (
        "dagster_celery.tasks",
        "create_task",
        "celery.py:step_task (dagster-celery's task on LiveRunStepTask)",
        all_of(
            takes("celery_app"),
            holds(
                lambda f: any(
                    p.kind is inspect.Parameter.VAR_KEYWORD
                    for p in inspect.signature(f).parameters.values()
                ),
                "passes task options (base=) on to Celery",
            ),
        ),
    ),
    (
        "dagster_shared.serdes",
        "unpack_value",
        "celery.py:LiveRunStepTask.__call__ (the step message's arguments)",
        takes("val", kw=("as_type",)),
    ),
    # executors.py and runs.py (under TYPE_CHECKING)
    (
        "dagster._core.execution.context.system",
        "PlanOrchestrationContext",
        "runs.py:ReapingExecutor.execute, executors.py:CeleryStepsExecutor.execute; "
        "waiting.py:PatientActiveExecution._look_while_blocked (the loops' context, untyped)",
        has("run_id", "instance", "dagster_run"),
    ),
    (
        "dagster._core.execution.plan.plan",
        "ExecutionPlan",
        f"runs.py, executors.py ({_TYPES_ONLY})",
        holds(inspect.isclass, "a class"),
    ),
    # waiting.py
    (
        "dagster._core.execution.plan.active",
        "ActiveExecution",
        "waiting.py:PatientActiveExecution (its base class: what it overrides and reads)",
        _active_execution,
    ),
    (
        "dagster._core.execution.plan",
        "active",
        "waiting.py:install_patient_execution (ExecutionPlan.start, the in-process and Celery "
        "loops' ActiveExecution, builds the class this module names at the time of the call)",
        holds(_start_builds_the_module_class, "ExecutionPlan.start builds module.ActiveExecution"),
    ),
    (
        "dagster._core.executor",
        "multiprocess",
        "waiting.py:install_patient_execution (the multiprocess executor builds its loop's "
        "ActiveExecution and its step command by these module globals, at each call)",
        all_of(
            holds(
                lambda m: "ActiveExecution" in m.MultiprocessExecutor.execute.__code__.co_names,
                "MultiprocessExecutor.execute builds the module global ActiveExecution",
            ),
            holds(
                lambda m: (
                    "MultiprocessExecutorChildProcessCommand"
                    in m.execute_step_out_of_process.__code__.co_names
                ),
                "execute_step_out_of_process builds the module global "
                "MultiprocessExecutorChildProcessCommand",
            ),
        ),
    ),
    (
        "dagster._core.executor.multiprocess",
        "MultiprocessExecutorChildProcessCommand",
        "waiting.py:ParentBoundStepCommand (its base class: execute in the step process, "
        "term_event to interrupt the step, step_key to name it)",
        all_of(
            builds(
                run_config={},
                dagster_run=None,
                step_key="raw__bars",
                instance_ref=None,
                term_event=None,
                recon_pipeline=None,
                retry_mode=None,
                known_state=None,
                repository_load_data=None,
            ),
            on("execute", holds(inspect.isgeneratorfunction, "a generator of the step's events")),
        ),
    ),
]


@pytest.mark.parametrize(
    ("module", "name", "uses", "check"), IMPORTS, ids=[f"{m}.{n}" for m, n, *_ in IMPORTS]
)
def test_private_import_keeps_its_contract(module: str, name: str, uses: str, check: Check) -> None:
    problems = check(internal(module, name, uses))
    assert not problems, relied_on(f"{module}.{name}", uses, problems)


def seam_private_imports(package: Path) -> dict[tuple[str, str], str]:
    """(module, name) -> file:line for every Dagster internal a module under ``package``
    imports (``import dagster_celery.tasks`` as the name ``import``)."""
    found: dict[tuple[str, str], str] = {}
    for path in sorted(package.rglob("*.py")):
        for module, names, line in imports_of(path):
            if DAGSTER_INTERNAL.match(module):
                for name in names or ["import"]:
                    found.setdefault((module, name), f"{path.relative_to(package.parent)}:{line}")
    return found


def test_every_private_import_of_the_seam_has_a_contract() -> None:
    found = seam_private_imports(SEAM)
    table = {(module, name) for module, name, *_ in IMPORTS}
    assert len(table) == len(IMPORTS), "IMPORTS names a (module, name) twice"
    missing = [
        f"{where}: {m}.{n}" for (m, n), where in sorted(found.items()) if (m, n) not in table
    ]
    assert not missing, (
        "Dagster internals imported by the seam without a contract in IMPORTS (add what the seam "
        "relies on of each; a plain `import` shows as `.import`: import the names instead):\n"
        + "\n".join(missing)
    )
    stale = sorted(f"{m}.{n}" for m, n in table - set(found))
    assert not stale, "contracts in IMPORTS for names the seam no longer imports:\n" + "\n".join(
        stale
    )


def test_the_import_scan_finds_a_planted_import(tmp_path: Path) -> None:
    package = tmp_path / "dagster_internals"
    package.mkdir()
    (package / "planted.py").write_text(
        "import dagster as dg\n"
        "from dagster import AssetKey\n"
        "from dagster_celery import celery_executor\n"
        "def later():\n"
        "    from dagster._core.events import EngineEventData, DagsterEventBatchMetadata\n"
        "    import dagster_celery.tasks\n"
    )
    assert set(seam_private_imports(package)) == {
        ("dagster._core.events", "EngineEventData"),
        ("dagster._core.events", "DagsterEventBatchMetadata"),
        ("dagster_celery.tasks", "import"),
    }


# -- what event_log.py relies on of SqliteEventLogStorage -----------------------------------
# (member, where event_log.py uses it and for what, what it relies on). Instance attributes are
# read from a storage Dagster built; methods and properties from its class.
STORAGE_MEMBERS: list[tuple[str, str, Check]] = [
    (
        "_db_lock",
        "_connect (held while a shard is opened, as Dagster's _connect does)",
        holds(
            lambda v: hasattr(v, "__enter__") and callable(getattr(v, "acquire", None)), "a lock"
        ),
    ),
    (
        "_initialized_dbs",
        "_connect (the shards already given their tables)",
        holds(lambda v: isinstance(v, set), "a set of shard names"),
    ),
    (
        "_base_dir",
        "conn_string_for_shard (the directory of the shard files)",
        holds(lambda v: isinstance(v, str) and Path(v).is_absolute(), "an absolute path"),
    ),
    ("_initdb", "_connect (a shard's tables on first use)", takes("engine")),
    ("_connect", "_connect, overridden (every shard connection opens here)", takes("shard")),
    ("conn_string_for_shard", "conn_string_for_shard, overridden; _engine", takes("shard_name")),
    (
        "path_for_shard",
        "FinAssetsSqliteEventLogStorage (Dagster's __init__ looks for the index file there)",
        takes("run_id"),
    ),
    ("has_table", "has_table, overridden with the cached engine", takes("table_name")),
    ("dispose", "dispose, extended (cached engines disposed first)", takes()),
    ("run_connection", "_store_batch (the run's database)", takes("run_id")),
    ("index_connection", "_store_batch, get_asset_check_partition_info", takes()),
    (
        "_event_to_row",
        "_store_batch (each event serialised once for both databases)",
        takes("event"),
    ),
    (
        "_store_asset_event_tags",
        "_store_batch (asset event tags, on the batch's transaction)",
        takes("conn", "events", "event_ids"),
    ),
    (
        "_store_asset_event",
        "_store_batch (an asset's latest event, on the batch's transaction)",
        takes("conn", "event", "event_id"),
    ),
    (
        "_get_latest_unpartitioned_materialization_storage_ids",
        "get_asset_check_partition_info",
        takes("keys"),
    ),
    (
        "get_latest_storage_id_by_partition",
        "get_asset_check_partition_info (each partition's latest materialization)",
        takes("asset_key", "event_type"),
    ),
    ("get_checkpointed_asset_check_state", "get_asset_check_state", takes("keys")),
    ("_instance", "get_asset_check_state (the instance's runs)", is_property),
    (
        "get_asset_check_partition_info",
        "get_asset_check_partition_info, overridden (Dagster's for given partition keys)",
        takes("keys", "after_storage_id", "partition_keys"),
    ),
    ("get_asset_check_state", "get_asset_check_state, overridden", takes("keys")),
    ("supports_asset_checks", "supports_asset_checks, overridden (cached)", is_property),
    (
        "supports_partition_subset_in_asset_materialization_planned_events",
        "supports_partition_subset_in_asset_materialization_planned_events, overridden to True "
        "(one planned event per asset for a range run)",
        is_property,
    ),
    (
        "register_instance",
        "register_instance, overridden (opens the files under the instance's directory when "
        "dagster.yaml names none: Dagster's instance calls it as it is built)",
        takes("instance"),
    ),
    ("store_event", "store_event, overridden (planned subsets expanded)", takes("event")),
    ("store_event_batch", "store_event_batch, overridden", takes("events")),
    ("config_type", "config_type, overridden (base_dir, dagster_home, or neither)", takes()),
    ("from_config_value", "from_config_value, overridden", takes("inst_data", "config_value")),
    # Mirrored, not called: event_log.py writes the same rows itself, on the batch's transaction.
    (
        "_event_insert_timestamp",
        "_insert_timestamp (mirrors it: the timestamps the check rows get)",
        takes("event"),
    ),
    (
        "_store_asset_check_evaluation_planned",
        "_record_check_planned (mirrors it: re-read it when this changes)",
        takes("event", "event_id"),
    ),
    (
        "_update_asset_check_evaluation",
        "_record_check_evaluations (mirrors it: re-read it when this changes)",
        takes("event", "event_id"),
    ),
]
# What event_log.py adds to Dagster's class, members and state: Dagster's must not define them
# too, or one of the two silently replaces the other.
ADDED = {
    "_engine",
    "_open",
    "_store_batch",
    "takes_check_evaluation_batches",
    "_engines",
    "_has_check_table",
    "_opened",
    "_pending_inst_data",
}
ABC_MACHINERY = {"_abc_impl"}  # what ABCMeta writes into every subclass


# -- what event_log_postgres.py relies on of dagster-postgres's PostgresEventLogStorage --------
# (member, where it is used and for what, what it relies on), read from the class.
PG_STORAGE_MEMBERS: list[tuple[str, str, Check]] = [
    (
        "__init__",
        "FinAssetsPostgresEventLogStorage.__init__ (the same arguments, passed on)",
        takes("postgres_url", "should_autocreate_tables", "inst_data", "token_provider"),
    ),
    ("from_config_value", "from_config_value, overridden", takes("inst_data", "config_value")),
    (
        "index_transaction",
        "_store_batch (the batch's one transaction, READ COMMITTED)",
        holds(callable, "a context manager method"),
    ),
    ("_event_to_row", "_store_batch (each event serialised once)", takes("event")),
    (
        "_store_asset_event",
        "write_index_rows (its upsert of the asset's latest event, on the batch's transaction)",
        takes("conn", "event", "event_id"),
    ),
    ("store_event", "store_event, overridden (planned subsets expanded)", takes("event")),
    (
        "store_event_batch",
        "store_event_batch, overridden; events it does not batch",
        takes("events"),
    ),
    (
        "supports_partition_subset_in_asset_materialization_planned_events",
        "overridden to True (one planned event per asset for a range run)",
        is_property,
    ),
    ("get_asset_check_partition_info", "taken from the embedded storage (same SQL)", exists),
    ("get_asset_check_state", "taken from the embedded storage (same SQL)", exists),
]


@pytest.mark.parametrize(
    ("name", "uses", "check"), PG_STORAGE_MEMBERS, ids=[name for name, *_ in PG_STORAGE_MEMBERS]
)
def test_postgres_storage_member_keeps_its_contract(name: str, uses: str, check: Check) -> None:
    from dagster_postgres import PostgresEventLogStorage

    member = raw_member(PostgresEventLogStorage, name)
    problems = ["it is gone"] if member is MISSING else check(member)
    assert not problems, relied_on(
        f"PostgresEventLogStorage.{name}", f"event_log_postgres.py:{uses}", problems
    )


def test_the_postgres_seams_overrides_are_all_contracted() -> None:
    from dagster_postgres import PostgresEventLogStorage

    from fin_assets.dagster_internals.event_log_postgres import FinAssetsPostgresEventLogStorage

    own = {n for n in vars(FinAssetsPostgresEventLogStorage) if not n.startswith("__")}
    own -= ABC_MACHINERY
    overridden = {n for n in own if hasattr(PostgresEventLogStorage, n)}
    contracted = {name for name, *_ in PG_STORAGE_MEMBERS}
    assert overridden <= contracted, sorted(overridden - contracted)
    added = own - overridden
    assert added == {"_store_batch", "takes_check_evaluation_batches"}, sorted(added)


@pytest.fixture(scope="module")
def dagster_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Dagster's own SQLite event log storage, on an empty directory."""
    storage_class = internal(STORAGE_MODULE, "SqliteEventLogStorage")
    storage = storage_class(str(tmp_path_factory.mktemp("history")))
    yield storage
    storage.dispose()


def raw_member(obj: Any, name: str) -> Any:
    """``obj.name`` without running it: a property as a property, a classmethod's function."""
    member = inspect.getattr_static(obj, name, MISSING)
    return member.__func__ if isinstance(member, classmethod | staticmethod) else member


@pytest.mark.parametrize(
    ("name", "uses", "check"), STORAGE_MEMBERS, ids=[name for name, *_ in STORAGE_MEMBERS]
)
def test_storage_member_keeps_its_contract(
    dagster_storage: Any, name: str, uses: str, check: Check
) -> None:
    member = raw_member(dagster_storage, name)
    problems = ["it is gone"] if member is MISSING else check(member)
    assert not problems, relied_on(
        f"SqliteEventLogStorage.{name}", f"event_log.py:{uses}", problems
    )


def parameters(function: Any) -> list[tuple[str, Any, bool]]:
    return [
        (p.name, p.kind, p.default is p.empty)
        for p in inspect.signature(function).parameters.values()
    ]


def test_the_seams_overrides_take_what_dagster_passes(dagster_storage: Any) -> None:
    from fin_assets.dagster_internals.event_log import FinAssetsSqliteEventLogStorage as Seam

    base = type(dagster_storage)
    own = {n for n in vars(Seam) if not n.startswith("__") or n == "__init__"} - ABC_MACHINERY
    overridden = {n for n in own if hasattr(base, n)}
    uncontracted = sorted(overridden - {name for name, *_ in STORAGE_MEMBERS} - {"__init__"})
    assert not uncontracted, f"event_log.py overrides {uncontracted} without a STORAGE_MEMBERS row"
    assert {"_connect", "store_event_batch", "get_asset_check_state"} <= overridden
    for name in sorted(overridden):
        dagster_member, seam_member = raw_member(base, name), raw_member(Seam, name)
        if isinstance(dagster_member, property | functools.cached_property):
            assert isinstance(seam_member, property), relied_on(
                f"SqliteEventLogStorage.{name}",
                f"event_log.py:{name}, which overrides it",
                ["Dagster's is a property, the seam's is not"],
            )
            continue
        assert parameters(seam_member) == parameters(dagster_member), relied_on(
            f"SqliteEventLogStorage.{name}",
            f"event_log.py:{name}, which overrides it",
            [f"Dagster's now takes {inspect.signature(dagster_member)}"],
        )


def test_what_the_seam_adds_is_not_dagsters(
    dagster_storage: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fin_assets.dagster_internals.event_log import FinAssetsSqliteEventLogStorage as Seam

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # the seam's storage sets it
    seam = Seam(str(tmp_path))
    base = type(dagster_storage)
    members = {n for n in vars(Seam) if not n.startswith("__")} - ABC_MACHINERY
    added = {n for n in members if not hasattr(base, n)}
    added |= set(vars(seam)) - set(vars(dagster_storage))  # state it sets that Dagster's does not
    seam.dispose()
    assert added >= ADDED, relied_on(
        "SqliteEventLogStorage",
        "event_log.py:FinAssetsSqliteEventLogStorage",
        [f"Dagster's now defines {sorted(ADDED - added)} too, which the seam defines as its own"],
    )
    assert added <= ADDED, (
        f"event_log.py adds {sorted(added - ADDED)} to Dagster's storage: list them in ADDED, so "
        "that a Dagster upgrade that defines them too is caught"
    )


# Columns event_log.py reads or writes directly (queries and executemany rows), by table.
COLUMNS = {
    "SqlEventLogStorageTable": (
        "_store_batch (the rows of _event_to_row, and the ids they get)",
        (
            "id",
            "run_id",
            "event",
            "dagster_event_type",
            "timestamp",
            "step_key",
            "asset_key",
            "partition",
        ),
    ),
    "AssetCheckExecutionsTable": (
        "_record_check_planned, _record_check_evaluations, get_asset_check_partition_info",
        (
            "id",
            "asset_key",
            "check_name",
            "partition",
            "run_id",
            "execution_status",
            "evaluation_event",
            "evaluation_event_timestamp",
            "evaluation_event_storage_id",
            "materialization_event_storage_id",
        ),
    ),
}


@pytest.mark.parametrize("table_name", sorted(COLUMNS))
def test_the_columns_the_seam_queries_exist(table_name: str) -> None:
    uses, columns = COLUMNS[table_name]
    table = internal("dagster._core.storage.event_log.schema", table_name, f"event_log.py:{uses}")
    problems = [f"has no column {name!r}" for name in columns if name not in table.c]
    if "id" in table.c and not table.c.id.primary_key:
        # The seam takes the latest row as the highest id, and an event's storage id from it.
        problems.append("id is no longer its primary key")
    assert not problems, relied_on(table_name, f"event_log.py:{uses}", problems)


# -- behaviour the seam relies on -----------------------------------------------------------
def keys_of(subset: Any) -> set[str]:
    return set(subset.value.get_partition_keys())


def test_finished_runs_settle_their_planned_check_partitions() -> None:
    process_run_statuses = internal(
        "dagster._core.storage.asset_check_state",
        "_process_run_statuses",
        "event_log.py:_updated_check_state",
    )
    status = internal(_CHECK_RECORD, "AssetCheckExecutionResolvedStatus")
    subset_class = internal(
        "dagster._core.asset_graph_view.serializable_entity_subset", "SerializableEntitySubset"
    )
    days = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-10")

    def subset(*keys: str) -> Any:
        partitions = days.subset_with_partition_keys(keys)
        return subset_class.from_coercible_value(CHECK_KEY, partitions, days)

    runs = {  # run id -> the partition it planned to check
        "failed": "2024-01-01",
        "succeeded": "2024-01-02",
        "canceled": "2024-01-03",
        "running": "2024-01-04",
    }
    subsets = {s: subset_class.empty(CHECK_KEY, days) for s in status}
    subsets[status.IN_PROGRESS] = subset(*runs.values())
    statuses = {
        "failed": RUN_STATUS.FAILURE,
        "succeeded": RUN_STATUS.SUCCESS,
        "canceled": RUN_STATUS.CANCELED,
        "running": RUN_STATUS.STARTED,
    }
    settled, in_progress = process_run_statuses(
        CHECK_KEY, days, subsets, {run: subset(key) for run, key in runs.items()}, statuses
    )
    found = {s.value: keys_of(settled[s]) for s in settled if keys_of(settled[s])}
    expected = {
        "EXECUTION_FAILED": {"2024-01-01"},
        "SKIPPED": {"2024-01-02", "2024-01-03"},
        "IN_PROGRESS": {"2024-01-04"},
    }
    assert (found, set(in_progress)) == (expected, {"running"}), relied_on(
        "dagster._core.storage.asset_check_state._process_run_statuses",
        "event_log.py:_updated_check_state (planned partitions of a failed run are "
        "execution-failed, of another finished run skipped, of a running run in progress)",
        [f"it now settles them as {found}, runs left {sorted(in_progress)}"],
    )


@pytest.mark.parametrize(
    "partitions",
    [
        dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00", end_offset=1),
        dg.DailyPartitionsDefinition(
            start_date="2024-01-01", end_date="2025-01-01", timezone="America/New_York"
        ),
    ],
    ids=["hourly", "daily-new-york"],
)
def test_time_window_partitions_survive_their_snapshot(
    partitions: dg.TimeWindowPartitionsDefinition,
) -> None:
    snap = internal("dagster._core.remote_representation.external_data", "TimeWindowPartitionsSnap")
    text = dg.serialize_value(snap.from_def(partitions))
    back = dg.deserialize_value(text, snap).get_partitions_definition()
    assert back == partitions, relied_on(
        "TimeWindowPartitionsSnap",
        "instance.py:partitions_to_json/partitions_from_json (tools/metrics/ rebuilds each "
        "asset's partitions from it)",
        [f"{partitions} comes back as {back}"],
    )


def test_daily_and_hourly_keys_keep_the_formats_the_seam_compares_as_strings() -> None:
    # event_log.py:_valid_keys compares keys of these formats as strings (they sort as times).
    formats = (
        dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00").fmt,
        dg.DailyPartitionsDefinition(start_date="2024-01-01").fmt,
    )
    assert formats == ("%Y-%m-%d-%H:%M", "%Y-%m-%d"), relied_on(
        "TimeWindowPartitionsDefinition.fmt",
        "event_log.py:_valid_keys (its fast path, _ORDERED_FORMATS)",
        [f"the hourly and daily formats are now {formats}"],
    )
    subset = dg.DailyPartitionsDefinition(start_date="2024-01-01").empty_subset()
    added = subset.with_partition_keys(["2024-01-02"], validate=False)
    assert list(added.get_partition_keys()) == ["2024-01-02"], relied_on(
        "TimeWindowPartitionsSubset.with_partition_keys",
        "event_log.py:_updated_check_state (keys already validated: validate=False)",
        ["it no longer adds keys with validate=False"],
    )


def sample_planned_event(partition: str = "2024-01-01") -> dg.EventLogEntry:
    planned = internal("dagster._core.events", "AssetMaterializationPlannedData")
    return dg.EventLogEntry(
        error_info=None,
        level=logging.DEBUG,
        user_message="",
        run_id="contract-run",
        timestamp=1_700_000_000.25,
        step_key=None,
        job_name="contract_job",
        dagster_event=dg.DagsterEvent(
            event_type_value=EVENT.ASSET_MATERIALIZATION_PLANNED.value,
            job_name="contract_job",
            event_specific_data=planned(dg.AssetKey("prices"), partition=partition),
        ),
    )


def test_event_rows_are_what_the_seam_inserts(dagster_storage: Any) -> None:
    event = sample_planned_event()
    row = dagster_storage._event_to_row(event)
    uses = "event_log.py:_store_batch (executemany of these rows; row['event'] is reused)"
    table = internal("dagster._core.storage.event_log.schema", "SqlEventLogStorageTable")
    assert set(row) <= {column.name for column in table.c}, relied_on(
        "SqliteEventLogStorage._event_to_row", uses, [f"its keys are now {sorted(row)}"]
    )
    assert row.get("event") == dg.serialize_value(event), relied_on(
        "SqliteEventLogStorage._event_to_row", uses, ["row['event'] is not the serialized event"]
    )
    stamp = dagster_storage._event_insert_timestamp(event)
    assert stamp == datetime.fromtimestamp(event.timestamp, UTC).replace(tzinfo=None), relied_on(
        "SqliteEventLogStorage._event_insert_timestamp",
        "event_log.py:_insert_timestamp (mirrors it: naive UTC)",
        [f"it now stores {stamp!r} for {event.timestamp}"],
    )


def test_a_planned_event_is_rebuilt_per_partition_with_replace() -> None:
    planned = internal("dagster._core.events", "AssetMaterializationPlannedData")
    event = sample_planned_event()
    dagster_event = event.get_dagster_event()
    rebuilt = event._replace(
        dagster_event=dagster_event._replace(
            event_specific_data=planned(dg.AssetKey("prices"), partition="2024-01-02")
        )
    )
    assert (rebuilt.run_id, rebuilt.get_dagster_event().partition) == (
        "contract-run",
        "2024-01-02",
    ), relied_on(
        "EventLogEntry._replace / DagsterEvent._replace",
        "event_log.py:expanded_planned (one planned event per partition of a subset)",
        ["the rebuilt event is not the same event for the other partition"],
    )


def test_shards_live_where_dagster_looks_for_them(dagster_storage: Any) -> None:
    create_db_conn_string = internal("dagster._core.storage.sqlite", "create_db_conn_string")
    found = {
        "conn_string_for_shard": dagster_storage.conn_string_for_shard("index"),
        "create_db_conn_string": create_db_conn_string(dagster_storage._base_dir, "index"),
        "path_for_shard": f"sqlite:///{dagster_storage.path_for_shard('index')}",
    }
    assert len(set(found.values())) == 1, relied_on(
        "SqliteEventLogStorage.conn_string_for_shard/path_for_shard",
        "event_log.py:conn_string_for_shard (Dagster's files: an instance switches back)",
        [f"they name different files: {found}"],
    )


def test_every_shard_connection_opens_through_connect(tmp_path: Path) -> None:
    base = internal(STORAGE_MODULE, "SqliteEventLogStorage")
    opened: list[str] = []

    class Recording(base):  # type: ignore[misc, valid-type]
        def _connect(self, shard: str) -> Any:
            opened.append(shard)
            return super()._connect(shard)

    storage = Recording(str(tmp_path))
    opened.clear()
    # One after the other: _connect holds _db_lock, which is not reentrant, while a shard is open.
    with storage.run_connection("contract-run"):
        pass
    with storage.index_connection():
        pass
    storage.dispose()
    assert opened == ["contract-run", "index"], relied_on(
        "SqliteEventLogStorage._connect",
        "event_log.py:_connect (the cached engines are used only if connections come here)",
        [f"run_connection and index_connection opened {opened} through it"],
    )


def test_an_instance_registers_itself_with_its_event_log_as_it_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # the seam's storage sets it
    seam_storage = {
        "module": "fin_assets.dagster_internals.event_log",
        "class": "FinAssetsSqliteEventLogStorage",
        "config": {},
    }
    with dg.instance_for_test(overrides={"event_log_storage": seam_storage}) as instance:
        storage = instance.event_log_storage
        found = {
            "registered": storage._instance is instance,
            "files": getattr(storage, "_base_dir", None),
        }
        expected = {
            "registered": True,
            "files": str(Path(instance.root_directory, "history", "runs").resolve()),
        }
    assert found == expected, relied_on(
        "MayHaveInstanceWeakref.register_instance / _instance / DagsterInstance.root_directory",
        "event_log.py:register_instance (with no directory configured, the files open under "
        "the instance's own when it registers), get_asset_check_state (its runs)",
        [f"a storage built by an instance now reads as {found}"],
    )


def test_a_batch_logged_from_a_check_step_reaches_store_event_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step_context_class = internal("dagster._core.execution.context.system", "StepExecutionContext")
    batch_metadata = internal("dagster._core.events", "DagsterEventBatchMetadata")
    new_batch_id = internal("dagster._core.events", "generate_event_batch_id")
    # event_log.py sets it when the storage is created: Dagster reads it to batch events.
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "100")
    step_contexts: list[Any] = []

    @dg.asset
    def prices() -> None:
        pass

    @dg.asset_check(asset=prices)
    def no_gaps(context) -> dg.AssetCheckResult:  # unannotated: Dagster cannot read postponed ones
        step_context = context.op_execution_context._step_execution_context
        step_contexts.append(step_context)
        batch = new_batch_id()
        for index in range(2):  # as check_events.py:EvaluationWriter.write logs evaluations
            dg.DagsterEvent.from_step(
                event_type=EVENT.ASSET_CHECK_EVALUATION,
                step_context=step_context,
                event_specific_data=dg.AssetCheckEvaluation(
                    asset_key=prices.key, check_name="no_gaps", passed=True
                ),
                message=f"batched {index}",
                batch_metadata=batch_metadata(batch, index == 1),
            )
        return dg.AssetCheckResult(passed=True)

    batches: list[list[str]] = []
    with dg.instance_for_test() as instance:
        storage = instance.event_log_storage
        store_batch = storage.store_event_batch

        def recording(events: Sequence[dg.EventLogEntry]) -> None:
            batches.append([e.get_dagster_event().message or "" for e in events])
            store_batch(events)

        monkeypatch.setattr(storage, "store_event_batch", recording)
        result = dg.materialize([prices, no_gaps], instance=instance)
        stored = instance.all_logs(result.run_id, of_type=EVENT.ASSET_CHECK_EVALUATION)
    uses = "check_events.py:EvaluationWriter.write"
    assert step_contexts and isinstance(step_contexts[0], step_context_class), relied_on(
        "OpExecutionContext._step_execution_context", uses, ["it is not the step's context"]
    )
    assert ["batched 0", "batched 1"] in batches, relied_on(
        "DagsterEvent.from_step(batch_metadata=) / DAGSTER_EVENT_BATCH_SIZE",
        f"{uses}, event_log.py:store_event_batch",
        [f"the evaluations did not reach store_event_batch as one batch: {batches}"],
    )
    assert sum(e.user_message.startswith("batched") for e in stored) == 2, relied_on(
        "DagsterEvent.from_step", uses, ["the batched evaluations were not stored"]
    )


def test_a_failed_blocking_check_fails_its_step_with_dagsters_error() -> None:
    error = internal("dagster._core.errors", "DagsterAssetCheckFailedError")

    @dg.asset
    def prices() -> None:
        pass

    @dg.asset_check(asset=prices, blocking=True)
    def no_gaps() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False)

    with dg.instance_for_test() as instance:
        result = dg.materialize([prices, no_gaps], instance=instance, raise_on_error=False)
    failures = [
        e.step_failure_data.error.cls_name
        for e in result.all_events
        if e.event_type is EVENT.STEP_FAILURE and e.step_failure_data.error
    ]
    assert error.__name__ in failures, relied_on(
        "dagster._core.errors.DagsterAssetCheckFailedError",
        "check_events.py:check_failed_error (batched blocking failures fail as Dagster's do)",
        [f"a failed blocking check now fails its step with {failures}"],
    )


# -- a code location as `fin-assets backfill` loads it ---------------------------------------
LOCATION_MODULE = "fin_assets_contract_location"
LOCATION_SOURCE = """\
import dagster as dg

hours = dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00", end_date="2024-01-02-00:00")


@dg.asset(partitions_def=hours, backfill_policy=dg.BackfillPolicy.single_run())
def prices() -> None:
    pass


defs = dg.Definitions(assets=[prices])
"""
PRICES = dg.AssetKey("prices")
RANGE = ["2024-01-01-01:00", "2024-01-01-02:00"]


@pytest.fixture(scope="module")
def location(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Any]]:
    """(repository origin, repository, reconstructable range job) of a one-asset module, loaded
    as backfill.py:resolve_range loads the code location."""
    directory = tmp_path_factory.mktemp("location")
    (directory / f"{LOCATION_MODULE}.py").write_text(LOCATION_SOURCE)
    origin_from_cli = internal(
        "dagster._cli.workspace.cli_target", "get_repository_python_origin_from_cli_opts"
    )
    pointer = internal("dagster_shared.cli", "PythonPointerOpts")
    recon_repository = internal(
        "dagster._utils.hosted_user_process", "recon_repository_from_origin"
    )
    recon_job = internal("dagster._utils.hosted_user_process", "recon_job_from_origin")
    job_origin = internal(_ORIGIN, "JobPythonOrigin")
    try:
        origin = origin_from_cli(
            pointer(module_name=LOCATION_MODULE, working_directory=str(directory))
        )
        repo = recon_repository(origin).get_definition()
        job = repo.get_implicit_job_def_for_assets([PRICES])
        yield origin, repo, recon_job(job_origin(job.name, repository_origin=origin))
    finally:
        sys.modules.pop(LOCATION_MODULE, None)


def test_the_cli_origin_loads_the_range_job(location: tuple[Any, Any, Any]) -> None:
    origin, repo, recon = location
    policy_type = internal("dagster._core.definitions.backfill_policy", "BackfillPolicyType")
    job = recon.get_definition()
    node = job.asset_layer.get(PRICES)
    found = {
        "module": origin.code_pointer.module,
        "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
        "partitioned": node.partitions_def is not None,
        "single run": node.backfill_policy.policy_type is policy_type.SINGLE_RUN,
        "origin": recon.get_python_origin().job_name == job.name,
    }
    assert found == {
        "module": LOCATION_MODULE,
        "assets": ["prices"],
        "partitioned": True,
        "single run": True,
        "origin": True,
    }, relied_on(
        "get_repository_python_origin_from_cli_opts / recon_repository_from_origin / "
        "recon_job_from_origin / JobPythonOrigin",
        "backfill.py:resolve_range",
        [f"a one-asset module now loads as {found}"],
    )


def test_a_range_run_is_created_and_executed_as_backfill_py_does(
    location: tuple[Any, Any, Any],
) -> None:
    _, _, recon = location
    execute_run_iterator = internal("dagster._core.execution.api", "execute_run_iterator")
    start_tag = internal("dagster._core.storage.tags", "ASSET_PARTITION_RANGE_START_TAG")
    end_tag = internal("dagster._core.storage.tags", "ASSET_PARTITION_RANGE_END_TAG")
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(
            job_def=recon.get_definition(),
            run_config={},
            tags={start_tag: RANGE[0], end_tag: RANGE[-1]},
            job_code_origin=recon.get_python_origin(),
            asset_selection=frozenset([PRICES]),
        )
        for _event in execute_run_iterator(recon, run, instance):
            pass
        finished = instance.get_run_by_id(run.run_id)
        materialized = instance.all_logs(run.run_id, of_type=EVENT.ASSET_MATERIALIZATION)
    partitions = sorted(e.get_dagster_event().partition or "" for e in materialized)
    assert finished is not None and (finished.status, partitions) == (
        RUN_STATUS.SUCCESS,
        RANGE,
    ), relied_on(
        "execute_run_iterator / DagsterInstance.create_run_for_job",
        "backfill.py:create_range_run, execute_in_process",
        [f"the range run ended {finished and finished.status} with partitions {partitions}"],
    )


def test_a_submitted_backfill_waits_for_the_daemon(location: tuple[Any, Any, Any]) -> None:
    _, repo, _ = location
    backfill_class = internal(_BACKFILL, "PartitionBackfill")
    status = internal(_BACKFILL, "BulkActionStatus")
    filters = internal(_BACKFILL, "BulkActionsFilter")
    new_id = internal("dagster._core.utils", "make_new_backfill_id")
    with dg.instance_for_test() as instance:
        backfill = backfill_class.from_asset_partitions(
            backfill_id=new_id(),
            asset_graph=repo.asset_graph,
            partition_names=RANGE,
            asset_selection=[PRICES],
            backfill_timestamp=time.time(),  # partitions exist as of it
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title="contract",
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        stored = instance.get_backfill(backfill.backfill_id)
        requested = instance.get_backfills(filters=filters(statuses=[status.REQUESTED]))
    data = stored.asset_backfill_data if stored else None
    found = {
        "status": stored and stored.status,
        "listed as requested": [b.backfill_id for b in requested] == [backfill.backfill_id],
        "partitions": data and data.target_subset.num_partitions_and_non_partitioned_assets,
        "done": data
        and data.materialized_subset.num_partitions_and_non_partitioned_assets
        + data.failed_and_downstream_subset.num_partitions_and_non_partitioned_assets,
    }
    assert found == {
        "status": status.REQUESTED,
        "listed as requested": True,
        "partitions": len(RANGE),
        "done": 0,
    }, relied_on(
        "PartitionBackfill / BulkActionStatus.REQUESTED / BulkActionsFilter",
        "backfill.py:submit_backfill, backfill_requested; instance.py:requested_backfills "
        "(tools/metrics/ counts partitions left from asset_backfill_data)",
        [f"a new backfill of {len(RANGE)} partitions now reads as {found}"],
    )


def test_a_step_message_round_trips(location: tuple[Any, Any, Any]) -> None:
    _, _, recon = location
    step_args = internal("dagster._grpc.types", "ExecuteStepArgs")
    unpack_value = internal("dagster_shared.serdes", "unpack_value")
    pack_value = internal(
        "dagster_shared.serdes", "pack_value", "celery.py (dagster-celery packs step messages)"
    )
    args = step_args(
        job_origin=recon.get_python_origin(),
        run_id="contract-run",
        step_keys_to_execute=["prices"],
        instance_ref=None,
    )
    back = unpack_value(pack_value(args), as_type=step_args)
    assert back == args, relied_on(
        "dagster_shared.serdes.unpack_value / ExecuteStepArgs",
        "celery.py:LiveRunStepTask.__call__ (reads the run and steps of a step message)",
        [f"{args} comes back as {back}"],
    )


# -- dagster-celery -------------------------------------------------------------------------
def test_the_worker_app_is_the_executors() -> None:
    executor_class = internal("dagster_celery.executor", "CeleryExecutor")
    make_app = internal("dagster_celery.make_app", "make_app")
    create_task = internal("dagster_celery.tasks", "create_task")
    broker = "pyamqp://guest@localhost:5672//"
    executor = executor_class.for_cli(
        broker=broker, backend="rpc://", config_source={"task_acks_late": True}
    )
    app = make_app(executor.app_args())

    class Marked(celery.Task):  # type: ignore[misc]
        pass

    task = create_task(app, base=Marked)
    config = {"broker": broker, "backend": "rpc://", "retries": {"enabled": {}}}
    created = celery_executor.executor_creation_fn(SimpleNamespace(executor_config=config))
    found = {
        "created": (isinstance(created, executor_class), getattr(created, "broker", None)),
        "broker": (executor.broker, app.conf.broker_url),
        "backend": app.conf.result_backend,
        "config": app.conf.task_acks_late,
        "task": (task.name, isinstance(task, Marked)),
        "arguments": list(inspect.signature(task.run).parameters),
    }
    assert found == {
        "created": (True, broker),
        "broker": (broker, broker),
        "backend": "rpc://",
        "config": True,
        "task": ("execute_plan", True),
        "arguments": ["execute_step_args_packed", "executable_dict"],
    }, relied_on(
        "dagster_celery.executor.CeleryExecutor / make_app / tasks.create_task",
        "celery.py:make_worker_app, step_task; executors.py:fin_assets_celery_executor "
        "(the executor celery_executor creates, and its .broker)",
        [f"the worker's app and task now read as {found}"],
    )
    # celery.py reads the step message's arguments from kwargs: the executor must send them so.
    submit = inspect.getsource(importlib.import_module("dagster_celery.executor"))
    assert "execute_step_args_packed=" in submit, relied_on(
        "dagster_celery.executor (its _submit_task)",
        "celery.py:LiveRunStepTask.__call__ (kwargs['execute_step_args_packed'])",
        ["the step message no longer passes execute_step_args_packed by keyword"],
    )


# -- Dagster's words runs.py reads back -----------------------------------------------------
def test_the_words_of_a_dead_run_are_still_dagsters() -> None:
    explain = internal("dagster._utils", "get_run_crash_explanation", "runs.py:_death_line")
    monitoring, code_server = (
        inspect.getsource(importlib.import_module(module))
        for module in ("dagster._daemon.monitoring.run_monitoring", "dagster._grpc.server")
    )
    said = {
        "signal": "terminated by signal 9 (SIGKILL)" in explain("Run execution process", -9),
        "exit code": "exited with code 3" in explain("Step process", 3),
        "monitoring": "Detected run worker status" in monitoring and "as failed" in monitoring,
        "max runtime": "Exceeded maximum runtime" in monitoring,
        "code server": "terminated unexpectedly with" in code_server
        and "exit code {" in code_server,
    }
    assert all(said.values()), relied_on(
        "Dagster's messages for a dead run (get_run_crash_explanation, run monitoring, the "
        "code server)",
        "runs.py:_death_line, classify_failure (how a run died, read from its events)",
        [f"no longer said: {sorted(name for name, yes in said.items() if not yes)}"],
    )


@pytest.mark.parametrize(
    ("module", "name", "check"),
    [
        ("dagster._core.storage.tags", "PARTITION_NAME_TAG", equals("dagster/partition")),
        ("dagster._core.storage.tags", "RUN_FAILURE_REASON_TAG", equals("dagster/failure_reason")),
        (
            "dagster._core.events",
            "RunFailureReason",
            enum_of(STEP_FAILURE="STEP_FAILURE", START_TIMEOUT="START_TIMEOUT"),
        ),
    ],
    ids=["PARTITION_NAME_TAG", "RUN_FAILURE_REASON_TAG", "RunFailureReason"],
)
def test_the_run_tags_runs_py_reads_keep_their_values(module: str, name: str, check: Check) -> None:
    # runs.py writes these as strings (it does not import them): their values are the contract.
    uses = "runs.py:run_partitions, classify_failure (run tags read as strings)"
    problems = check(internal(module, name, uses))
    assert not problems, relied_on(f"{module}.{name}", uses, problems)


# -- what the seam calls on Dagster objects that Dagster does not declare public -------------
# (owner, member, where the seam uses it, what it relies on); owner is "module:Class".
_INSTANCE = "dagster:DagsterInstance"
_STORAGE = "dagster._core.storage.event_log.base:EventLogStorage"
_WINDOWS = "dagster:TimeWindowPartitionsDefinition"
_SUMMARY = "dagster._core.storage.event_log.base:AssetEventSummaryRecord"
_INSTIGATION = "dagster._core.scheduler.instigation:"
_CLAIMS = "dagster._core.execution.plan.instance_concurrency_context:InstanceConcurrencyContext"
MEMBERS: list[tuple[str, str, str, Check]] = [
    (_CLAIMS, "pending_claim_steps", "waiting.py:PatientActiveExecution.idle_pause", takes()),
    (
        _CLAIMS,
        "has_pending_claims",
        "waiting.py:PatientActiveExecution._look_while_blocked",
        takes(),
    ),
    (
        "dagster:OpExecutionContext",
        "_step_execution_context",
        "check_events.py:EvaluationWriter.write (DagsterEvent.from_step's step context)",
        holds(inspect.ismemberdescriptor, "a slot of the context"),
    ),
    (
        "dagster:AssetCheckExecutionContext",
        "op_execution_context",
        "check_events.py:EvaluationWriter.write",
        is_property,
    ),
    (
        "dagster:DagsterEvent",
        "from_step",
        "check_events.py:EvaluationWriter.write",
        takes(
            kw=("event_type", "step_context", "event_specific_data", "message", "batch_metadata")
        ),
    ),
    (
        "dagster:DagsterEvent",
        "_replace",
        "event_log.py:expanded_planned (event_specific_data=)",
        holds(lambda _: "event_specific_data" in dg.DagsterEvent._fields, "a field to replace"),
    ),
    (
        "dagster:EventLogEntry",
        "_replace",
        "event_log.py:expanded_planned (dagster_event=)",
        holds(lambda _: "dagster_event" in dg.EventLogEntry._fields, "a field to replace"),
    ),
    (
        "dagster:DagsterEvent",
        "asset_materialization_planned_data",
        "event_log.py:planned_subset, expanded_planned",
        is_property,
    ),
    (
        "dagster:DagsterEvent",
        "asset_check_evaluation_data",
        "event_log.py:_check_row",
        is_property,
    ),
    (
        _INSTANCE,
        "create_run_for_job",
        "backfill.py:create_range_run",
        takes(kw=("job_def", "run_config", "tags", "job_code_origin", "asset_selection")),
    ),
    (_INSTANCE, "add_backfill", "backfill.py:submit_backfill", takes("partition_backfill")),
    (_INSTANCE, "get_backfill", "backfill.py:backfill_requested", takes("backfill_id")),
    (_INSTANCE, "get_backfills", "instance.py:requested_backfills", takes(kw=("filters",))),
    (
        _INSTANCE,
        "all_instigator_state",
        "instance.py:sensor_cursors",
        takes(kw=("instigator_type",)),
    ),
    (
        _INSTANCE,
        "report_engine_event",
        "celery.py:LiveRunStepTask.__call__, runs.py:ReapingExecutor.execute",
        takes("message", "dagster_run", "engine_event_data", kw=("step_key",)),
    ),
    (
        _INSTANCE,
        "report_run_failed",
        "runs.py:reap_dead_runs",
        takes("dagster_run", "message"),
    ),
    (_INSTANCE, "add_run_tags", "runs.py:ReapingExecutor.execute", takes("run_id", "new_tags")),
    (_INSTANCE, "get_runs", "event_log.py:get_asset_check_state", takes(kw=("filters",))),
    (_INSTANCE, "all_logs", "runs.py:classify_failure", takes("run_id", kw=("of_type",))),
    (_INSTANCE, "from_ref", "celery.py:LiveRunStepTask.__call__", takes("instance_ref")),
    (_INSTANCE, "root_directory", "event_log.py:register_instance", is_property),
    (
        _INSTIGATION + "InstigatorState",
        "instigator_name",
        "instance.py:sensor_cursors",
        is_property,
    ),
    (_INSTIGATION + "SensorInstigatorData", "cursor", "instance.py:sensor_cursors", exists),
    (
        _STORAGE,
        "get_latest_storage_id_by_partition",
        "check_events.py:target_materializations",
        takes("asset_key", "event_type", kw=("partitions",)),
    ),
    (
        _STORAGE,
        "get_asset_event_summary_records",
        "check_events.py:target_materializations (storage_id, run_id, partition, timestamp)",
        takes("event_type", kw=("asset_key", "storage_ids")),
    ),
    *[
        (_SUMMARY, field, "check_events.py:target_materializations", exists)
        for field in ("storage_id", "run_id", "partition", "timestamp")
    ],
    (
        _STORAGE,
        "get_latest_asset_check_execution_by_key",
        "instance.py:latest_check_executions",
        takes("check_keys"),
    ),
    (
        _INSTANCE,
        "global_op_concurrency_default_limit",
        "runs.py:prepare_pools",
        is_property,
    ),
    (_STORAGE, "supports_global_concurrency_limits", "runs.py:prepare_pools", is_property),
    (_STORAGE, "get_pool_limits", "runs.py:prepare_pools (PoolLimit.name)", takes()),
    (
        _STORAGE,
        "initialize_concurrency_limit_to_default",
        "runs.py:prepare_pools",
        takes("concurrency_key"),
    ),
    (
        "dagster._core.execution.plan.plan:ExecutionPlan",
        "get_steps_to_execute_in_topo_order",
        "runs.py:prepare_pools",
        takes(),
    ),
    (
        "dagster._core.execution.plan.step:ExecutionStep",
        "pool",
        "runs.py:prepare_pools",
        exists,  # a field of its NamedTuple
    ),
    (
        _STORAGE,
        "get_records_for_run",
        "runs.py:_last_heard",
        takes("run_id", kw=("ascending", "limit")),
    ),
    (_STORAGE, "get_concurrency_run_ids", "runs.py:reap_dead_runs", takes()),
    (_STORAGE, "free_concurrency_slots_for_run", "runs.py:reap_dead_runs", takes("run_id")),
    (_STORAGE, "supports_global_concurrency_limits", "runs.py:reap_dead_runs", is_property),
    (
        "dagster:RepositoryDefinition",
        "get_implicit_job_def_for_assets",
        "backfill.py:resolve_range",
        takes("asset_keys"),
    ),
    ("dagster:RepositoryDefinition", "asset_graph", "backfill.py:resolve_range", is_property),
    ("dagster:JobDefinition", "asset_layer", "backfill.py:resolve_range", is_property),
    (
        "dagster:Executor",
        "step_dependency_config",
        "runs.py:ReapingExecutor (answers for the inner executor)",
        is_property,
    ),
    (
        "dagster:Executor",
        "get_step_event_or_retry_event",
        "runs.py:ReapingExecutor (answers for the inner executor)",
        holds(callable, "a method"),
    ),
    (
        "dagster:ExecutorDefinition",
        "config_schema",
        "runs.py:fin_assets_executor, executors.py:fin_assets_celery_executor",
        is_property,
    ),
    (
        "dagster:ExecutorDefinition",
        "get_requirements",
        "runs.py:fin_assets_executor, executors.py:fin_assets_celery_executor",
        takes("executor_config"),
    ),
    (_WINDOWS, "get_first_partition_window", "event_log.py:_valid_keys", takes()),
    (_WINDOWS, "get_last_partition_window", "event_log.py:_valid_keys", takes()),
    (_WINDOWS, "get_first_partition_key", "event_log.py:_valid_keys", takes()),
    (_WINDOWS, "get_last_partition_key", "event_log.py:_valid_keys", takes()),
    (
        _WINDOWS,
        "start_time_for_partition_key",
        "event_log.py:_valid_keys",
        takes("partition_key"),
    ),
    (_WINDOWS, "is_window_start_excluded", "event_log.py:_valid_keys", takes("window_start")),
    (_WINDOWS, "exclusions", "event_log.py:_valid_keys", exists),
    (_WINDOWS, "empty_subset", "event_log.py:_updated_check_state", takes()),
    (
        "dagster:PartitionsDefinition",
        "subset_with_partition_keys",
        "event_log.py:_updated_check_state",
        takes("partition_keys"),
    ),
    (
        "dagster:PartitionsDefinition",
        "has_partition_key",
        "event_log.py:_valid_keys; backfill.py:resolve_range through lib/partitions.py",
        takes("partition_key"),
    ),
]


@pytest.mark.parametrize(
    ("owner", "member", "uses", "check"),
    MEMBERS,
    ids=[f"{owner.partition(':')[2]}.{member}" for owner, member, *_ in MEMBERS],
)
def test_member_keeps_its_contract(owner: str, member: str, uses: str, check: Check) -> None:
    module, _, class_name = owner.partition(":")
    cls = internal(module, class_name, uses)
    value = raw_member(cls, member)
    problems = ["it is gone"] if value is MISSING else check(value)
    assert not problems, relied_on(f"{class_name}.{member}", uses, problems)
