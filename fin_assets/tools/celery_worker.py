"""The Celery app of a fin-assets worker host (``FIN_EXECUTOR=celery``)::

    dagster-celery worker start -A fin_assets.tools.celery_worker -n w1 -- --concurrency=2

It is dagster-celery's own app (``dagster_celery.app``) with two differences:

- its settings are the executor's (``fin_assets.dagster_internals.executors.CELERY_CONFIG``, the
broker from
  ``FIN_CELERY_BROKER``), so worker and executor cannot disagree (no ``-y`` file);
- a step message is first checked against its run: a message the broker kept across its own
  restart, or redelivered after the run ended, belongs to a run that has finished (failed,
  say) and is dropped, not executed. Each step taken is recorded in the run's event log with
  the worker's name and pid, so "where did this step run" has an answer in the UI.

This module is a worker process's entry point (``celery -A``), never imported by the
definitions: building its app from the environment at import time is what it is for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
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
from fin_assets.lib.settings import Settings

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
                step_key=(step_args.step_keys_to_execute or [None])[0],
            )
        logger.info(
            "step taken: run_id=%s steps=%s worker=%s pid=%s", run.run_id, steps, worker, pid
        )
        return super().__call__(*args, **kwargs)


def make_worker_app(env: Mapping[str, str]) -> celery.Celery:
    """The worker's Celery app for an environment (the executor's settings, the broker)."""
    settings = Settings.from_env(env)
    app_args = CeleryExecutor.for_cli(
        broker=settings.celery_broker, backend=CELERY_BACKEND, config_source=dict(CELERY_CONFIG)
    ).app_args()
    return make_app(app_args)


app = make_worker_app(os.environ)
execute_plan = create_task(app, base=LiveRunStepTask)
