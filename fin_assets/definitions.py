"""The fin-assets code location: every asset, job, schedule and resource, listed explicitly.

This is the only module that binds resources or reads environment variables, and it reads them
when Dagster loads the definitions (``@dg.definitions``), not at import time. Secrets go through
``dg.EnvVar`` so their values never appear in run config or the UI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from fin_assets.alerts import build_alert_sensor
from fin_assets.assets.bars import core_bars
from fin_assets.assets.daily import core_daily_bars, core_daily_returns
from fin_assets.assets.raw import build_raw_bars
from fin_assets.checks import (
    build_quality_checks,
    core_bars_checks_job,
    daily_automation_condition,
    daily_checks_job,
)
from fin_assets.freshness import (
    FreshnessSettings,
    build_partition_freshness_checks,
    with_freshness,
)
from fin_assets.schedules import (
    bars_hourly_job,
    bars_hourly_schedule,
    daily_tables_job,
    daily_tables_schedule,
)
from fin_assets.sensors import build_automation_sensor, build_new_bars_sensor
from resources.dagster_resources import (
    AlertingResource,
    MarketApiResource,
    SnapshotStoreResource,
    UniverseResource,
    WarehouseResource,
)
from resources.errors import InvalidInputError
from resources.providers import get_adapter
from resources.validation import parse_symbols

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Every setting, its default, and what it means (the README's configuration table mirrors this).
DEFAULTS: dict[str, str] = {
    "FIN_PROVIDER": "simulator",
    "FIN_API_BASE_URL": "",  # empty = the provider's own (simulator: http://127.0.0.1:8765)
    "FIN_SYMBOLS": "AAPL,MSFT,GOOG,AMZN,NVDA",
    "FIN_DATA_DIR": str(PROJECT_ROOT / "data"),
    "FIN_WAREHOUSE_URL": "",  # empty = <FIN_DATA_DIR>/warehouse (Parquet)
    "FIN_QUOTA_REQUESTS": "",  # empty = the provider's documented quota, else learn it
    "FIN_QUOTA_WINDOW_SECONDS": "1",
    "FIN_QUOTA_BURST": "1",
    "FIN_QUOTA_STORE": "",  # empty = $DAGSTER_HOME/fin_assets_quota.sqlite (or FIN_DATA_DIR)
    "FIN_MAX_ATTEMPTS": "5",
    "FIN_MAX_WAIT_SECONDS": "120",
    "FIN_ALERT_FORMAT": "slack",  # FIN_ALERT_WEBHOOK_URL: unset = alerts are only logged
    "FIN_SENSOR_INTERVAL_SECONDS": "60",
    "FIN_AUTOMATION_INTERVAL_SECONDS": "30",
    "FIN_NEW_DATA_LOOKBACK_HOURS": "48",
    "FIN_FRESHNESS_HOURLY_FAIL_MINUTES": "90",
    "FIN_FRESHNESS_HOURLY_WARN_MINUTES": "75",
    "FIN_FRESHNESS_DAILY_DEADLINE_CRON": "0 2 * * *",
}


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float]) -> float:
    raw = env.get(name) or DEFAULTS[name]
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidInputError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise InvalidInputError(f"{name}={raw!r} must not be negative")
    return value


def build_resources(env: Mapping[str, str]) -> dict[str, dg.ConfigurableResource]:
    """Resources from an environment mapping; bad values fail here, at load time."""

    def setting(name: str) -> str:
        return env.get(name) or DEFAULTS[name]

    provider = setting("FIN_PROVIDER")
    adapter = get_adapter(provider)
    if adapter.requires_key and not env.get("FIN_API_KEY"):
        raise InvalidInputError(f"provider {provider} needs an API key: set FIN_API_KEY")
    symbols = ",".join(parse_symbols(setting("FIN_SYMBOLS")))
    data_dir = Path(setting("FIN_DATA_DIR")).expanduser().resolve()
    warehouse_url = env.get("FIN_WAREHOUSE_URL") or str(data_dir / "warehouse")
    # One quota state for every process of the instance: a file next to it.
    instance_dir = Path(env["DAGSTER_HOME"]) if env.get("DAGSTER_HOME") else data_dir
    quota_store = env.get("FIN_QUOTA_STORE") or str(instance_dir / "fin_assets_quota.sqlite")
    quota = setting("FIN_QUOTA_REQUESTS").strip().lower()
    learn = quota == "learn"
    quota_requests = None if quota in ("", "learn") else _number(env, "FIN_QUOTA_REQUESTS", float)
    if quota_requests == 0:
        raise InvalidInputError("FIN_QUOTA_REQUESTS=0 would never send: use a number or 'learn'")
    return {
        "market_api": MarketApiResource(
            provider=provider,
            base_url=env.get("FIN_API_BASE_URL") or adapter.default_base_url,
            # EnvVar keeps the key out of run config, the UI and event logs.
            api_key=dg.EnvVar("FIN_API_KEY") if env.get("FIN_API_KEY") else None,
            quota_requests=quota_requests,
            quota_window_s=_number(env, "FIN_QUOTA_WINDOW_SECONDS", float),
            quota_burst=max(1, int(_number(env, "FIN_QUOTA_BURST", int))),
            learn_quota=learn,
            quota_store=quota_store,
            max_attempts=int(_number(env, "FIN_MAX_ATTEMPTS", int)),
            max_wait_s=_number(env, "FIN_MAX_WAIT_SECONDS", float),
        ),
        "snapshots": SnapshotStoreResource(root=str(data_dir)),
        "warehouse": WarehouseResource(url=warehouse_url),
        "universe": UniverseResource(symbols=symbols),
    }


def freshness_settings(env: Mapping[str, str]) -> FreshnessSettings:
    warn = _number(env, "FIN_FRESHNESS_HOURLY_WARN_MINUTES", float)
    return FreshnessSettings(
        hourly_fail_minutes=_number(env, "FIN_FRESHNESS_HOURLY_FAIL_MINUTES", float),
        hourly_warn_minutes=warn or None,
        daily_deadline_cron=env.get("FIN_FRESHNESS_DAILY_DEADLINE_CRON")
        or DEFAULTS["FIN_FRESHNESS_DAILY_DEADLINE_CRON"],
    )


def build_definitions(env: Mapping[str, str]) -> dg.Definitions:
    resources = build_resources(env)
    provider = resources["market_api"].provider  # type: ignore[attr-defined]
    settings = freshness_settings(env)
    hourly = with_freshness([build_raw_bars(provider=provider), core_bars], settings)
    daily = [
        # The daily tables follow every hourly window (backfills too), and only once each hour
        # of their day passed its blocking quality checks.
        asset.map_asset_specs(
            lambda spec: spec.replace_attributes(automation_condition=daily_automation_condition())
        )
        for asset in with_freshness([core_daily_bars, core_daily_returns], settings)
    ]
    partition_checks, partition_checks_sensor = build_partition_freshness_checks(hourly, settings)
    sensor_interval = int(_number(env, "FIN_SENSOR_INTERVAL_SECONDS", int))
    return dg.Definitions(
        assets=[*hourly, *daily],
        asset_checks=[*partition_checks, *build_quality_checks()],
        jobs=[bars_hourly_job, daily_tables_job, core_bars_checks_job, daily_checks_job],
        schedules=[bars_hourly_schedule, daily_tables_schedule],
        sensors=[
            build_new_bars_sensor(
                minimum_interval_seconds=sensor_interval,
                lookback_hours=int(_number(env, "FIN_NEW_DATA_LOOKBACK_HOURS", int)),
            ),
            build_automation_sensor(
                minimum_interval_seconds=int(_number(env, "FIN_AUTOMATION_INTERVAL_SECONDS", int))
            ),
            build_alert_sensor(minimum_interval_seconds=sensor_interval),
            partition_checks_sensor,
        ],
        resources={
            **resources,
            "alerting": AlertingResource(
                # EnvVar: a Slack webhook URL is a secret (anyone holding it can post).
                webhook_url=dg.EnvVar("FIN_ALERT_WEBHOOK_URL")
                if env.get("FIN_ALERT_WEBHOOK_URL")
                else None,
                payload_format=env.get("FIN_ALERT_FORMAT") or DEFAULTS["FIN_ALERT_FORMAT"],
            ),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(os.environ)
