"""The fault campaign: each simulator fault switch, and a provider whose data lags, then the same
backfill with the faults gone; every stored row compared with the simulator's own bars.

What must hold, whatever the fault: a faulty run is either exact or failed naming provider,
symbol and partition — never green with missing rows — and the clean re-run is exact, with no
duplicate. The table of outcomes is printed to the test log (``pytest -s`` or ``-rA`` shows it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fin_assets.definitions import build_definitions
from resources.providers.decoding import BAR_SCHEMA
from resources.simulator.adapter import SimulatorAdapter
from resources.simulator.data import generate_bars
from resources.simulator.faults import FAULT_NAMES, FaultSpec
from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.parquet import ParquetWarehouse
from tests.conftest import fin_env, run_range, step_failure_messages

DAY = datetime(2026, 1, 5, tzinfo=UTC)
HOURS = 6
FIRST, LAST = "2026-01-05-00:00", "2026-01-05-05:00"
SYMBOLS = ("AAPL", "MSFT", "NVDA")
LAG_AT = DAY + timedelta(hours=3, minutes=30)  # the lagging provider's data ends here


@dataclass(frozen=True)
class Case:
    name: str
    faults: dict[str, FaultSpec]
    latency_ms: int = 0
    lagging: bool = False


CASES = [
    *(Case(name, {name: FaultSpec(rate=0.4)}) for name in FAULT_NAMES),
    Case("latency 150 ms", {}, latency_ms=150),
    Case("error storm", {"server_error": FaultSpec(rate=0.6), "truncated_body": FaultSpec(0.2)}),
    Case("lagging provider", {}, lagging=True),
]
REPORT: list[tuple[str, str, int, int, int, int]] = []


def simulator_config(**overrides: object) -> SimulatorConfig:
    # Small pages: 6 requests per symbol, so every fault has requests to hit.
    settings = {"port": 0, "page_limit_max": 60, "fault_retry_after_s": 1, **overrides}
    return SimulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def healthy() -> Iterator[MarketSimulator]:
    with MarketSimulator(simulator_config()) as sim:
        yield sim


@pytest.fixture(scope="module")
def lagging() -> Iterator[MarketSimulator]:
    with MarketSimulator(simulator_config(now=LAG_AT)) as sim:
        yield sim


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    lines = [f"{'fault':<18} {'rc':>3} {'rows expected':>13} {'got':>6} {'requests':>8}  re-run"]
    lines += [
        f"{name:<18} {rc:>3} {want:>13} {got:>6} {requests:>8}  {rerun}"
        for name, rc, want, got, requests, rerun in REPORT  # type: ignore[misc]
    ]
    print("\nfault campaign\n" + "\n".join(lines))


def expected_bars() -> pl.DataFrame:
    adapter = SimulatorAdapter()
    frames = []
    for symbol in SYMBOLS:
        bars = generate_bars(symbol, DAY, DAY + timedelta(hours=HOURS))
        window = {"start": f"{DAY:%Y-%m-%dT%H:%MZ}", "end": "x"}
        body = json.dumps({"window": window, "bars": bars, "next_cursor": None}).encode()
        frames.append(adapter.parse_bars(body, symbol=symbol).frame)
    return pl.concat(frames).sort("symbol", "ts")


def stored_bars(data: Path) -> pl.DataFrame:
    warehouse = ParquetWarehouse(data / "warehouse")
    keys = [f"2026-01-05-{h:02d}:00" for h in range(HOURS)]
    present = [k for k in keys if warehouse.read_partition("core_bars", k) is not None]
    if not present:
        return pl.DataFrame(schema=BAR_SCHEMA)
    return (
        warehouse.scan("core_bars", present).collect().select(list(BAR_SCHEMA)).sort("symbol", "ts")
    )


def backfill(
    sim: MarketSimulator, data: Path, instance: dg.DagsterInstance
) -> tuple[bool, list[str], int]:
    env = fin_env(
        sim,
        data,
        FIN_SYMBOLS=",".join(SYMBOLS),
        FIN_MAX_WAIT_SECONDS="30",
        # A lagging window fails at once here, naming the watermark (in production it is
        # tried again FIN_LATE_DATA_RETRIES times first).
        FIN_LATE_DATA_RETRIES="0",
    )
    before = sim.stats()["requests"]
    result = run_range(build_definitions(env), "bars_hourly_job", FIRST, LAST, instance=instance)
    return result.success, step_failure_messages(result), sim.stats()["requests"] - before


@pytest.mark.slow(20)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_faulty_backfill_is_exact_or_fails_by_name_and_the_clean_rerun_is_exact(
    case: Case,
    healthy: MarketSimulator,
    lagging: MarketSimulator,
    tmp_path: Path,
) -> None:
    expected = expected_bars()
    faulty = lagging if case.lagging else healthy
    healthy.reset()
    faulty.reset()
    faulty.set_faults(case.faults, latency_ms=case.latency_ms)
    data = tmp_path / "data"
    with dg.instance_for_test() as instance:
        ok, failures, requests = backfill(faulty, data, instance)
        got = stored_bars(data)
        faulty.set_faults({}, latency_ms=0)
        if ok:
            # Green means complete: every row, exactly.
            assert_frame_equal(got, expected, check_exact=True)
        else:
            assert failures, "a failed run says why"
            message = failures[0]
            assert "simulator" in message, message
            assert "symbol " in message and "partition" in message, message
        if case.lagging:
            assert not ok, "a window the provider has not published must not land as a success"
            assert "2026-01-05T03:30Z" in failures[0], failures[0]

        # The provider healthy again (the lagging one caught up): the same backfill, exact.
        rerun_ok, rerun_failures, _ = backfill(healthy, data, instance)
        assert rerun_ok, rerun_failures
        stored = stored_bars(data)
        assert stored.select("symbol", "ts").is_duplicated().sum() == 0
        assert_frame_equal(stored, expected, check_exact=True)
    REPORT.append((case.name, 0 if ok else 1, expected.height, got.height, requests, "exact"))
