"""Everything one source contributes to the code location: its partitions (on its calendar), its
assets, checks, jobs, schedules and new-data sensor, and its API and universe resources.

Used by ``fin_assets/definitions.py`` for every source ``fin_assets/lib/catalog.py`` says is in
force (and by the ``MarketDataSource`` component itself); what every source shares (warehouse,
snapshots, alerting, the automation and alert sensors, the executor) is bound once in
``definitions.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import dagster as dg

from fin_assets.lib.assets.actions import build_corporate_action_assets, has_corporate_actions
from fin_assets.lib.assets.bars import build_core_bars_asset
from fin_assets.lib.assets.daily import build_daily_assets
from fin_assets.lib.assets.raw import build_raw_bars
from fin_assets.lib.automation import daily_automation_condition
from fin_assets.lib.checks import build_adjusted_checks, build_quality_checks
from fin_assets.lib.freshness import build_partition_freshness_checks, with_freshness
from fin_assets.lib.jobs import build_jobs
from fin_assets.lib.partitions import SourcePartitions, source_partitions
from fin_assets.lib.resources import ArchiveResource, MarketApiResource, UniverseResource
from fin_assets.lib.schedules import build_schedules
from fin_assets.lib.sensors import build_new_bars_sensor
from fin_assets.lib.settings import Settings
from fin_assets.lib.sources import Source
from resources.calendars import load_sessions, sessions_horizon
from resources.endpoints import public_url
from resources.errors import InvalidInputError


def partitions_of(source: Source, settings: Settings) -> SourcePartitions:
    # A horizon fixed for years (resources/calendars.py says why), so a load on 1 January
    # builds what a load on 31 December did, from the same cache file.
    last = sessions_horizon(date.today())
    try:
        sessions = load_sessions(
            source.calendar, first=source.partitions_start, last=last, cache_dir=settings.cache_dir
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source.where}: calendar: {exc}") from None
    return source_partitions(sessions, start=source.partitions_start)


def source_resources(
    source: Source, settings: Settings, env: Mapping[str, str]
) -> dict[str, dg.ConfigurableResource]:
    adapter = settings.adapter_for(source.provider)
    has_key = bool(source.api_key_env and env.get(source.api_key_env))
    adapter.check_api_key(
        source.api_key_env if has_key else None, variable=source.api_key_env or "FIN_API_KEY"
    )
    quota = source.quota
    quota_fields: dict[str, Any] = (
        {
            "quota_requests": quota.limit,
            "quota_window_s": quota.window_s,
            "quota_burst": quota.burst,
        }
        if quota
        else {}
    )
    return {
        source.resource_key("market_api"): MarketApiResource(
            provider=source.provider,
            # The URL without its user and password: the resource's config is shown in the UI
            # and kept with each run; the client gets them back in the step's own process
            # (resources/endpoints.py), from the definitions it loaded.
            base_url=public_url(source.base_url),
            # EnvVar keeps the key out of run config, the UI and event logs.
            api_key=dg.EnvVar(source.api_key_env) if has_key and source.api_key_env else None,
            # Unconfigured: the resource's own defaults (the provider's documented quota).
            **quota_fields,
            learn_quota=source.learn_quota,
            quota_store=settings.quota_store,
            max_attempts=settings.max_attempts,
            max_wait_s=settings.max_wait_s,
            late_data_retries=settings.late_data_retries,
            late_data_retry_s=settings.late_data_retry_s,
        ),
        source.resource_key("universe"): UniverseResource(
            symbols=",".join(source.symbols), provider=source.provider
        ),
        **archive_resources(source, env),
    }


def archive_resources(source: Source, env: Mapping[str, str]) -> dict[str, dg.ConfigurableResource]:
    """The source's bulk archive, if it declares one; its S3 keys bound late (EnvVar), as the
    API key is, so they never reach the UI, run config or event logs."""
    archive = source.archive
    if archive is None:
        return {}
    keys: dict[str, Any] = {}
    if archive.access_key_env and archive.secret_key_env:
        for name in (archive.access_key_env, archive.secret_key_env):
            if not env.get(name):
                raise InvalidInputError(
                    f"{source.where}: archive: variable {name} is not set: it must hold the "
                    "archive's S3 key (Massive: dashboard, Flat Files, S3 keys)"
                )
        keys = {
            "access_key": dg.EnvVar(archive.access_key_env),
            "secret_key": dg.EnvVar(archive.secret_key_env),
        }
    return {
        source.resource_key("archive"): ArchiveResource(
            provider=source.provider,
            use=archive.use,
            url=archive.url,
            bucket=archive.bucket,
            prefix=archive.prefix,
            **keys,
        )
    }


def build_source_definitions(
    source: Source, settings: Settings, env: Mapping[str, str]
) -> dg.Definitions:
    partitions = partitions_of(source, settings)
    freshness = source.freshness
    hourly = with_freshness(
        [build_raw_bars(source, partitions), build_core_bars_asset(source, partitions)],
        freshness,
        partitions,
    )
    daily = [
        # The daily tables follow every hourly window (backfills too), and only once each hour
        # of their day passed its blocking quality checks.
        asset.map_asset_specs(
            lambda spec: spec.replace_attributes(automation_condition=daily_automation_condition())
        )
        for asset in with_freshness(build_daily_assets(source, partitions), freshness, partitions)
    ]
    partition_checks, partition_checks_sensor = build_partition_freshness_checks(
        hourly, freshness, sensor_name=source.job_name("partition_freshness_checks_sensor")
    )
    jobs = build_jobs(source, hourly, daily)
    # An equities source's corporate actions and adjusted series (none for crypto).
    actions = (
        with_freshness(build_corporate_action_assets(source, partitions), freshness, partitions)
        if has_corporate_actions(source)
        else []
    )
    actions_job = (
        [
            dg.define_asset_job(
                source.job_name("corporate_actions_job"),
                selection=dg.AssetSelection.assets(source.key("raw", "corporate_actions")),
                description="Fetch every split and dividend of the source's stocks; the typed "
                f"table and the adjusted series follow by automation. Source {source.label}.",
            )
        ]
        if actions
        else []
    )
    return dg.Definitions(
        assets=[*hourly, *daily, *actions],
        asset_checks=[
            *partition_checks,
            *build_quality_checks(source, partitions),
            *(build_adjusted_checks(source) if actions else []),
        ],
        jobs=[*jobs.all(), *actions_job],
        schedules=[
            *build_schedules(source, jobs),
            # 10:30 UTC, before New York's open: the provider updates its actions daily.
            *(
                dg.ScheduleDefinition(
                    name=source.job_name("corporate_actions_schedule"),
                    job=job,
                    cron_schedule="30 10 * * *",
                    execution_timezone="UTC",
                    description="Fetch the corporate actions once a day, before the open.",
                )
                for job in actions_job
            ),
        ],
        sensors=[
            build_new_bars_sensor(
                source,
                partitions,
                job_name=jobs.bars_hourly.name,
                minimum_interval_seconds=settings.sensor_interval_s,
                lookback_hours=settings.new_data_lookback_hours,
            ),
            partition_checks_sensor,
        ],
        resources=source_resources(source, settings, env),
    )
