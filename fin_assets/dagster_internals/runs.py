"""A dead run never blocks the next: run workers record who they are, and whoever looks next
(the next run on the instance as it starts and, while one of its steps waits for a pool slot,
every few seconds; or the alert sensor's tick) fails the runs whose worker is gone and frees
their concurrency-pool slots.

Why: a ``dagster asset materialize`` killed with SIGKILL (an OOM kill, say) leaves its run
STARTED and its slot in pool ``provider_<name>`` taken. Dagster frees the slots of *finished*
runs (the daemon's ``free_slots_after_run_end_seconds``), and run monitoring can only ask a run
launcher about runs it launched, so a CLI run killed without a daemon blocks the next run on
that pool forever, and with a daemon until ``max_runtime_seconds`` (hours).

Every run executed through ``fin_assets_executor`` (the code location's executor: schedules,
sensors, the UI, backfills and the CLI alike) tags itself with its host, process id and the
process's start time before any step claims a slot. A run is dead when it is STARTING or
STARTED on this host and that process no longer exists (the start time tells a reused pid
apart). Runs on other hosts are never judged from here. A dead worker's run is failed once
nothing has been heard from it for ``DEAD_RUN_GRACE_S``: a run launched through a code server
is failed by that server within a second, naming the signal that killed the worker, and that
is worth waiting for. A run started at once after a kill finds the dead run within its grace;
its step waiting for the dead run's slot looks again (``waiting.py``) and goes ahead seconds
after the grace ends.

Why a run died (``run_death``) is read back from what was recorded: the signal Dagster reports
for a worker or step process (``terminated by signal 9 (SIGKILL)``), run monitoring's "worker
died", or this module's own failure; and, from the cgroup the worker recorded when it started
(``CGROUP_TAG``), the memory limit and whether the kernel's OOM killer struck during the run.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from fin_assets.dagster_internals.waiting import install_patient_execution
from resources.metrics.cgroup import MemoryCgroup, describe_bytes, memory_cgroup_of

if TYPE_CHECKING:
    from dagster._core.execution.context.system import PlanOrchestrationContext
    from dagster._core.execution.plan.plan import ExecutionPlan

logger = logging.getLogger("fin_assets.dagster_internals.runs")

WORKER_TAG = "fin_assets/worker"  # "<host>:<pid>:<process start time in clock ticks>"
# "<v1|v2>:<cgroup path>:<oom_kill count when the run started>" (when the cgroup is readable)
CGROUP_TAG = "fin_assets/cgroup"
ALIVE_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)
# How this module's failure of a dead run begins (``run_death`` recognises it).
DEAD_WORKER = "fin-assets: the worker of this run"
# Seconds of silence from a run whose worker is gone before it is failed here: its code server
# (when it has one) fails it first, within a second, and names the signal.
DEAD_RUN_GRACE_S = 10.0


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


def this_cgroup() -> str | None:
    """This process's memory cgroup and its OOM kills so far, for ``CGROUP_TAG``."""
    cgroup = memory_cgroup_of()
    if cgroup is None:
        return None
    kills = cgroup.oom_kills()
    return f"{cgroup.encode()}:{'' if kills is None else kills}"


def _last_heard(instance: dg.DagsterInstance, run_id: str) -> float:
    records = instance.event_log_storage.get_records_for_run(run_id, ascending=False, limit=1)
    return max([0.0, *(r.event_log_entry.timestamp for r in records.records)])


def _inherited(instance: dg.DagsterInstance, run: dg.DagsterRun, worker: str) -> bool:
    """Whether ``run``'s worker tag is its parent's: Dagster's automatic retry copies the
    parent run's tags (``use_parent_run_tags``), the dead worker's included, and the retry's
    own worker writes its tag only once it starts. On a loaded host a retry waited longer than
    the grace period to start, and was failed as dead before it ran."""
    parent_id = run.tags.get("dagster/parent_run_id")
    if not parent_id:
        return False
    parent = instance.get_run_by_id(parent_id)
    return parent is not None and parent.tags.get(WORKER_TAG) == worker


