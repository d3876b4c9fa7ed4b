"""Binance and Polygon sources in one deployment, against their emulators, in one run (issue 13).

Both sources' hourly jobs fill the same two hours at once, on one Dagster instance (the
project's dagster.yaml: one step at a time per provider pool) and one quota store. Binance
bans the IP on its first request (418, Retry-After 30 s). Each source is paced by its own quota:
Binance's pause holds every Binance request until the ban is over and no Polygon request, so
Polygon's run is done long before Binance's, paced by Polygon's own quota only.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from fin_assets.definitions import build_definitions
from resources.providers import get_adapter
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import SQLiteQuotaStore, quota_key
from tests.conftest import RANGE_END_TAG, RANGE_START_TAG, materialization_metadata
from tests.emulators.binance import BinanceEmulator, ban_body
from tests.emulators.polygon import PolygonEmulator
from tests.helpers import dagster_home, wait_for

BAN_S = 30
FIRST, LAST = "2026-01-05-15:00", "2026-01-05-16:00"  # Monday, both in an XNYS session
KEY_VARIABLE = "POLYGON_ISOLATION_TEST_KEY"
POLYGON_KEY = "pk-isolation-test-0042"
# Polygon's plan in this deployment: 3 calls per 3 s, so its three symbols are paced ~1 s apart.
POLYGON_CALLS, POLYGON_WINDOW_S = 3, 3.0

SOURCES = {
    "crypto": """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: crypto
  provider: binance
  symbols: [BTCUSDT, ETHUSDT]
  calendar: "24/7"
  base_url: "{binance}"
""",
    "us_stocks": """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: us_stocks
  provider: polygon
  symbols: [AAPL, MSFT, NVDA]
  calendar: XNYS
  base_url: "{polygon}"
  api_key_env: {key_variable}
  quota: {{requests: {calls}, window_seconds: {window_s}}}
  max_quiet_minutes: 10
