"""The executor every job of the code location runs on, chosen by ``FIN_EXECUTOR``: Dagster's
default one (multiprocess, or configured in_process) or dagster-celery's, each wrapped by the
run reaper (built in ``fin_assets/dagster_internals/executors.py``, which says what each
costs and why each Celery setting)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from fin_assets.dagster_internals.executors import (
    CELERY_BACKEND,
    CELERY_CONFIG,
    fin_assets_celery_executor,
)
from fin_assets.dagster_internals.runs import fin_assets_executor
from fin_assets.lib.settings import Settings

BROKER_VARIABLE = "FIN_CELERY_BROKER"


def celery_executor_config(settings: Settings) -> dict[str, Any]:
    """The Celery executor's config: the broker bound as an env var when one is set (a
    password in it then never shows in the UI's job config), else RabbitMQ's loopback default."""
    broker: Any = {"env": BROKER_VARIABLE} if settings.celery_broker_set else settings.celery_broker
    return {"broker": broker, "backend": CELERY_BACKEND, "config_source": dict(CELERY_CONFIG)}


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor every job of the code location runs on (``FIN_EXECUTOR``)."""
    if settings.executor == "celery":
        return fin_assets_celery_executor().configured(
            celery_executor_config(settings), name="fin_assets_celery_executor"
        )
    if settings.executor == "in_process":
        return fin_assets_executor.configured(
            {"in_process": {}}, name="fin_assets_in_process_executor"
        )
    return fin_assets_executor
