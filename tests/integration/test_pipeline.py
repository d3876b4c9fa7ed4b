"""The whole pipeline against the loopback simulator, through a real (temporary) instance."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from resources.errors import InvalidInputError
from resources.simulator.faults import FaultSpec
from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.parquet import ParquetWarehouse
from tests.conftest import (
    assert_secrets_not_logged,
    assert_secrets_nowhere,
    fin_env,
    materialization_metadata,
    run_range,
    step_failure_messages,
)

DAY = "2026-01-05"
HOURS = [f"{DAY}-{h:02d}:00" for h in range(24)]
SYMBOLS = ["AAPL", "AMZN", "GOOG", "MSFT", "NVDA"]


def hourly(defs: dg.Definitions, first: str, last: str, instance: dg.DagsterInstance, **kw):
    return run_range(defs, "bars_hourly_job", first, last, instance=instance, **kw)


def test_day_range_lands_every_minute_with_two_requests_per_symbol_day(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions(fin_env(sim, tmp_path))
    result = hourly(defs, HOURS[0], HOURS[-1], instance)
    assert result.success
    raw_meta = materialization_metadata(result, ["raw", "bars"])
    # 1440 minutes at 1000 bars a page: 2 requests per symbol-day, not 24.
    assert raw_meta["requests"] == 10
    assert sim.stats()["requests"] == 10
    assert raw_meta["rows"] == 24 * 60 * 5
    assert raw_meta["snapshots_reused"] == 0

    wh = ParquetWarehouse(tmp_path / "warehouse")
    assert wh.partition_keys("core_bars") == HOURS
    bars = wh.scan("core_bars", HOURS).collect()
    assert bars.height == 24 * 5 * 60
    assert sorted(bars["symbol"].unique()) == SYMBOLS
    assert bars.select(pl.struct("symbol", "ts").is_unique().all()).item()
    assert bars["ts"].dtype == pl.Datetime("us", "UTC")
    assert (bars["provider"] == "simulator").all()

    daily = run_range(defs, "daily_tables_job", DAY, DAY, instance=instance)
    assert daily.success
    day_bars = wh.read_partition("core_daily_bars", DAY)
    assert day_bars is not None
    assert day_bars["bar_count"].to_list() == [1440] * 5
    aapl = bars.filter(pl.col("symbol") == "AAPL").sort("ts")
    row = day_bars.filter(pl.col("symbol") == "AAPL").row(0, named=True)
    assert row["open"] == aapl["open"][0]
    assert row["close"] == aapl["close"][-1]
    assert row["high"] == aapl["high"].max()
    assert row["low"] == aapl["low"].min()
    assert row["volume"] == pytest.approx(aapl["volume"].sum())
    returns = wh.read_partition("core_daily_returns", DAY)
    assert returns is not None and returns.height == 5
    assert returns["return_oc"].to_list() == pytest.approx(
        (day_bars["close"] / day_bars["open"] - 1).to_list()
    )


def test_rematerializing_replaces_instead_of_appending_and_reuses_snapshots(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions(fin_env(sim, tmp_path))
    wh = ParquetWarehouse(tmp_path / "warehouse")
    assert hourly(defs, HOURS[3], HOURS[3], instance).success
    first = wh.read_partition("core_bars", HOURS[3])
    assert first is not None and first.height == 5 * 60
    requests_after_first = sim.stats()["requests"]

    again = hourly(defs, HOURS[3], HOURS[3], instance)
    assert again.success
    assert materialization_metadata(again, ["raw", "bars"])["requests"] == 0
    assert sim.stats()["requests"] == requests_after_first
    second = wh.read_partition("core_bars", HOURS[3])
    assert second is not None and second.equals(first)

    refreshed = hourly(
        defs,
        HOURS[3],
        HOURS[3],
        instance,
        run_config={"ops": {"raw__bars": {"config": {"refresh": True}}}},
    )
    assert refreshed.success
    assert materialization_metadata(refreshed, ["raw", "bars"])["requests"] == 5
    third = wh.read_partition("core_bars", HOURS[3])
    assert third is not None and third.height == 5 * 60
    assert third.drop("ingested_at").equals(first.drop("ingested_at"))


@pytest.mark.parametrize(
    ("fault", "field"),
    [("schema_drift", "'c'"), ("malformed_json", "'body'")],
)
def test_bad_provider_data_fails_with_one_error_naming_where_and_writes_nothing(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance, fault: str, field: str
) -> None:
    sim.set_faults({fault: FaultSpec(rate=1.0)})
    defs = build_definitions(fin_env(sim, tmp_path, FIN_SYMBOLS="AAPL", FIN_MAX_ATTEMPTS="2"))
    result = hourly(defs, HOURS[2], HOURS[2], instance)
    assert not result.success
    messages = step_failure_messages(result)
    assert len(messages) == 1, messages
    message = messages[0]
    for expected in ("simulator", "AAPL", HOURS[2], field):
        assert expected in message, (expected, message)
    assert ParquetWarehouse(tmp_path / "warehouse").partition_keys("core_bars") == []


@pytest.mark.parametrize("bad", ["../etc", "A;DROP"])
def test_invalid_symbol_is_refused_before_any_request_or_file(
    sim: MarketSimulator, tmp_path: Path, bad: str
) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(InvalidInputError, match="invalid symbol"):
        build_definitions(fin_env(sim, data_dir, FIN_SYMBOLS=f"AAPL,{bad}"))
    assert sim.stats()["requests"] == 0
    assert not data_dir.exists()


def test_invalid_symbol_in_run_config_fails_the_run_before_any_request(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions(fin_env(sim, tmp_path / "data"))
    result = hourly(
        defs,
        HOURS[0],
        HOURS[0],
        instance,
        run_config={"resources": {"universe": {"config": {"symbols": "AAPL,../etc"}}}},
    )
    assert not result.success
    assert any("invalid symbol '../etc'" in m for m in step_failure_messages(result))
    assert sim.stats()["requests"] == 0
    assert not (tmp_path / "data" / "raw").exists()


def test_open_window_is_refused(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions(fin_env(sim, tmp_path))
    hour = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00").get_last_partition_key()
    # The last *closed* hour is the latest partition; one after it is still open.
    open_hour = dg.HourlyPartitionsDefinition(
        start_date="2026-01-01-00:00", end_offset=1
    ).get_last_partition_key()
    assert hour != open_hour
    result = hourly(defs, open_hour, open_hour, instance)
    assert not result.success
    assert any("has not closed yet" in m for m in step_failure_messages(result))
    assert sim.stats()["requests"] == 0


def test_server_errors_and_429s_are_retried_and_reported(
    sim: MarketSimulator, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    sim.set_faults({"server_error": FaultSpec(rate=1.0, count=2)})
    defs = build_definitions(fin_env(sim, tmp_path, FIN_SYMBOLS="AAPL"))
    result = hourly(defs, HOURS[0], HOURS[0], instance)
    assert result.success
    meta = materialization_metadata(result, ["raw", "bars"])
    assert meta["retries"] == 2
    assert meta["requests"] == 3
    assert sim.stats()["faults_injected"]["server_error"] == 2


def test_api_key_never_lands_in_logs_event_log_metadata_files_or_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A succeeding run (with a 429 and a retry, so waits are logged) and a failing run (wrong
    key) with known keys; then every place a key could end up is searched for it."""
    secret = "sk-live-DO-NOT-LEAK-4242"
    wrong = "sk-wrong-ALSO-SECRET-77"
    caplog.set_level(logging.DEBUG)
    overrides = {
        "python_logs": {
            "managed_python_loggers": ["fin_assets.client", "httpx", "httpcore"],
            "python_log_level": "DEBUG",
        }
    }
    config = SimulatorConfig(port=0, api_keys=frozenset({secret}), fault_retry_after_s=1)
    with MarketSimulator(config) as keyed, dg.instance_for_test(overrides=overrides) as instance:
        keyed.set_faults({"rate_limited": FaultSpec(rate=1.0, count=1)})
        monkeypatch.setenv("FIN_API_KEY", secret)
        env = {**fin_env(keyed, tmp_path, FIN_SYMBOLS="AAPL"), "FIN_API_KEY": secret}
        good = hourly(build_definitions(env), HOURS[0], HOURS[0], instance)
        assert good.success
        assert materialization_metadata(good, ["raw", "bars"])["throttled_429"] == 1
        monkeypatch.setenv("FIN_API_KEY", wrong)
        env["FIN_API_KEY"] = wrong
        bad = hourly(build_definitions(env), HOURS[1], HOURS[1], instance)
        assert not bad.success
        assert keyed.stats()["requests"] == 3  # 429 + retry, then a 401 that is not retried
        (failure,) = step_failure_messages(bad)
        assert "HTTP 401" in failure and "apikey=***" in failure
        assert_secrets_nowhere(
            (secret, wrong), data_dir=tmp_path, instance=instance, runs=(good, bad)
        )
        sidecars = list(tmp_path.rglob("*.meta.json"))
        assert sidecars and all(b"apikey=***" in p.read_bytes() for p in sidecars)
        stored = [entry for run in (good, bad) for entry in instance.all_logs(run.run_id)]
        assert any("waiting 1.00 s: Retry-After" in (e.user_message or "") for e in stored)
    out, err = capfd.readouterr()
    assert "Retry-After" in err
    assert_secrets_not_logged((secret, wrong), caplog=caplog, output=out + err)
