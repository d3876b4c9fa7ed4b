"""Settings: one declared list, parsed once, and the configuration table of
docs/configuration.md kept in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fin_assets.lib.settings import DEFAULTS, SETTINGS, Settings
from resources.errors import InvalidInputError
from resources.http.client import DEFAULT_MAX_ATTEMPTS, MarketApiClient
from resources.simulator.adapter import SimulatorAdapter

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\| `(FIN_[A-Z_]+)` \| (.+?) \| (.+?) \|$")


def table_rows() -> dict[str, str]:
    """FIN_* variable -> the default column of the configuration table."""
    rows = {}
    for line in CONFIGURATION.read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_the_configuration_table_lists_every_setting_and_nothing_else() -> None:
    assert set(table_rows()) == {s.name for s in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_the_table_default_is_the_declared_default(setting: object) -> None:
    column = table_rows()[setting.name]  # type: ignore[attr-defined]
    if column.startswith("`") and column.endswith("`") and column.count("`") == 2:
        literal = column.strip("`")
        if not literal.startswith(("<", "$")):  # a placeholder, not a value
            assert literal == setting.default  # type: ignore[attr-defined]
            return
    # Described in words ("unset", "the provider's ..."): the declared default is empty.
    assert setting.default == "", f"{setting.name}: the table says {column}"  # type: ignore[attr-defined]


def test_defaults_come_from_where_they_are_used() -> None:
    # One fact, one place: the client's own default is what the settings declare.
    assert DEFAULTS["FIN_MAX_ATTEMPTS"] == str(DEFAULT_MAX_ATTEMPTS)
    settings = Settings.from_env({})
    assert settings.max_attempts == DEFAULT_MAX_ATTEMPTS
    assert settings.base_url == SimulatorAdapter.default_base_url
    client = MarketApiClient(SimulatorAdapter(), base_url=settings.base_url)
    try:
        assert client._max_attempts == settings.max_attempts
    finally:
        client.close()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FIN_MAX_ATTEMPTS", "five", "FIN_MAX_ATTEMPTS='five' is not a valid int"),
        ("FIN_MAX_WAIT_SECONDS", "-1", "FIN_MAX_WAIT_SECONDS='-1' must not be negative"),
        ("FIN_QUOTA_REQUESTS", "0", "FIN_QUOTA_REQUESTS=0 would never send"),
        ("FIN_ALERT_FORMAT", "teams", "FIN_ALERT_FORMAT='teams': expected one of slack, plain"),
        (
            "FIN_EXECUTOR",
            "k8s",
            "FIN_EXECUTOR='k8s': expected one of multiprocess, in_process, celery",
        ),
        ("FIN_PROVIDER", "nyse", "unknown provider 'nyse'"),
        # nan and inf parse as floats: a budget of nan seconds ran as if unset.
        ("FIN_MAX_WAIT_SECONDS", "nan", "FIN_MAX_WAIT_SECONDS='nan' must be a finite number"),
        ("FIN_MAX_WAIT_SECONDS", "inf", "FIN_MAX_WAIT_SECONDS='inf' must be a finite number"),
        ("FIN_QUOTA_REQUESTS", "-inf", "FIN_QUOTA_REQUESTS='-inf' must be a finite number"),
        ("FIN_FRESHNESS_HOURLY_FAIL_MINUTES", "NaN", "must be a finite number"),
        ("FIN_MAX_ATTEMPTS", "0", "FIN_MAX_ATTEMPTS='0' must be at least 1"),
        ("FIN_QUOTA_BURST", "0", "FIN_QUOTA_BURST='0' must be at least 1"),
        ("FIN_SENSOR_INTERVAL_SECONDS", "0", "FIN_SENSOR_INTERVAL_SECONDS='0' must be at least 1"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(name: str, value: str, message: str) -> None:
    env = {name: value}
    if name == "FIN_QUOTA_BURST":
        env["FIN_QUOTA_REQUESTS"] = "10"
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        Settings.from_env(env)


def test_a_configured_quota_is_typed() -> None:
    settings = Settings.from_env(
        {"FIN_QUOTA_REQUESTS": "10", "FIN_QUOTA_WINDOW_SECONDS": "60", "FIN_QUOTA_BURST": "3"}
    )
    assert settings.configured_quota is not None
    assert (settings.configured_quota.limit, settings.configured_quota.window_s) == (10.0, 60.0)
    assert settings.configured_quota.burst == 3
    assert Settings.from_env({"FIN_QUOTA_REQUESTS": "learn"}).learn_quota