def reap_dead_runs(
    instance: dg.DagsterInstance,
    *,
    skip_run_id: str | None = None,
    grace_s: float = DEAD_RUN_GRACE_S,
) -> list[str]:
    """Fail every run of this host whose worker is gone (and silent for ``grace_s``) and free
    its pool slots; free the slots still held by runs that have finished. Returns the ids of
    the runs failed."""
    reaped = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=list(ALIVE_STATUSES)), limit=1000
    )
    for record in records:
        run = record.dagster_run
        worker = run.tags.get(WORKER_TAG)
        if run.run_id == skip_run_id or worker is None or worker_is_alive(worker) is not False:
            continue
        if _inherited(instance, run, worker):
            continue  # a retry not yet started: the dead worker is the retried run's
        if time.time() - _last_heard(instance, run.run_id) < grace_s:
            continue  # its code server may still say how it died: ask again next time
        pid = worker.rsplit(":", 2)[1]
        oom = _oom_evidence(run)
        message = (
            f"{DEAD_WORKER} (pid {pid} on {socket.gethostname()}) is gone: "
            + (oom or "killed (SIGKILL, the OOM killer) or crashed")
            + ". The run is marked failed and its concurrency-pool slots are freed, so the "
            "next run does not wait for it."
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


# -- why a run died ------------------------------------------------------------------------------
# What Dagster records when a process of a run dies: a code server about its run worker ("Run
# execution process for <id> was terminated by signal 9 (SIGKILL)."), the multiprocess executor
# about a step process ("... child process for step raw__bars was terminated by signal 9"), a
# code server that lost its subprocess ("... terminated unexpectedly with exit code -9"), and
# run monitoring ("Detected run worker status ... Marking run <id> as failed").
_SIGNALLED = re.compile(r"terminated by signal (\d+) \((SIG[A-Z0-9]+)\)")
_EXIT_CODE = re.compile(r"(?:exited with code|with exit code) (-?\d+)")
_WORKER_DIED = "Detected run worker status"


@dataclass(frozen=True)
class RunDeath:
    """A run whose worker (or a step process) was killed or died, and what is known of how."""

    signal: str | None  # "SIGKILL (9)"; None: nothing recorded the exit status
    evidence: str  # the recorded line that says so
    memory_max: int | None = None  # bytes, the worker's cgroup limit (where readable)
    oom_kills: int | None = None  # the cgroup's oom_kill count now ...
    oom_kills_at_start: int | None = None  # ... and when the run started
    cgroup: str | None = None

    @property
    def oom_killed(self) -> bool:
        return (
            self.oom_kills is not None
            and self.oom_kills_at_start is not None
            and self.oom_kills > self.oom_kills_at_start
        )

    def describe(self) -> str:
        """One sentence: the signal, the memory limit, the OOM kills."""
        parts = [f"signal {self.signal}" if self.signal else "signal unknown (no exit status)"]
        if self.memory_max is not None:
            parts.append(f"memory limit {describe_bytes(self.memory_max)}")
        if self.oom_kills is not None:
            parts.append(
                f"cgroup oom_kill {self.oom_kills}"
                + (
                    f" ({self.oom_kills_at_start} when the run started: the kernel's OOM killer)"
                    if self.oom_killed
                    else ""
                )
            )
        return ", ".join(parts)


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return f"signal {number}"


def _cgroup_facts(run: dg.DagsterRun) -> tuple[MemoryCgroup, int | None] | None:
    """The worker's cgroup and its OOM kills at the start, when the worker ran on this host."""
    tag, worker = run.tags.get(CGROUP_TAG), run.tags.get(WORKER_TAG)
    if not tag or not worker or worker.rsplit(":", 2)[0] != socket.gethostname():
        return None
    encoded, _, kills = tag.rpartition(":")
    cgroup = MemoryCgroup.decode(encoded)
    if cgroup is None:
        return None
    return cgroup, int(kills) if kills.isdigit() else None


def _oom_evidence(run: dg.DagsterRun) -> str | None:
    facts = _cgroup_facts(run)
    if facts is None:
        return None
    cgroup, at_start = facts
    now = cgroup.oom_kills()
    if now is None or at_start is None or now <= at_start:
        return None
    limit = cgroup.memory_max()
    return (
        f"killed by the kernel's OOM killer (SIGKILL): oom_kill went from {at_start} to {now} "
        f"in cgroup {cgroup.path}"
        + (f" (memory limit {describe_bytes(limit)})" if limit is not None else "")
    )


def _death_line(message: str) -> tuple[bool, str | None]:
    """(whether the line says a process of the run died, the signal it names)."""
    signalled, exited = _SIGNALLED.search(message), _EXIT_CODE.search(message)
    if signalled:
        return True, _signal_name(int(signalled.group(1)))
    if exited:
        code = int(exited.group(1))
        return True, _signal_name(-code) if code < 0 else None
    died = message.startswith(DEAD_WORKER) or (_WORKER_DIED in message and "as failed" in message)
    return died, None


@dataclass(frozen=True)
class RunFailure:
    """Why a failed run failed: a bounded ``reason`` (a metric label) and, when a process of
    the run was killed or died, how."""

    reason: str  # killed, step_failure, timeout, start_timeout, other
    death: RunDeath | None
    message: str  # the run failure's first line


def classify_failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunFailure:
    """Read the run's engine events and failure: killed (with the signal, the memory limit and
    the OOM kills where known), or failed otherwise."""
    signal_text, evidence, failed = None, None, ""
    for entry in instance.all_logs(
        run.run_id, of_type={dg.DagsterEventType.ENGINE_EVENT, dg.DagsterEventType.RUN_FAILURE}
    ):
        message = (entry.dagster_event.message if entry.dagster_event else None) or ""
        if entry.dagster_event_type == dg.DagsterEventType.RUN_FAILURE:
            failed = message.splitlines()[0] if message else "run failed"
        died, named = _death_line(message)
        if died and signal_text is None and (evidence is None or named):
            # The sentence that says so (Dagster goes on about memory whatever the cause).
            evidence, signal_text = message.splitlines()[0].split(". ")[0].rstrip(".") + ".", named
    if evidence is None:
        tag = run.tags.get("dagster/failure_reason", "")
        if "Exceeded maximum runtime" in failed:
            reason = "timeout"
        else:
            reason = {"STEP_FAILURE": "step_failure", "START_TIMEOUT": "start_timeout"}.get(
                tag, "other"
            )
        return RunFailure(reason, None, failed)
    death = RunDeath(signal_text, evidence)
    facts = _cgroup_facts(run)
    if facts is not None:
        cgroup, at_start = facts
        death = RunDeath(
            signal_text,
            evidence,
            memory_max=cgroup.memory_max(),
            oom_kills=cgroup.oom_kills(),
            oom_kills_at_start=at_start,
            cgroup=cgroup.path,
        )
        if death.signal is None and death.oom_killed:
            # No exit status, but the kernel counted an OOM kill in its cgroup during the run.
            death = RunDeath(
                _signal_name(signal.SIGKILL),
                evidence,
                death.memory_max,
                death.oom_kills,
                death.oom_kills_at_start,
                death.cgroup,
            )
    return RunFailure("killed", death, failed)


def run_partitions(run: dg.DagsterRun) -> tuple[str, ...]:
    """The run's partition, or the first and last of its range; () when unpartitioned."""
    if "dagster/partition" in run.tags:
        return (run.tags["dagster/partition"],)
    first = run.tags.get("dagster/asset_partition_range_start")
    last = run.tags.get("dagster/asset_partition_range_end")
    return (first, last) if first and last else ()


class ReapingExecutor(dg.Executor):
    """An executor (the default one, or Celery's: ``fin_assets/dagster_internals/executors.py``),
    after recording this run's worker and reaping dead runs, with a patient loop
    (``waiting.py``: no CPU while it waits, dead runs reaped while a step waits for a slot,
    step processes that end with the worker). The worker recorded is the process that
    orchestrates the run, wherever its steps execute: with Celery, the steps run on worker
    hosts, and a step whose host dies is redelivered by the broker, not judged here."""

    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        # What an inner executor's own loop reads from ``plan_context.executor`` (Celery's
        # ``app_args``): the run's executor is this wrapper, so it answers for the inner one.
        if name == "_inner":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

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
        # The loop that follows sleeps while it waits, looks for dead runs again while a step
        # waits for a pool slot, and its step processes end with this one (waiting.py).
        install_patient_execution(while_blocked=reap_for)
        # Before any step claims a pool slot: who runs this run (and in which cgroup, with how
        # many OOM kills so far), then who no longer runs theirs.
        cgroup = this_cgroup()
        instance.add_run_tags(
            run_id, {WORKER_TAG: this_worker(), **({CGROUP_TAG: cgroup} if cgroup else {})}
        )
        reap_for(instance, plan_context.dagster_run)
        prepare_pools(
            instance, {s.pool for s in execution_plan.get_steps_to_execute_in_topo_order()}
        )
        yield from self._inner.execute(plan_context, execution_plan)


def prepare_pools(instance: dg.DagsterInstance, pools: Iterable[str | None]) -> None:
    """Give every pool of ``pools`` (those this run's steps use) its default limit before any
    step claims a slot.

    A step's first claim initializes its pool's limit itself; two runs starting at the same
    moment on the PostgreSQL instance both insert the row, and the second's insert aborts its
    transaction, so Dagster's own fallback (an update in the same transaction) fails too and
    the run with it (``UniqueViolation`` then ``InFailedSqlTransaction``: seen with both
    sources' backfills started at once). Here the loser's error is taken for what it is, the
    row the other run has just written."""
    storage = instance.event_log_storage
    default = instance.global_op_concurrency_default_limit
    if default is None or not storage.supports_global_concurrency_limits:
        return
    known = {limit.name for limit in storage.get_pool_limits()}
    for pool in sorted(p for p in pools if p and p not in known):
        try:
            storage.initialize_concurrency_limit_to_default(pool)
        except Exception:
            if pool not in {limit.name for limit in storage.get_pool_limits()}:
                raise  # not the race: a real storage error


def reap_for(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """``reap_dead_runs`` on behalf of ``run`` (never judging it), each run it failed said in
    ``run``'s own log."""
    for dead in reap_dead_runs(instance, skip_run_id=run.run_id):
        instance.report_engine_event(
            f"fin-assets: run {dead} was failed and its pool slots freed: its worker is gone",
            run,
        )


_default = dg.multi_or_in_process_executor


@dg.executor(
    name="fin_assets_executor",
    config_schema=_default.config_schema.as_field(),  # with its default: multiprocess
    requirements=_default.get_requirements,
)
def fin_assets_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's default (multiprocess or in-process) executor, recording its worker and
    failing dead runs first (see the module docstring)."""
    return ReapingExecutor(_default.executor_creation_fn(init_context))  # type: ignore[misc]
