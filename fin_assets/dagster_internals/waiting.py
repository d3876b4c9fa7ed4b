"""A run that waits costs no CPU and looks for dead runs; a step process dies with its run worker.

Three Dagster behaviours this module changes, in the process that orchestrates a run
(``install_patient_execution``, called by ``runs.ReapingExecutor`` before the run's loop starts):

- **Waiting spins a core.** Dagster's multiprocess executor (1.13) loops over its
  ``ActiveExecution`` without ever sleeping while no step process runs: a step waiting for its
  ``RetryRequested`` delay (a provider that has not published the window yet: 300 s, up to 6
  times) or for a concurrency-pool slot costs a whole core for as long as it waits (a lagging
  day measured 592 s of CPU in 600 s, in ``ActiveExecution._update`` under
  ``MultiprocessExecutor.execute``). The in-process executor sleeps for retries but not for a
  slot (``InstanceConcurrencyContext.interval_to_next_pending_claim_check`` is ``min(0, ...)``,
  never positive). ``PatientActiveExecution`` sleeps, when nothing runs and nothing can start,
  until the earliest retry is due, ``IDLE_TICK_S`` at most: a waiting run wakes twice a second,
  so an interrupt is seen within half a second and Dagster's claim checks (every 1-15 s) keep
  their pace. Nothing else changes: a step
  waiting for its retry still holds no pool slot (Dagster frees it on ``STEP_UP_FOR_RETRY`` and
  claims again when the retry starts), so another run of the pool goes ahead meanwhile.
- **Nothing looks again while a step is blocked.** ``runs.reap_dead_runs`` runs at the start of
  a run and skips runs heard from within ``DEAD_RUN_GRACE_S``: a re-run started right after a
  SIGKILL found the dead run too fresh to judge, and its step then waited for the dead run's
  slot for ever. While a step of the run waits for a pool slot, ``PatientActiveExecution``
  calls the installed ``while_blocked`` (the reaper) every ``LOOK_WHILE_BLOCKED_S``, so the
  dead run is failed and its slot freed seconds after its grace ends.
- **A step process outlives its run worker.** A multiprocess step is a ``multiprocessing``
  child of the run worker; killing the worker alone (``kill -9 <pid>`` of a ``dagster asset
  materialize``, an OOM kill of that one process) left the step running, fetching and
  writing for a run nobody orchestrates, 17 minutes and 180 MB in one case.
  ``ParentBoundStepCommand`` starts, in the step process, a thread that waits on
  ``multiprocessing.parent_process()``: the read end of a pipe whose write end only the parent
  holds, so it wakes (no polling) the moment the parent is gone, however it died. It then
  interrupts the step the way Dagster's own termination does (the step's ``term_event``: the
  step raises, cleans up and records its failure) and ends the process ``STEP_EXIT_AFTER_S``
  later if it is still there. Linux's ``PR_SET_PDEATHSIG`` was the other choice; it fires when
  the *thread* that started the child exits, not the process (a run executed from a worker
  thread would lose its steps under it), needs ctypes and a re-check for a parent that died
  before the call, and its signal kills without the step's cleanup.

  Celery's worker-side steps are left alone: they run inside the long-lived ``dagster-celery
  worker`` (which must not die with any run), on hosts that may not be the run's, and a step
  whose run has ended is dropped by the worker (``celery.py``) or ends on its own.

Each substitute subclasses the Dagster class it stands in for, and Dagster builds it by the
name this module replaces (``SUBSTITUTIONS``; contract tests in
``tests/unit/test_dagster_contracts.py``).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg
from dagster._core.execution.plan import active as dagster_active
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.executor import multiprocess as dagster_multiprocess
from dagster._core.executor.multiprocess import MultiprocessExecutorChildProcessCommand

logger = logging.getLogger("fin_assets.dagster_internals.waiting")

# Longest sleep of a loop with nothing to do: how late an interrupt is seen.
IDLE_TICK_S = 0.5
# How often a run with a step blocked on a pool slot looks for dead runs holding slots.
LOOK_WHILE_BLOCKED_S = 2.0
# How long an interrupted step whose run worker died may take to end before it is ended.
STEP_EXIT_AFTER_S = 10.0
# The exit status of a step process ended that way (EX_SOFTWARE: not a signal, not a step error).
ORPHAN_EXIT_CODE = 70

WhileBlocked = Callable[[dg.DagsterInstance, dg.DagsterRun], None]
_while_blocked: WhileBlocked | None = None


class PatientActiveExecution(ActiveExecution):
    """Dagster's ``ActiveExecution`` for a run's executor loop, which sleeps while there is
    nothing to do and looks for dead runs while a step waits for a pool slot (module
    docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_look = 0.0  # time.monotonic() of the next look for dead runs

    def get_steps_to_execute(self, limit: int | None = None) -> Sequence[Any]:
        # Every executor loop (multiprocess, in-process, Celery) asks this once per turn.
        steps = super().get_steps_to_execute(limit)
        if not steps:
            pause = self.idle_pause()
            if pause > 0:
                time.sleep(pause)
        return steps

    def idle_pause(self) -> float:
        """How long the loop may sleep now: until the earliest retry is due (``IDLE_TICK_S`` at
        most) when no step runs, none can start and only time can change that; else 0."""
        if self.has_in_flight_steps or self._pending_skip or self._pending_abandon:
            return 0.0
        claims = self._instance_concurrency_context
        blocked = set(claims.pending_claim_steps()) if claims is not None else set()
        if not set(self._executable) <= blocked:
            return 0.0  # a step can start (held back by the caller's limit this turn)
        if not self._waiting_to_retry and not blocked:
            return 0.0  # nothing to wait for: the plan is done or stuck, Dagster decides
        due = min(self._waiting_to_retry.values(), default=math.inf)
        return max(0.0, min(IDLE_TICK_S, due - time.time()))

    # The multiprocess and in-process loops call this one every turn, Celery's the next one.
    def concurrency_event_iterator(self, plan_context: Any) -> Iterator[dg.DagsterEvent]:
        yield from super().concurrency_event_iterator(plan_context)
        self._look_while_blocked(plan_context)

    def plan_events_iterator(self, job_context: Any) -> Iterator[dg.DagsterEvent]:
        yield from super().plan_events_iterator(job_context)
        self._look_while_blocked(job_context)

    def _look_while_blocked(self, context: Any) -> None:
        claims = self._instance_concurrency_context
        if _while_blocked is None or claims is None or not claims.has_pending_claims():
            return
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + LOOK_WHILE_BLOCKED_S
        try:
            _while_blocked(context.instance, context.dagster_run)
        except Exception:
            # A waiting run must not fail because one look failed (a locked SQLite file, a
            # restarting PostgreSQL): the next look is LOOK_WHILE_BLOCKED_S away.
            logger.warning("looking for dead runs failed: run_id=%s", context.run_id, exc_info=True)


class ParentBoundStepCommand(MultiprocessExecutorChildProcessCommand):
    """Dagster's multiprocess step command, whose process ends when its run worker is gone."""

    def execute(self) -> Iterator[Any]:
        exit_with_parent(self.term_event, step_key=self.step_key)
        yield from super().execute()


def exit_with_parent(
    term_event: Any, *, step_key: str, exit_after_s: float = STEP_EXIT_AFTER_S
) -> threading.Thread | None:
    """In a ``multiprocessing`` child: a daemon thread that, once the parent process is gone,
    sets ``term_event`` (Dagster's termination of the step) and ends this process
    ``exit_after_s`` later if it is still running. None (and no thread) outside such a child."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return None

    def watch() -> None:
        parent.join()  # returns when the parent's end of the pipe closes: it has exited
        logger.warning(
            "run worker gone: pid=%s step=%s step_pid=%s: interrupting the step, exiting in "
            "%.0f s at most",
            parent.pid,
            step_key,
            os.getpid(),
            exit_after_s,
        )
        term_event.set()
        time.sleep(exit_after_s)
        os._exit(ORPHAN_EXIT_CODE)

    thread = threading.Thread(target=watch, name="fin-assets-exit-with-run-worker", daemon=True)
    thread.start()
    return thread


# (Dagster module, the name it builds by, what this module puts there)
SUBSTITUTIONS: tuple[tuple[Any, str, type], ...] = (
    # MultiprocessExecutor.execute and execute_step_out_of_process: module globals, looked up
    # at each call.
    (dagster_multiprocess, "ActiveExecution", PatientActiveExecution),
    (dagster_multiprocess, "MultiprocessExecutorChildProcessCommand", ParentBoundStepCommand),
    # ExecutionPlan.start (the in-process and Celery loops) imports it from here at each call.
    (dagster_active, "ActiveExecution", PatientActiveExecution),
)


def install_patient_execution(*, while_blocked: WhileBlocked) -> None:
    """Make this process's executor loops use ``PatientActiveExecution`` and its multiprocess
    steps ``ParentBoundStepCommand`` (``SUBSTITUTIONS``); ``while_blocked(instance, run)`` is
    what a run with a step blocked on a pool slot calls every ``LOOK_WHILE_BLOCKED_S``.
    Idempotent."""
    global _while_blocked
    _while_blocked = while_blocked
    for module, name, ours in SUBSTITUTIONS:
        setattr(module, name, ours)
