"""The code location's executor: where a run's steps execute, chosen by ``FIN_EXECUTOR``.

- ``multiprocess`` (the default): Dagster's default executor, one process per step on the
  run's host (``fin_assets.dagster_internals.runs.fin_assets_executor``).
- ``in_process``: the same executor configured ``in_process``: every step in the run's own
  process. A run of one source's hour then starts one Python process instead of one per step
  (each costs about 2 s of CPU to import Dagster and the definitions), at the price of the
  isolation: a step that runs out of memory takes its run's process with it, and a run's
  steps never run side by side. For a small deployment on a small host.
- ``celery``: dagster-celery's executor. The run's process (launched by the daemon, or a
  ``dagster asset materialize``) only orchestrates; each step is a message on the broker
  (``FIN_CELERY_BROKER``, RabbitMQ), executed by whichever ``dagster-celery worker`` takes it,
  on any host that has the code, the env and ``FIN_DATA_DIR`` (a shared volume: raw snapshots
  are read by the next step). Results come back over the broker too (``rpc://``): no other
  service. ``deploy/celery/README.md`` shows a deployment.

Each is wrapped by ``fin_assets.dagster_internals.runs.ReapingExecutor``: the run's orchestrating
process is
recorded and judged by pid on its own host as before. A Celery worker host is never judged by
pid: what saves a step whose host dies is the broker, configured here (``CELERY_CONFIG``):

- ``task_acks_late``: a step's message is acknowledged when the step ends, so a worker killed
  mid-step (its host lost, SIGKILLed) leaves it unacknowledged, and RabbitMQ hands it to
  another worker when the dead worker's connection drops: the run resumes there. The step
  runs again from its start; every write is idempotent, so nothing is doubled.
- ``task_reject_on_worker_lost`` stays off: a step *process* killed under a live worker (an
  OOM kill of that one step) fails the step and so the run, instead of being redelivered
  forever to die the same way.
- One step per worker process at a time (prefetch 1), so a waiting step is free for another
  host to take.

A broker that cannot be reached fails the run with ``BrokerUnreachableError`` naming the
broker (password redacted) instead of an AMQP socket error. Every partition write is one
transaction or one ``os.replace``: a run that stops there leaves each partition whole or
untouched. A step message the broker delivers after its run has ended (it kept it across a
restart) is dropped by the worker (``fin_assets/tools/celery_worker.py``), never executed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg

from fin_assets.dagster_internals.runs import ReapingExecutor
from resources.errors import BrokerUnreachableError
from resources.storage.pg import redact_url

if TYPE_CHECKING:
    from dagster._core.execution.context.system import PlanOrchestrationContext
    from dagster._core.execution.plan.plan import ExecutionPlan

# Step results travel back over the broker itself: no result store to run and secure.
CELERY_BACKEND = "rpc://"
# The Celery settings both sides use: the executor (publishing) and the workers
# (``fin_assets/tools/celery_worker.py``), so they cannot drift apart. Why each: the module
# docstring.
CELERY_CONFIG: Mapping[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": False,
    "worker_prefetch_multiplier": 1,
    # A worker started before the broker (a host booting) waits for it instead of exiting.
    "broker_connection_retry_on_startup": True,
    # Publishing a step gives up after ~1 s without a broker: the run fails, naming it.
    "broker_transport_options": {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
    "broker_connection_timeout": 4,
}


def _broker_errors() -> tuple[type[BaseException], ...]:
    from amqp.exceptions import ConnectionError as AmqpConnectionError
    from kombu.exceptions import OperationalError

    return (OperationalError, AmqpConnectionError, ConnectionError, TimeoutError)


class CeleryStepsExecutor(dg.Executor):
    """dagster-celery's executor, with a broker outage said in words (module docstring)."""

    def __init__(self, inner: dg.Executor, broker: str) -> None:
        self._inner = inner
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        # Celery's loop reads ``app_args`` from the run's executor, which is this wrapper.
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    @property
    def retries(self) -> Any:
        return self._inner.retries

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[dg.DagsterEvent]:
        try:
            yield from self._inner.execute(plan_context, execution_plan)
        except _broker_errors() as exc:
            raise BrokerUnreachableError(
                f"the Celery broker {redact_url(self._broker)} cannot be reached "
                f"({type(exc).__name__}: {exc}): run {plan_context.run_id} stops here. Steps "
                "that finished kept their writes, each partition whole; no partition is half "
                "written. Start the broker (RabbitMQ: `rabbitmqctl start_app`, or "
                "`rabbitmq-server -detached`) and run the same partitions again.",
                broker=redact_url(self._broker),
            ) from exc


def fin_assets_celery_executor() -> dg.ExecutorDefinition:
    """dagster-celery's executor: each step a task on the broker for any worker host; the run's
    own process records itself and fails dead runs first
    (``fin_assets/dagster_internals/runs.py``). Built on
    demand: importing Celery costs every definitions load 0.1 s, and only this executor needs
    it."""
    from dagster_celery import celery_executor
    from dagster_celery.executor import CeleryExecutor

    @dg.executor(
        name="fin_assets_celery_executor",
        config_schema=celery_executor.config_schema.as_field(),
        requirements=celery_executor.get_requirements,
    )
    def executor(init_context: dg.InitExecutorContext) -> dg.Executor:
        create = celery_executor.executor_creation_fn
        assert create is not None  # @executor always sets it
        inner = create(init_context)
        # Typed as any Executor; dagster-celery's function returns its CeleryExecutor.
        assert isinstance(inner, CeleryExecutor)
        return ReapingExecutor(CeleryStepsExecutor(inner, inner.broker))

    return executor
