"""A dead run never blocks the next: run workers record who they are, and whoever looks next
(the next run on the instance, or the alert sensor's tick) fails the runs whose worker is gone
and frees their concurrency-pool slots.

Why: a ``dagster asset materialize`` killed with SIGKILL (an OOM kill, say) leaves its run
STARTED and its slot in pool ``provider_<name>`` taken. Dagster frees the slots of *finished*
runs (the daemon's ``free_slots_after_run_end_seconds``), and run monitoring can only ask a run
launcher about runs it launched, so a CLI run killed without a daemon blocks the next run on
that pool forever, and with a daemon until ``max_runtime_seconds`` (hours).

Every run executed through ``fin_assets_executor`` (the code location's executor: schedules,
sensors, the UI, backfills and the CLI alike) tags itself with its host, process id and the
process's start time before any step claims a slot. A run is dead when it is STARTING or
STARTED on this host and that process no longer exists (the start time tells a reused pid
apart). Runs on other hosts are never judged from here.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from dagster._core.execution.context.system import PlanOrchestrationContext
    from dagster._core.execution.plan.plan import ExecutionPlan

logger = logging.getLogger("fin_assets.runs")

WORKER_TAG = "fin_assets/worker"  # "<host>:<pid>:<process start time in clock ticks>"
ALIVE_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)


def process_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent: as good as dead
        return None
    return int(fields[19])  # field 22 of proc(5), counted from field 3


def this_worker() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_ticks(pid)}"


def worker_is_alive(worker: str) -> bool | None:
    """True or False for a worker of this host; None for another host's (not ours to judge)."""
    try:
        host, pid_text, ticks_text = worker.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None  # not a tag we wrote
    if host != socket.gethostname():
        return None
    ticks = process_start_ticks(pid)
    return ticks is not None and str(ticks) == ticks_text


def reap_dead_runs(instance: dg.DagsterInstance, *, skip_run_id: str | None = None) -> list[str]:
    """Fail every run of this host whose worker is gone and free its pool slots; free the
    slots still held by runs that have finished. Returns the ids of the runs failed."""
    reaped = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=list(ALIVE_STATUSES)), limit=1000
    )
    for record in records:
        run = record.dagster_run
        worker = run.tags.get(WORKER_TAG)
        if run.run_id == skip_run_id or worker is None or worker_is_alive(worker) is not False:
            continue
        pid = worker.rsplit(":", 2)[1]
        message = (
            f"fin-assets: the worker of this run (pid {pid} on {socket.gethostname()}) is gone: "
            "killed (SIGKILL, the OOM killer) or crashed. The run is marked failed and its "
            "concurrency-pool slots are freed, so the next run does not wait for it."
        )
        instance.report_run_failed(run, message)
        reaped.append(run.run_id)
        logger.warning(
            "dead run failed: run_id=%s pid=%s host=%s job=%s",
            run.run_id,
            pid,
            socket.gethostname(),
            run.job_name,
        )
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holders = storage.get_concurrency_run_ids()
        if holders:
            finished = instance.get_run_records(
                filters=dg.RunsFilter(run_ids=list(holders), statuses=list(_finished_statuses()))
            )
            for record in finished:
                freed = storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
                if freed:
                    logger.warning(
                        "pool slots freed: run_id=%s slots=%s status=%s",
                        record.dagster_run.run_id,
                        freed,
                        record.dagster_run.status.value,
                    )
    return reaped


def _finished_statuses() -> tuple[dg.DagsterRunStatus, ...]:
    return (
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    )


class _ReapingExecutor(dg.Executor):
    """The default executor, after recording this run's worker and reaping dead runs."""

    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def get_step_event_or_retry_event(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.get_step_event_or_retry_event(*args, **kwargs)

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[dg.DagsterEvent]:
        instance = plan_context.instance
        run_id = plan_context.run_id
        # Before any step claims a pool slot: who runs this run, then who no longer runs theirs.
        instance.add_run_tags(run_id, {WORKER_TAG: this_worker()})
        for dead in reap_dead_runs(instance, skip_run_id=run_id):
            instance.report_engine_event(
                f"fin-assets: run {dead} was failed and its pool slots freed: its worker is gone",
                plan_context.dagster_run,
            )
        yield from self._inner.execute(plan_context, execution_plan)


_default = dg.multi_or_in_process_executor


@dg.executor(
    name="fin_assets_executor",
    config_schema=_default.config_schema.as_field(),  # with its default: multiprocess
    requirements=_default.get_requirements,
)
def fin_assets_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's default (multiprocess or in-process) executor, recording its worker and
    failing dead runs first (see the module docstring)."""
    return _ReapingExecutor(_default.executor_creation_fn(init_context))  # type: ignore[misc]
