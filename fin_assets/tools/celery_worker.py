"""The Celery app of a fin-assets worker host (``FIN_EXECUTOR=celery``)::

    dagster-celery worker start -A fin_assets.tools.celery_worker -n w1 -- --concurrency=2

It is dagster-celery's own app (``dagster_celery.app``) with two differences:

- its settings are the executor's (``fin_assets.dagster_internals.executors.CELERY_CONFIG``,
  the broker from ``FIN_CELERY_BROKER``), so worker and executor cannot disagree (no ``-y``
  file);
- a step message is first checked against its run: a message the broker kept across its own
  restart, or redelivered after the run ended, belongs to a run that has finished (failed,
  say) and is dropped, not executed. Each step taken is recorded in the run's event log with
  the worker's name and pid, so "where did this step run" has an answer in the UI
  (``fin_assets/dagster_internals/celery.py``).

This module is a worker process's entry point (``celery -A``), never imported by the
definitions: building its app from the environment at import time is what it is for.
"""

from __future__ import annotations

import os

from fin_assets.dagster_internals.celery import STEP_TAKEN, make_worker_app, step_task
from fin_assets.lib.settings import Settings

__all__ = ["STEP_TAKEN", "app", "execute_plan"]

app = make_worker_app(Settings.from_env(os.environ).celery_broker)
execute_plan = step_task(app)
