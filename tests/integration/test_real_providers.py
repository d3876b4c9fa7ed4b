"""Real provider dialects end to end: the real client and engine against loopback emulators."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from resources.ratelimit.policy import ARRIVAL_JITTER_S, SAFETY_RATE
from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.parquet import ParquetWarehouse
from resources.tables.schemas import CANONICAL_SCHEMA
from tests.conftest import (
    assert_secrets_not_logged,
    assert_secrets_nowhere,
    fin_env,
    materialization_metadata,
    run_range,
    step_failure_messages,
)
from tests.emulators.binance import BinanceEmulator
from tests.emulators.polygon import PolygonEmulator
from tests.integration.test_shared_quota import run_workers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HOUR = "2026-01-05-00:00"
DAY = [f"2026-01-05-{h:02d}:00" for h in range(24)]
POLYGON_KEY = "pk-test-NEVER-IN-LOGS-5150"


def hour_of(
    server: object,
    provider: str,
    symbol: str,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    **env: str,
) -> pl.DataFrame:
    settings = fin_env(server, tmp_path, FIN_PROVIDER=provider, FIN_SYMBOLS=symbol, **env)
    result = run_range(
        build_definitions(settings), "bars_hourly_job", HOUR, HOUR, instance=instance
    )
    assert result.success
    frame = ParquetWarehouse(tmp_path / "warehouse").read_partition("core_bars", HOUR)
    assert frame is not None
    return frame


def test_same_hour_from_each_provider_has_the_identical_schema_and_fixture_values(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    klines = json.loads((FIXTURES / "binance" / "klines_BTCUSDT_2026-01-05T00.json").read_text())
    aggs = json.loads((FIXTURES / "polygon" / "aggs_AAPL_2026-01-05T00.json").read_text())
    monkeypatch.setenv("FIN_API_KEY", POLYGON_KEY)
    with (
        BinanceEmulator(klines={"BTCUSDT": klines}) as binance,
        PolygonEmulator(api_keys={POLYGON_KEY}, results={"AAPL": aggs["results"]}) as polygon,
        MarketSimulator(SimulatorConfig(port=0)) as sim,
    ):
        from_binance = hour_of(binance, "binance", "BTCUSDT", tmp_path / "b", instance)
        from_polygon = hour_of(
            polygon, "polygon", "AAPL", tmp_path / "p", instance, FIN_API_KEY=POLYGON_KEY
        )
        from_sim = hour_of(sim, "simulator", "AAPL", tmp_path / "s", instance)
    for frame in (from_binance, from_polygon, from_sim):
        assert frame.schema == pl.Schema(CANONICAL_SCHEMA)
    assert from_binance.height == 60 and from_sim.height == 60
    assert from_polygon.height == aggs["resultsCount"]  # quiet minutes stay absent
    for row, kline in zip(from_binance.iter_rows(named=True), klines, strict=True):
        assert row["ts"] == datetime.fromtimestamp(kline[0] / 1000, UTC)
        assert [row[c] for c in ("open", "high", "low", "close", "volume")] == [
            float(v) for v in kline[1:6]
        ]
        assert row["trades"] == kline[8] and row["provider"] == "binance"
        assert row["vwap"] == pytest.approx(float(kline[7]) / float(kline[5]))
    for row, bar in zip(from_polygon.iter_rows(named=True), aggs["results"], strict=True):
        assert row["ts"] == datetime.fromtimestamp(bar["t"] / 1000, UTC)
        assert [row[c] for c in ("open", "high", "low", "close", "volume", "vwap", "trades")] == [
            bar[k] for k in ("o", "h", "l", "c", "v", "vw", "n")
        ]
        assert row["provider"] == "polygon"


@pytest.mark.slow(12)
def test_after_a_418_ban_no_process_sends_until_retry_after_has_passed(tmp_path: Path) -> None:
    with BinanceEmulator() as binance:
        banned = json.loads((FIXTURES / "binance" / "error_418.json").read_text())
        binance.inject(418, headers={"Retry-After": "2"}, body=json.dumps(banned).encode())
        # Paced at 5 requests/s between them, so no request is in flight when the ban lands
        # (one already on the wire cannot be called back).
        results = run_workers(
            binance,
            tmp_path / "quota.sqlite",
            10,
            "--provider",
            "binance",
            "--symbol",
            "BTCUSDT",
            "--quota",
            "5",
            workers=2,
        )
        log = binance.request_log()
        stats = binance.stats()
    bans = [e for e in log if e["status"] == 418]
    assert len(bans) == 1
    t_ban = bans[0]["t"]
    sent_during_ban = [e["t"] - t_ban for e in log if t_ban < e["t"] < t_ban + 2.0]
    assert sent_during_ban == []
    assert stats["requests_during_ban"] == 0
    assert sum(r["throttled"] for r in results) == 1
    assert [r["waited"] >= 1.9 for r in results] == [True, True]  # both processes held
    assert len([e for e in log if e["status"] == 200]) == 20


@pytest.mark.slow(25)
def test_polygon_free_plan_day_for_three_symbols_without_429s_and_with_visible_waits(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIN_API_KEY", POLYGON_KEY)
    now = datetime(2026, 1, 6, tzinfo=UTC)
    with PolygonEmulator(api_keys={POLYGON_KEY}, now=now, calls_per_window=5) as polygon:
        env = fin_env(
            polygon,
            tmp_path,
            FIN_PROVIDER="polygon",
            FIN_API_KEY=POLYGON_KEY,
            FIN_SYMBOLS="AAPL,MSFT,NVDA",
        )
        result = run_range(
            build_definitions(env), "bars_hourly_job", DAY[0], DAY[-1], instance=instance
        )
        assert result.success
        assert polygon.stats()["rejected_429"] == 0
        assert polygon.stats()["accepted"] == 3  # one call per symbol-day (50 000-bar pages)
    meta = materialization_metadata(result, ["raw", "bars"])
    assert meta["throttled_429"] == 0
    # 5 calls a minute, paced at SAFETY_RATE: the 2nd and 3rd calls wait 12.0 s each (and the
    # first the arrival-jitter allowance).
    paced = ARRIVAL_JITTER_S + 2 * 60 / (5 * SAFETY_RATE)
    assert meta["seconds_waited"] == pytest.approx(paced, abs=0.5)
    bars = ParquetWarehouse(tmp_path / "warehouse").scan("core_bars", DAY).collect()
    assert sorted(bars["symbol"].unique()) == ["AAPL", "MSFT", "NVDA"]
    assert 0.9 * 3 * 1440 < bars.height < 3 * 1440  # quiet minutes have no bar


def test_polygon_key_never_lands_in_logs_events_metadata_files_or_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    wrong = "pk-wrong-ALSO-SECRET-0007"
    caplog.set_level(logging.DEBUG)
    overrides = {
        "python_logs": {
            "managed_python_loggers": ["fin_assets.client", "httpx", "httpcore"],
            "python_log_level": "DEBUG",
        }
    }
    with (
        PolygonEmulator(api_keys={POLYGON_KEY}) as polygon,
        dg.instance_for_test(overrides=overrides) as instance,
    ):
        polygon.inject(429, body=(FIXTURES / "polygon" / "error_429.json").read_bytes())
        runs = []
        for key, hour, ok in ((POLYGON_KEY, HOUR, True), (wrong, DAY[1], False)):
            monkeypatch.setenv("FIN_API_KEY", key)
            env = fin_env(
                polygon,
                tmp_path,
                FIN_PROVIDER="polygon",
                FIN_API_KEY=key,
                FIN_SYMBOLS="AAPL",
                FIN_QUOTA_REQUESTS="600",
            )
            result = run_range(
                build_definitions(env), "bars_hourly_job", hour, hour, instance=instance
            )
            assert result.success is ok
            runs.append(result)
        (failure,) = step_failure_messages(runs[1])
        assert "HTTP 401 from polygon: Unknown API Key" in failure
        assert_secrets_nowhere(
            (POLYGON_KEY, wrong), data_dir=tmp_path, instance=instance, runs=tuple(runs)
        )
    out, err = capfd.readouterr()
    assert_secrets_not_logged((POLYGON_KEY, wrong), caplog=caplog, output=out + err)


def test_binance_published_limits_are_the_quota_from_the_first_request(tmp_path: Path) -> None:
    """Binance publishes its limits (GET /api/v3/exchangeInfo, "rateLimits", weight 20): read
    by one process of the instance before its first data request, they replace a ceiling
    configured 25x too high and end learn mode's slow start, in every process sharing the
    store, before a single 429. The other processes do not spend 20 weight to read them again."""
    from resources.http.client import MarketApiClient
    from resources.providers import get_adapter
    from resources.ratelimit.pacer import SharedPacer
    from resources.ratelimit.policy import QuotaPolicy
    from resources.ratelimit.stores import SQLiteQuotaStore

    published = QuotaPolicy(600, 60, 1, "Binance exchangeInfo")
    with BinanceEmulator(weight_limit=600) as binance:
        for name, ceiling in (("too-high", QuotaPolicy(15000, 60, 20)), ("learn", None)):
            store = SQLiteQuotaStore(tmp_path / f"{name}.sqlite")
            pacer = SharedPacer(store, name, policy=ceiling)
            other = SharedPacer(SQLiteQuotaStore(tmp_path / f"{name}.sqlite"), name, policy=ceiling)
            with MarketApiClient(
                get_adapter("binance"), base_url=binance.url, pacer=pacer
            ) as client:
                client.latest_bar_time("BTCUSDT")
                assert pacer.active_policy() == published
            assert other.active_policy() == published  # another process reads it from the store
            with MarketApiClient(
                get_adapter("binance"), base_url=binance.url, pacer=other
            ) as second:
                second.latest_bar_time("ETHUSDT")
        paths = [entry["path"] for entry in binance.request_log()]
        assert binance.stats()["rejected_429"] == 0
    read_once = ["/api/v3/exchangeInfo", "/api/v3/klines", "/api/v3/klines"]
    assert [p.split("?")[0] for p in paths] == read_once * 2
