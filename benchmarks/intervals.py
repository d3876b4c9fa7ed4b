"""What the interval tables add to a backfill: a 30-day range with and without 5m, 15m and 1h.

    uv run --frozen python benchmarks/intervals.py [--days 30] [--symbols BTCUSD,ETHUSD]

Two deployments of one 24/7 source on the simulator (its own process, no quota), each with a
fresh Dagster instance, data directory and quota store, differing only in ``intervals:`` of
the source's YAML: none, and ``[5m, 15m, 1h]``. Each runs the command a user runs for a range,
in its own process::

    fin-assets backfill --select raw/bench/bars,core/bench/bars[,core/bench/bars_5m,...] \\
        --partition-range <first>-00:00...<last>-23:00

(one single run for the range, checks included). The two run in turn, the bare one first and
then the other, ``--repeat`` times; the best wall time of each counts. Before it counts, a
run must succeed and leave every interval table with its rows (checked).

Target (the run exits 1 if it is missed): the interval tables add at most 20 % to the wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from benchmarks.harness import Targets, start_simulator, stop_process, table
from tests.helpers import dagster_home

FIRST_DAY = date(2026, 1, 5)
SOURCE_YAML = """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: bench
  provider: simulator
  symbols: [{symbols}]
  calendar: "24/7"
  base_url: "{url}"
  partitions_start: "{first}"
  intervals: [{intervals}]
"""
INTERVALS = ("5m", "15m", "1h")


def run(root: Path, url: str, symbols: list[str], days: int, intervals: tuple[str, ...]) -> float:
    sources = root / "sources" / "bench"
    sources.mkdir(parents=True)
    (sources / "defs.yaml").write_text(
        SOURCE_YAML.format(
            symbols=", ".join(symbols), url=url, first=FIRST_DAY, intervals=", ".join(intervals)
        )
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FIN_")},
        "DAGSTER_HOME": str(dagster_home(root / "home")),
        "FIN_SOURCES_DIR": str(root / "sources"),
        "FIN_DATA_DIR": str(root / "data"),
        "FIN_QUOTA_STORE": str(root / "quota.sqlite"),
    }
    last = FIRST_DAY + timedelta(days=days - 1)
    select = ",".join(
        ["raw/bench/bars", "core/bench/bars", *(f"core/bench/bars_{i}" for i in intervals)]
    )
    command = [
        sys.executable,
        "-m",
        "fin_assets.tools.cli",
        "backfill",
        "--select",
        select,
        "--partition-range",
        f"{FIRST_DAY}-00:00...{last}-23:00",
    ]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"backfill failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    for interval in intervals:
        rows = pl.scan_parquet(root / "data" / "warehouse" / f"bench__core_bars_{interval}").select(
            pl.len()
        )
        expected = days * len(symbols) * 24 * 60 // {"5m": 5, "15m": 15, "1h": 60}[interval]
        assert rows.collect().item() == expected, (interval, rows.collect().item(), expected)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--symbols", default="BTCUSD,ETHUSD")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    symbols = args.symbols.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        sim, url = start_simulator(log_path=Path(tmp) / "simulator.log")
        try:
            bare, with_intervals = [], []
            for attempt in range(args.repeat):
                bare.append(run(Path(tmp) / f"bare-{attempt}", url, symbols, args.days, ()))
                with_intervals.append(
                    run(Path(tmp) / f"intervals-{attempt}", url, symbols, args.days, INTERVALS)
                )
        finally:
            stop_process(sim)
    base, ours = min(bare), min(with_intervals)
    added = ours / base - 1
    print(f"{args.days}-day backfill of {len(symbols)} 24/7 symbols, best of {args.repeat}")
    print(
        table(
            ["deployment", "seconds", "vs without"],
            [
                ["raw/bars, core/bars (without intervals)", f"{base:.1f}", "1.00x"],
                [
                    "+ bars_5m, bars_15m, bars_1h",
                    f"{ours:.1f}",
                    f"{ours / base:.2f}x",
                ],
            ],
        )
    )
    targets = Targets()
    targets.check("the interval tables add at most 20 %", added <= 0.20, f"{added:+.1%}")
    return targets.report()


if __name__ == "__main__":
    raise SystemExit(main())
