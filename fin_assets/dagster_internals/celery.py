"""dagster-celery's step task and app, as a fin-assets worker runs them
(``fin_assets/tools/celery_worker.py`` is the worker's entry point): a step message is executed
only while its run is still running, and each step taken is recorded in the run's event log.

dagster-celery exposes neither its app factory nor its task as a public API; every internal name
below has its contract test (``tests/unit/test_dagster_contracts.py``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import celery
import dagster as dg
from dagster._core.events import EngineEventData
from dagster._grpc.types import ExecuteStepArgs
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task
from dagster_shared.serdes import unpack_value

from fin_assets.dagster_internals.executors import CELERY_BACKEND, CELERY_CONFIG

logger = logging.getLogger("fin_assets.tools.celery_worker")
# How the engine event of a step taken by a worker begins (tests and operators grep for it).
STEP_TAKEN = "fin-assets: step taken by Celery worker"


class LiveRunStepTask(celery.Task):  # type: ignore[misc]
    """dagster-celery's step task, executed only while its run is still running."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        step_args = unpack_value(kwargs["execute_step_args_packed"], as_type=ExecuteStepArgs)
        steps = ", ".join(step_args.step_keys_to_execute or [])
        worker, pid = self.request.hostname, os.getpid()
        with dg.DagsterInstance.from_ref(step_args.instance_ref) as instance:  # type: ignore[arg-type]
            run = instance.get_run_by_id(step_args.run_id)
            if run is None or run.is_finished:
                status = "gone" if run is None else run.status.value
                logger.warning(
                    "step dropped: run_id=%s steps=%s run_status=%s worker=%s pid=%s",
                    step_args.run_id,
                    steps,
                    status,
                    worker,
                    pid,
                )
                return []
            instance.report_engine_event(
                f"{STEP_TAKEN} {worker} (pid {pid}): {steps}",
                run,
                EngineEventData({"celery_worker": worker, "pid": str(pid)}),
                step_key=(
                    step_args.step_keys_to_execute[0] if step_args.step_keys_to_execute else None
                ),
            )
        logger.info(
            "step taken: run_id=%s steps=%s worker=%s pid=%s", run.run_id, steps, worker, pid
        )
        return super().__call__(*args, **kwargs)


def make_worker_app(broker: str) -> celery.Celery:
    """The worker's Celery app: the executor's settings and this broker."""
    app_args = CeleryExecutor.for_cli(
        broker=broker, backend=CELERY_BACKEND, config_source=dict(CELERY_CONFIG)
    ).app_args()
    return make_app(app_args)


def step_task(app: celery.Celery) -> Any:
    """dagster-celery's ``execute_plan`` task on ``app``, run by ``LiveRunStepTask``."""
    return create_task(app, base=LiveRunStepTask)
