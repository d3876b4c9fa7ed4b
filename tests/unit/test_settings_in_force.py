"""Every FIN_* setting, set on the default deployment (the two sources of fin_assets/defs/),
either changes what is in force — the definitions Dagster loads, or what the metrics exporter
reads of them — or fails the load naming the variable. None is read and then ignored.

"In force" is read back from the built objects a user meets: resources' configuration, asset
freshness policies, checks, sensors, the executor, and the exporter's view of every source's
quota ceiling (``fin-assets metrics``' ``fin_assets_quota_ceiling``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from fin_assets.definitions import build_definitions
from fin_assets.lib.catalog import sources_in_force
from fin_assets.lib.settings import SETTINGS
from fin_assets.tools.metrics import load_code_location
from resources.errors import InvalidInputError

# (variable, a value other than its default, "applies" or "refused").
CASES: dict[str, tuple[str, str]] = {
    "FIN_PROVIDER": ("binance", "applies"),  # the shorthand source replaces the declared ones
    "FIN_API_BASE_URL": ("http://127.0.0.1:9", "applies"),
    "FIN_API_KEY": ("k-123", "refused"),  # no declared source names it as its api_key_env
    "FIN_SYMBOLS": ("AAPL", "applies"),
    "FIN_CALENDAR": ("XNYS", "refused"),  # the shorthand's calendar, and no shorthand
    "FIN_SOURCES_DIR": ("{sources_dir}", "applies"),
    "FIN_DATA_DIR": ("{tmp}/elsewhere", "applies"),
    "FIN_WAREHOUSE_URL": ("{tmp}/warehouse2", "applies"),
    "FIN_QUOTA_REQUESTS": ("7", "applies"),
    "FIN_QUOTA_WINDOW_SECONDS": ("60", "refused"),  # without FIN_QUOTA_REQUESTS
    "FIN_QUOTA_BURST": ("3", "refused"),  # without FIN_QUOTA_REQUESTS
    "FIN_QUOTA_STORE": ("{tmp}/quota.sqlite", "applies"),
    "FIN_MAX_ATTEMPTS": ("9", "applies"),
    "FIN_MAX_WAIT_SECONDS": ("11", "applies"),
    "FIN_LATE_DATA_RETRIES": ("1", "applies"),
    "FIN_LATE_DATA_RETRY_SECONDS": ("7", "applies"),
    "FIN_ALERT_WEBHOOK_URL": ("https://hooks.example/x", "applies"),
    "FIN_ALERT_FORMAT": ("plain", "refused"),  # without a webhook, alerts are only logged
    "FIN_SENSOR_INTERVAL_SECONDS": ("17", "applies"),
    "FIN_AUTOMATION_INTERVAL_SECONDS": ("13", "applies"),
    "FIN_NEW_DATA_LOOKBACK_HOURS": ("5", "applies"),
    "FIN_FRESHNESS_HOURLY_FAIL_MINUTES": ("120", "applies"),
    "FIN_FRESHNESS_HOURLY_WARN_MINUTES": ("100", "applies"),
    "FIN_FRESHNESS_DAILY_DEADLINE_CRON": ("0 5 * * *", "applies"),
    "FIN_METRICS_CACHE_SECONDS": ("9", "applies"),
    "FIN_EXECUTOR": ("celery", "applies"),
    "FIN_CELERY_BROKER": ("amqp://u:p@127.0.0.1:5672//", "refused"),  # needs FIN_EXECUTOR=celery
}

ONE_SOURCE = """type: fin_assets.lib.components.MarketDataSource
attributes:
  name: {name}
  provider: simulator
  symbols: [AAPL]
  calendar: "24/7"
  base_url: http://127.0.0.1:8765
{extra}"""


def test_every_setting_has_a_case() -> None:
    assert set(CASES) == {s.name for s in SETTINGS}


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    return {"DAGSTER_HOME": str(tmp_path / "home"), "FIN_DATA_DIR": str(tmp_path / "data")}


def write_source(directory: Path, name: str, extra: str = "") -> None:
    (directory / name).mkdir(parents=True)
    (directory / name / "defs.yaml").write_text(ONE_SOURCE.format(name=name, extra=extra))


def in_force(env: Mapping[str, str]) -> dict[str, Any]:
    """What a user meets of the deployment: the definitions and the exporter's view of them."""
    defs = build_definitions(env)
    graph = defs.resolve_asset_graph()
    location = load_code_location(env)
    executor = defs.executor
    assert isinstance(executor, dg.ExecutorDefinition)
    return {
        "resources": {key: repr(value) for key, value in (defs.resources or {}).items()},
        "assets": {
            key.to_user_string(): repr(graph.get(key).freshness_policy)
            for key in graph.get_all_asset_keys()
        },
        "checks": sorted(key.to_user_string() for key in graph.asset_check_keys),
        "sensors": {
            sensor.name: (sensor.minimum_interval_seconds, sensor.description)
            for sensor in defs.sensors or []
        },
        "executor": (executor.name, repr(executor.config_schema)),
        "exporter": repr(location),
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_setting_applies_or_is_refused(
    name: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    value, expected = CASES[name]
    sources_dir = tmp_path / "sources"
    write_source(sources_dir, "only")
    value = value.format(tmp=tmp_path, sources_dir=sources_dir)
    before = in_force(base_env)
    env = {**base_env, name: value}
    if expected == "refused":
        with pytest.raises(InvalidInputError, match=name):
            build_definitions(env)
        return
    after = in_force(env)
    changed = [part for part in before if before[part] != after[part]]
    assert changed, f"{name}={value} changed nothing in force: read and ignored"


def ceilings(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Each source's quota ceiling as the exporter reports it, and where it came from."""
    return {
        s.label: (repr(s.ceiling.policy), s.ceiling.origin) for s in load_code_location(env).sources
    }


def test_a_quota_variable_is_every_declared_sources_default(base_env: dict[str, str]) -> None:
    documented = ceilings(base_env)
    assert {origin for _policy, origin in documented.values()} == {"documented"}
    configured = ceilings({**base_env, "FIN_QUOTA_REQUESTS": "7", "FIN_QUOTA_WINDOW_SECONDS": "60"})
    declared = {source.label for source in sources_in_force(base_env)}
    assert len(declared) >= 2 and set(configured) == declared
    for label, (policy, origin) in configured.items():
        assert origin == "configured", label
        assert "limit=7.0" in policy and "window_s=60.0" in policy, (label, policy)


def test_a_sources_own_quota_and_freshness_override_the_variables(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "sources"
    write_source(
        directory,
        "own",
        "  quota: {requests: 2, window_seconds: 1}\n"
        "  freshness: {fail_minutes: 30, daily_deadline_cron: '0 6 * * *'}\n",
    )
    write_source(directory, "defaulted")
    env = {
        **base_env,
        "FIN_SOURCES_DIR": str(directory),
        "FIN_QUOTA_REQUESTS": "7",
        "FIN_FRESHNESS_HOURLY_FAIL_MINUTES": "120",
        "FIN_FRESHNESS_DAILY_DEADLINE_CRON": "0 5 * * *",
    }
    found = ceilings(env)
    assert "limit=2.0" in found["own"][0] and "limit=7.0" in found["defaulted"][0]
    stale = {s.label: s.stale_after_s for s in load_code_location(env).sources}
    assert stale == {"own": 30 * 60, "defaulted": 120 * 60}
    graph = build_definitions(env).resolve_asset_graph()
    daily = {
        key.path[1]: repr(graph.get(key).freshness_policy)
        for key in graph.get_all_asset_keys()
        if key.path[-1] == "daily_bars"
    }
    assert "0 6 * * *" in daily["own"] and "0 5 * * *" in daily["defaulted"], daily


def test_a_default_every_source_overrides_is_refused(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "sources"
    write_source(directory, "own", "  quota: learn\n")
    env = {**base_env, "FIN_SOURCES_DIR": str(directory), "FIN_QUOTA_REQUESTS": "7"}
    with pytest.raises(InvalidInputError, match="FIN_QUOTA_REQUESTS is set, but every source"):
        build_definitions(env)


def test_the_api_key_variable_is_read_when_a_source_names_it(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "sources"
    write_source(directory, "keyed", "  api_key_env: FIN_API_KEY\n")
    env = {**base_env, "FIN_SOURCES_DIR": str(directory), "FIN_API_KEY": "k-123"}
    resources = build_definitions(env).resources or {}
    assert "FIN_API_KEY" in repr(resources["market_api__keyed"])
    assert "k-123" not in repr(resources)  # bound as dg.EnvVar, never as its value


def test_the_shorthand_and_a_sources_dir_together_are_refused(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**base_env, "FIN_SOURCES_DIR": str(tmp_path), "FIN_SYMBOLS": "AAPL"}
    with pytest.raises(InvalidInputError, match="FIN_SOURCES_DIR and FIN_SYMBOLS"):
        build_definitions(env)


def test_the_command_line_refuses_an_ignored_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fin-assets simulator --declared-sources` asks the same catalog: FIN_CALENDAR without
    the shorthand ends it before anything starts, with one line naming the variable."""
    from fin_assets.tools.cli import main

    monkeypatch.setenv("FIN_CALENDAR", "XNYS")
    for name in ("FIN_PROVIDER", "FIN_SYMBOLS", "FIN_API_BASE_URL", "FIN_SOURCES_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert main(["simulator", "--port", "0", "--declared-sources"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fin-assets simulator: FIN_CALENDAR is set"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("value", "executor"),
    [("multiprocess", "fin_assets_executor"), ("in_process", "fin_assets_in_process_executor")],
)
def test_each_executor_value_is_the_executor_of_every_job(
    value: str, executor: str, base_env: dict[str, str]
) -> None:
    """FIN_EXECUTOR's other values (celery: the case above) are the executor of every job,
    the UI's and the CLI's implicit asset job included. That an in_process run executes its
    steps in its own process is seen in tests/e2e/test_freshness_alerts.py, whose daemon
    launches such runs."""
    defs = build_definitions({**base_env, "FIN_EXECUTOR": value})
    jobs = [*defs.resolve_all_job_defs(), defs.resolve_implicit_global_asset_job_def()]
    assert {job.executor_def.name for job in jobs} == {executor}
