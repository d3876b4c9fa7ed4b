"""A run's executor loop waits without CPU and looks for dead runs while a step waits for a slot
(``fin_assets/dagster_internals/waiting.py``), driven here the way Dagster's loops drive it:
``get_steps_to_execute`` once per turn until a step comes back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import dagster as dg
import pytest
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.retries import RetryMode

from fin_assets.dagster_internals import waiting
from fin_assets.dagster_internals.waiting import IDLE_TICK_S, PatientActiveExecution

POOL = "provider_test"


@dg.op(pool=POOL)
def fetch() -> None: ...


@dg.op
def other() -> None: ...


@dg.job
def fetch_job() -> None:
    fetch()


@dg.job
def two_ops_job() -> None:
    fetch()
    other()


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """When the installed ``while_blocked`` was called (monotonic seconds); Dagster's modules
    are given back their own classes after the test."""
    for module, name, _ in waiting.SUBSTITUTIONS:
        monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(waiting, "_while_blocked", None)
    monkeypatch.setattr(waiting, "LOOK_WHILE_BLOCKED_S", 0.3)
    seen: list[float] = []
    waiting.install_patient_execution(while_blocked=lambda _i, _r: seen.append(time.monotonic()))
    yield seen


def test_a_step_waiting_for_its_retry_costs_no_cpu() -> None:
    with PatientActiveExecution(create_execution_plan(fetch_job), RetryMode.ENABLED) as active:
        (step,) = active.get_steps_to_execute()
        active.mark_up_for_retry(step.key, at_time=time.time() + 1.0)
        began, cpu, turns = time.monotonic(), time.thread_time(), 0
        while not (steps := active.get_steps_to_execute()):
            turns += 1
        waited, cpu = time.monotonic() - began, time.thread_time() - cpu
        assert [s.key for s in steps] == [step.key]  # retried when due, not later
        assert 0.95 <= waited < 1.0 + IDLE_TICK_S + 0.5
        # Dagster's own ActiveExecution turns this loop hundreds of thousands of times a
        # second; this one sleeps between turns, IDLE_TICK_S at most.
        assert turns <= 1.0 / IDLE_TICK_S + 2
        assert cpu < 0.05 * waited
        active.mark_success(step.key)


def test_a_step_that_can_start_is_never_held_back() -> None:
    with PatientActiveExecution(create_execution_plan(two_ops_job), RetryMode.ENABLED) as active:
        # A caller's limit kept both back (the multiprocess loop with all its processes busy):
        # the loop must not sleep, there is work to start.
        began = time.monotonic()
        assert active.get_steps_to_execute(limit=0) == []
        assert active.idle_pause() == 0.0
        assert time.monotonic() - began < IDLE_TICK_S / 2
        first, second = active.get_steps_to_execute()
        # One step runs, one waits for its retry: the loop is reading the running step.
        active.mark_up_for_retry(second.key, at_time=time.time() + 0.3)
        assert active.idle_pause() == 0.0
        active.mark_success(first.key)
        assert 0.0 < active.idle_pause() <= 0.3  # now only time can change anything
        while not (retried := active.get_steps_to_execute()):
            pass
        assert [s.key for s in retried] == [second.key]
        active.mark_success(second.key)


def test_a_step_blocked_on_a_pool_slot_looks_for_dead_runs_while_it_waits(
    looks: list[float],
) -> None:
    with dg.instance_for_test() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        dead = str(uuid.uuid4())
        assert storage.claim_concurrency_slot(POOL, dead, "fetch").is_claimed  # held by a dead run
        run = dg.DagsterRun(job_name="fetch_job", run_id=str(uuid.uuid4()))
        context = SimpleNamespace(instance=instance, dagster_run=run, run_id=run.run_id)
        with (
            InstanceConcurrencyContext(instance, run) as claims,
            PatientActiveExecution(
                create_execution_plan(fetch_job),
                RetryMode.DISABLED,
                instance_concurrency_context=claims,
            ) as active,
        ):

            def turn() -> list[str]:
                # One turn of Dagster's multiprocess loop: steps to start, its events.
                steps = active.get_steps_to_execute()
                list(active.plan_events_iterator(context))
                return [s.key for s in steps]

            began, cpu = time.monotonic(), time.thread_time()
            while len(looks) < 3:
                assert turn() == [], "claimed a slot a dead run holds"
                assert time.monotonic() - began < 10, "no look for dead runs while blocked"
            waited, cpu = time.monotonic() - began, time.thread_time() - cpu
            gaps = [later - earlier for earlier, later in zip(looks, looks[1:], strict=False)]
            assert all(gap >= waiting.LOOK_WHILE_BLOCKED_S for gap in gaps), gaps
            assert cpu < 0.05 * waited + 0.05  # the claims themselves are SQLite queries

            storage.free_concurrency_slots_for_run(dead)  # what the reaper does
            while not (started := turn()):
                assert time.monotonic() - began < 30, "the freed slot was never claimed"
            assert started == ["fetch"]
            seen = len(looks)
            turn()
            assert len(looks) == seen, "looked for dead runs with no step blocked"
            active.mark_success("fetch")
            claims.free_step("fetch")
