"""The fin-assets code location: every source's definitions, and what the sources share.

The sources are those ``fin_assets/lib/catalog.py`` says are in force: the ones declared in
YAML (``fin_assets/defs/<name>/defs.yaml``, one ``MarketDataSource`` component each: the
default deployment has two, ``us_equities`` on XNYS and ``crypto`` 24/7), or, when
``FIN_PROVIDER``, ``FIN_SYMBOLS`` or ``FIN_API_BASE_URL`` is set, the one source those
variables describe, under today's names (``raw/bars`` ...). What
every source shares is bound here once: the snapshot store, the warehouse, alerting, the
automation and alert sensors, and the executor.

Configuration is read by ``fin_assets/lib/settings.py`` when Dagster loads the definitions
(``@dg.definitions``), not at import time. Secrets are bound through ``dg.EnvVar``, so their
values never appear in run config or the UI.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence

import dagster as dg

from fin_assets.lib.alerts import build_health_alert_sensor
from fin_assets.lib.automation import build_automation_sensor
from fin_assets.lib.catalog import sources_in_force
from fin_assets.lib.executors import build_executor
from fin_assets.lib.pipeline import build_source_definitions
from fin_assets.lib.resources import AlertingResource, SnapshotStoreResource, WarehouseResource
from fin_assets.lib.settings import WEBHOOK_VARIABLE, Settings
from fin_assets.lib.sources import Source
from resources.endpoints import Endpoint
from resources.errors import InvalidInputError
from resources.secrets import register, register_url_password


def shared_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        sensors=[
            build_automation_sensor(minimum_interval_seconds=settings.automation_interval_s),
            build_health_alert_sensor(minimum_interval_seconds=settings.sensor_interval_s),
        ],
        resources={
            "snapshots": SnapshotStoreResource(root=str(settings.data_dir)),
            "warehouse": WarehouseResource(url=settings.warehouse_url),
            "alerting": AlertingResource(
                # EnvVar: a Slack webhook URL is a secret (anyone holding it can post).
                webhook_url=dg.EnvVar(WEBHOOK_VARIABLE) if settings.has_webhook else None,
                payload_format=settings.alert_format,
            ),
        },
        # FIN_EXECUTOR: Dagster's default executor or Celery's, each recording the run's
        # orchestrating process and failing dead runs first
        # (fin_assets/dagster_internals/executors.py).
        executor=build_executor(settings),
    )


def build_definitions(env: Mapping[str, str]) -> dg.Definitions:
    """The definitions for an environment mapping; a bad setting fails here, at load time."""
    settings = Settings.from_env(env)
    return definitions_of(sources_in_force(env, settings), settings, env)


def definitions_of(
    sources: Sequence[Source], settings: Settings, env: Mapping[str, str]
) -> dg.Definitions:
    """The definitions of ``sources`` (as ``sources_in_force`` answered) with what they share."""
    register_secrets(sources, settings, env)
    return dg.Definitions.merge(
        shared_definitions(settings),
        *(build_source_definitions(source, settings, env) for source in sources),
    )


def register_secrets(sources: Sequence[Source], settings: Settings, env: Mapping[str, str]) -> None:
    """Every secret this code location can hold, known to ``resources.secrets`` in every process
    that loads it: the alert sensor and the metrics exporter never build an API client, yet
    they pass on text that a step wrote (resources/secrets.py)."""
    for source in sources:
        register(env.get(source.api_key_env) if source.api_key_env else None)
        if source.archive is not None:  # the S3 key pair of its bulk archive
            for name in (source.archive.access_key_env, source.archive.secret_key_env):
                register(env.get(name) if name else None)
        with contextlib.suppress(InvalidInputError):  # refused, with its name, when it is used
            Endpoint.parse(source.base_url)  # registers a password in the URL
    register(env.get(WEBHOOK_VARIABLE) if settings.has_webhook else None)
    for url in (settings.warehouse_url, settings.quota_store, settings.celery_broker):
        register_url_password(url)  # PostgreSQL and the Celery broker


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(os.environ)