""",
}


class Timed(threading.Thread):
    """A job run in a thread, and when it returned (epoch seconds)."""

    def __init__(self, run: Callable[[], dg.ExecuteInProcessResult]) -> None:
        super().__init__(daemon=True)
        self._run = run
        self.result: dg.ExecuteInProcessResult | None = None
        self.error: BaseException | None = None
        self.done_at = 0.0

    def run(self) -> None:
        try:
            self.result = self._run()
        except BaseException as exc:  # re-raised by finished()
            self.error = exc
        self.done_at = time.time()

    def finished(self, timeout: float) -> dg.ExecuteInProcessResult:
        self.join(timeout)
        assert not self.is_alive(), f"the run has not finished after {timeout:.0f} s"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@pytest.mark.slow(31)
def test_a_binance_ban_holds_binance_only_and_polygon_is_paced_by_its_own_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, POLYGON_KEY)  # what dg.EnvVar reads in the run
    home = dagster_home(tmp_path / "home")
    store_path = tmp_path / "quota.sqlite"
    with (
        BinanceEmulator() as binance,
        PolygonEmulator(
            api_keys={POLYGON_KEY}, calls_per_window=POLYGON_CALLS, window_s=POLYGON_WINDOW_S
        ) as polygon,
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        root = tmp_path / "sources"
        for name, text in SOURCES.items():
            (root / name).mkdir(parents=True)
            (root / name / "defs.yaml").write_text(
                text.format(
                    binance=binance.url,
                    polygon=polygon.url,
                    key_variable=KEY_VARIABLE,
                    calls=POLYGON_CALLS,
                    window_s=POLYGON_WINDOW_S,
                )
            )
        defs = build_definitions(
            {
                "FIN_SOURCES_DIR": str(root),
                "FIN_DATA_DIR": str(tmp_path / "data"),
                "FIN_QUOTA_STORE": str(store_path),
                "DAGSTER_HOME": str(home),
                KEY_VARIABLE: POLYGON_KEY,
            }
        )

        def hourly_job(source: str) -> Callable[[], dg.ExecuteInProcessResult]:
            job = defs.resolve_job_def(f"{source}__bars_hourly_job")
            return lambda: job.execute_in_process(
                instance=instance,
                tags={RANGE_START_TAG: FIRST, RANGE_END_TAG: LAST},
                raise_on_error=False,
            )

        binance.inject(
            418, headers={"Retry-After": str(BAN_S)}, body=ban_body(int(time.time() + BAN_S) * 1000)
        )
        crypto, stocks = Timed(hourly_job("crypto")), Timed(hourly_job("us_stocks"))
        crypto.start()
        wait_for("Binance's 418", lambda: binance.stats()["bans"], timeout=60, interval=0.05)
        stocks.start()  # while Binance's ban runs
        stocks_result = stocks.finished(timeout=BAN_S + 60)
        crypto_result = crypto.finished(timeout=BAN_S + 120)
        binance_log, polygon_log = binance.request_log(), polygon.request_log()
        binance_stats, polygon_stats = binance.stats(), polygon.stats()
        binance_key = quota_key("binance", binance.url, None)
        polygon_key = quota_key("polygon", polygon.url, POLYGON_KEY)

    (ban,) = [e["t"] for e in binance_log if e["status"] == 418]
    ban_end = ban + BAN_S

    # Polygon: its run finished inside Binance's ban, paced by Polygon's own quota only.
    assert stocks_result.success
    assert stocks.done_at < ban_end, f"Polygon finished {stocks.done_at - ban:.1f} s after the ban"
    sent = [e["t"] for e in polygon_log if e["status"] == 200]
    assert len(sent) == 3 and polygon_stats["rejected_429"] == 0
    assert all(ban < t < ban_end for t in sent)
    interval = POLYGON_WINDOW_S / POLYGON_CALLS
    assert [b - a > 0.9 * interval for a, b in zip(sent, sent[1:], strict=False)] == [True, True]
    stocks_meta = materialization_metadata(stocks_result, ["raw", "us_stocks", "bars"])
    assert stocks_meta["throttled_429"] == stocks_meta["banned_418"] == 0
    assert stocks_meta["seconds_waited"] < 3 * interval  # its own pacing, never the ban

    # Binance: nothing sent until the ban was over, then the range landed.
    assert crypto_result.success
    assert binance_stats["requests_during_ban"] == 0
    # The published limits (exchangeInfo) were asked for first, before the ban; the range's
    # two klines pages only once it was over.
    assert [e["path"] for e in binance_log][0] == "/api/v3/exchangeInfo"
    after = [e["t"] for e in binance_log if e["status"] == 200 and "/klines" in e["path"]]
    assert len(after) == 2 and min(after) >= ban_end - 0.01
    crypto_meta = materialization_metadata(crypto_result, ["raw", "crypto", "bars"])
    assert crypto_meta["throttled_429"] == crypto_meta["banned_418"] == 1
    assert crypto_meta["seconds_waited"] >= BAN_S - 1.0

    # The quota store: one key per provider, endpoint and credential; the ban on Binance's.
    with contextlib.closing(sqlite3.connect(store_path)) as db:
        keys = {row[0] for row in db.execute("SELECT key FROM quota_state")}
    assert keys == {binance_key, polygon_key}
    store = SQLiteQuotaStore(store_path)
    try:
        until, reason = store.paused_until(binance_key)
        assert until == pytest.approx(ban_end, abs=1.0) and "418" in reason
        assert store.paused_until(polygon_key)[0] == 0.0
    finally:
        store.close()
    for path in tmp_path.glob(f"{store_path.name}*"):  # the database, its WAL and index
        assert POLYGON_KEY.encode() not in path.read_bytes()
    # ... and each source's pacer holds its own provider's quota.
    assert defs.resources["market_api__crypto"].policy() == get_adapter("binance").default_quota
    assert defs.resources["market_api__us_stocks"].policy() == QuotaPolicy(
        POLYGON_CALLS, POLYGON_WINDOW_S
    )
