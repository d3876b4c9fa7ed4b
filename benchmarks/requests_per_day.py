"""Requests benchmark: how many API requests one backfilled symbol-day costs, per provider.

    uv run --frozen python benchmarks/requests_per_day.py [--days 1,7] [--symbols 5]

For each provider (the simulator, and the Binance and Polygon dialects on their loopback
emulators from ``tests/emulators``, Polygon with its per-minute quota switched off), a range run
of ``bars_hourly_job`` (raw/bars + core/bars, ``BackfillPolicy.single_run()``) over 1 and 7 days
of hourly partitions, through the real definitions, client and adapter, on an ephemeral Dagster
instance with a fresh data directory, exactly as ``dagster asset materialize --partition-range``
runs it. Requests are counted by the server (its own request counter for the bars endpoint),
next to the naive way: the same client fetching one request per hourly partition and symbol
(``ingest_bars`` over each hour alone), counted the same way, over the first day.

Targets (the run exits 1 if one is missed), per provider and range:
- the range run needs at most the contiguous minimum: ceil(minutes / page limit) requests per
  symbol, so at most ceil(1440 / page limit) per symbol-day (2 at 1000 bars, 1 at 50 000);
- it wrote every hour's core/bars partition, from the bars it fetched.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import Targets, table

FIRST_DAY = datetime(2026, 1, 5, tzinfo=UTC)
POLYGON_KEY = "bench-polygon-key"
SYMBOLS = {
    "simulator": ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "NFLX"],
    "binance": ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT"],
    "polygon": ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "NFLX"],
}


@dataclass(frozen=True)
class Provider:
    name: str
    server: Callable[[], Any]  # a context manager serving the dialect on loopback
    bar_requests: Callable[[Any], int]  # the server's count of bar requests so far
    env: dict[str, str]


def providers() -> list[Provider]:
    # Imported here: the emulators are test code, and only this benchmark needs them.
    from resources.simulator.server import MarketSimulator, SimulatorConfig
    from tests.emulators.binance import BinanceEmulator
    from tests.emulators.polygon import PolygonEmulator

    return [
        Provider(
            "simulator",
            lambda: MarketSimulator(SimulatorConfig(port=0)),
            lambda server: server.stats()["requests_by_path"].get("/v1/bars", 0),
            {},
        ),
        Provider(
            "binance",
            BinanceEmulator,  # its documented weight limit; the client paces under it
            lambda server: server.stats()["klines_requests"],
            {},
        ),
        Provider(
            "polygon",
            lambda: PolygonEmulator(api_keys={POLYGON_KEY}, calls_per_window=None),
            lambda server: server.stats()["aggs_requests"],
            # A paid plan's quota: the free plan's 5 calls a minute would only add waiting.
            {
                "FIN_API_KEY": POLYGON_KEY,
                "FIN_QUOTA_REQUESTS": "100",
                "FIN_QUOTA_WINDOW_SECONDS": "1",
            },
        ),
    ]


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The polygon key travels as dg.EnvVar: it must be in os.environ while the run runs."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Result:
    provider: str
    page_limit: int
    days: int
    symbols: int
    requests: int
    bars: int
    partitions_written: int
    naive_requests: int | None = None  # over the first day

    @property
    def symbol_days(self) -> int:
        return self.days * self.symbols

    @property
    def per_symbol_day(self) -> float:
        return self.requests / self.symbol_days

    @property
    def minimum(self) -> int:
        """Contiguous windows with the largest page: ceil(minutes / limit) per symbol."""
        return self.symbols * math.ceil(self.days * 1440 / self.page_limit)


def range_run(provider: Provider, server: Any, days: int, symbols: list[str], tmp: Path) -> Result:
    import dagster as dg

    from fin_assets.definitions import build_definitions
    from resources.providers import get_adapter
    from resources.storage.parquet import ParquetWarehouse

    data = tmp / f"{provider.name}-{days}d"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FIN_")},
        "FIN_PROVIDER": provider.name,
        "FIN_API_BASE_URL": server.url,
        "FIN_SYMBOLS": ",".join(symbols),
        "FIN_DATA_DIR": str(data),
        "FIN_QUOTA_STORE": str(data / "quota.sqlite"),
        **provider.env,
    }
    last = FIRST_DAY + timedelta(days=days) - timedelta(hours=1)
    before = provider.bar_requests(server)
    with environment(provider.env), dg.DagsterInstance.ephemeral() as instance:
        result = (
            build_definitions(env)
            .resolve_job_def("bars_hourly_job")
            .execute_in_process(
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": f"{FIRST_DAY:%Y-%m-%d-%H:%M}",
                    "dagster/asset_partition_range_end": f"{last:%Y-%m-%d-%H:%M}",
                },
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
                raise_on_error=True,
            )
        )
    requests = provider.bar_requests(server) - before
    raw = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "bars"])
    )
    written = ParquetWarehouse(data / "warehouse").partition_keys("core_bars")
    return Result(
        provider.name,
        get_adapter(provider.name).page_limit,
        days,
        len(symbols),
        requests,
        int(raw["rows"].value),
        len(written),
    )


def naive_requests(provider: Provider, server: Any, symbols: list[str], tmp: Path) -> int:
    """One request per hourly partition and symbol: each hour fetched on its own."""
    from fin_assets.lib.resources import MarketApiResource
    from resources.raw.ingest import ingest_bars
    from resources.raw.snapshots import SnapshotStore

    store = SnapshotStore(tmp / f"{provider.name}-naive")
    quota = provider.env.get("FIN_QUOTA_REQUESTS")
    resource = MarketApiResource(
        provider=provider.name,
        base_url=server.url,
        api_key=provider.env.get("FIN_API_KEY"),
        quota_requests=float(quota) if quota else None,
        quota_window_s=float(provider.env.get("FIN_QUOTA_WINDOW_SECONDS", "1")),
        quota_store=str(tmp / f"{provider.name}-naive.sqlite"),
    )
    before = provider.bar_requests(server)
    with resource.client() as client:
        for hour in range(24):
            start = FIRST_DAY + timedelta(hours=hour)
            ingest_bars(client, store, symbols, start=start, end=start + timedelta(hours=1))
    return provider.bar_requests(server) - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", default="1,7", help="comma-separated range lengths in days")
    parser.add_argument("--symbols", type=int, default=5, help="symbols per provider (max 7)")
    args = parser.parse_args(argv)
    lengths = sorted({int(d) for d in args.days.split(",") if d.strip()})
    if not lengths or lengths[0] < 1 or not 1 <= args.symbols <= 7:
        parser.error("--days needs positive day counts; --symbols 1..7")
    import dagster as dg

    # Dagster's notices about APIs the definitions use are not what this benchmark reports.
    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)
    began = time.monotonic()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="fin-assets-bench-requests-") as tmp_name:
        tmp = Path(tmp_name)
        for provider in providers():
            symbols = SYMBOLS[provider.name][: args.symbols]
            with provider.server() as server:
                naive = naive_requests(provider, server, symbols, tmp)
                for days in lengths:
                    results.append(range_run(provider, server, days, symbols, tmp))
                    results[-1].naive_requests = naive
                    print(
                        f"  {provider.name:<9} {days:>2} d: {results[-1].requests} requests",
                        flush=True,
                    )
    print()
    print(
        table(
            [
                "provider",
                "page limit",
                "range",
                "symbol-days",
                "requests",
                "requests / symbol-day",
                "naive / symbol-day",
                "fewer requests",
                "bars / request",
            ],
            [
                [
                    r.provider,
                    f"{r.page_limit}",
                    f"{r.days} d",
                    f"{r.symbol_days}",
                    f"{r.requests}",
                    f"{r.per_symbol_day:.2f}",
                    f"{(r.naive_requests or 0) / r.symbols:.2f}",
                    f"{(r.naive_requests or 0) / r.symbols / r.per_symbol_day:.1f}x",
                    f"{r.bars / r.requests:.0f}",
                ]
                for r in results
            ],
        )
    )
    print()
    print(
        "naive: one request per hourly partition and symbol, counted by the same server over "
        "the first day; bars / request counts bars (Polygon has none for quiet minutes)"
    )
    print()
    targets = Targets()
    for r in results:
        bound = math.ceil(1440 / r.page_limit)
        targets.check(
            f"{r.provider} {r.days} d: requests <= contiguous minimum ceil(minutes / "
            f"{r.page_limit}) per symbol = {r.minimum} (<= {bound} per symbol-day)",
            r.requests <= r.minimum and r.per_symbol_day <= bound,
            f"{r.requests} ({r.per_symbol_day:.2f} per symbol-day)",
        )
        targets.check(
            f"{r.provider} {r.days} d: every hourly core/bars partition written",
            r.partitions_written == 24 * r.days and r.bars > 0,
            f"{r.partitions_written} partitions, {r.bars} bars",
        )
    code = targets.report()
    print(f"\nruntime {time.monotonic() - began:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
