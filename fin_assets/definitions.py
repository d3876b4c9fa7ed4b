"""The fin-assets code location: every asset, check, job, schedule, sensor and resource, listed
explicitly, and resources bound from ``Settings``.

Configuration is read by ``fin_assets/settings.py`` when Dagster loads the definitions
(``@dg.definitions``), not at import time. Secrets are bound through ``dg.EnvVar``, so their
values never appear in run config or the UI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from fin_assets.alerts import build_health_alert_sensor
from fin_assets.assets.bars import core_bars
from fin_assets.assets.daily import core_daily_bars, core_daily_returns
from fin_assets.assets.raw import build_raw_bars
from fin_assets.automation import build_automation_sensor, daily_automation_condition
from fin_assets.checks import build_quality_checks
from fin_assets.freshness import build_partition_freshness_checks, with_freshness
from fin_assets.jobs import (
    bars_hourly_job,
    core_bars_checks_job,
    daily_checks_job,
    daily_tables_job,
)
from fin_assets.runs import fin_assets_executor
from fin_assets.schedules import bars_hourly_schedule, daily_tables_schedule
from fin_assets.sensors import build_new_bars_sensor
from fin_assets.settings import API_KEY_VARIABLE, WEBHOOK_VARIABLE, Settings
from resources.dagster_resources import (
    AlertingResource,
    MarketApiResource,
    SnapshotStoreResource,
    UniverseResource,
    WarehouseResource,
)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    quota = settings.configured_quota
    return {
        "market_api": MarketApiResource(
            provider=settings.provider,
            base_url=settings.base_url,
            # EnvVar keeps the key out of run config, the UI and event logs.
            api_key=dg.EnvVar(API_KEY_VARIABLE) if settings.has_api_key else None,
            # Unconfigured: the resource falls back on the provider's documented quota.
            **(
                {
                    "quota_requests": quota.limit,
                    "quota_window_s": quota.window_s,
                    "quota_burst": quota.burst,
                }
                if quota
                else {}
            ),
            learn_quota=settings.learn_quota,
            quota_store=settings.quota_store,
            max_attempts=settings.max_attempts,
            max_wait_s=settings.max_wait_s,
            late_data_retries=settings.late_data_retries,
            late_data_retry_s=settings.late_data_retry_s,
        ),
        "snapshots": SnapshotStoreResource(root=str(settings.data_dir)),
        "warehouse": WarehouseResource(url=settings.warehouse_url),
        "universe": UniverseResource(symbols=",".join(settings.symbols)),
        "alerting": AlertingResource(
            # EnvVar: a Slack webhook URL is a secret (anyone holding it can post).
            webhook_url=dg.EnvVar(WEBHOOK_VARIABLE) if settings.has_webhook else None,
            payload_format=settings.alert_format,
        ),
    }


def build_definitions(env: Mapping[str, str]) -> dg.Definitions:
    """The definitions for an environment mapping; a bad setting fails here, at load time."""
    settings = Settings.from_env(env)
    hourly = with_freshness(
        [build_raw_bars(provider=settings.provider), core_bars], settings.freshness
    )
    daily = [
        # The daily tables follow every hourly window (backfills too), and only once each hour
        # of their day passed its blocking quality checks.
        asset.map_asset_specs(
            lambda spec: spec.replace_attributes(automation_condition=daily_automation_condition())
        )
        for asset in with_freshness([core_daily_bars, core_daily_returns], settings.freshness)
    ]
    partition_checks, partition_checks_sensor = build_partition_freshness_checks(
        hourly, settings.freshness
    )
    return dg.Definitions(
        assets=[*hourly, *daily],
        asset_checks=[*partition_checks, *build_quality_checks()],
        jobs=[bars_hourly_job, daily_tables_job, core_bars_checks_job, daily_checks_job],
        schedules=[bars_hourly_schedule, daily_tables_schedule],
        sensors=[
            build_new_bars_sensor(
                minimum_interval_seconds=settings.sensor_interval_s,
                lookback_hours=settings.new_data_lookback_hours,
            ),
            build_automation_sensor(minimum_interval_seconds=settings.automation_interval_s),
            build_health_alert_sensor(minimum_interval_seconds=settings.sensor_interval_s),
            partition_checks_sensor,
        ],
        resources=build_resources(settings),
        # Dagster's default executor, recording each run's worker and failing dead runs first.
        executor=fin_assets_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(os.environ)
