"""``fin-assets demo``: the whole pipeline on embedded defaults, end to end.

Starts the simulator as its own process on a free loopback port, materializes raw/bars and
core/bars for every hour of the chosen days (one single-run backfill) and then the daily
tables, through the real Dagster instance in ``$DAGSTER_HOME`` (default ``.dagster_home/``
in the project), prints what landed where, and stops the simulator. A second run reuses the
stored snapshots: zero requests, identical tables.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _start_simulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fin_assets.cli", "simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    line = proc.stdout.readline()
    while "listening on" not in line:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the simulator did not start (last output: {line!r})")
        line = proc.stdout.readline()
    return proc, line.rsplit(" ", 1)[-1].strip()


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _prepare_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    # The top-level dagster.yaml is the embedded default instance config.
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def table_digest(frame: object) -> str:
    """A content digest of a table, independent of file layout: sorted rows hashed as CSV."""
    import polars as pl

    assert isinstance(frame, pl.DataFrame)
    ordered = frame.sort(frame.columns)
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()[:16]


def run_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fin-assets demo")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 5))
    parser.add_argument("--days", type=int, default=2)
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")

    home = _prepare_home()
    # Imported after DAGSTER_HOME is set: the instance is read from it.
    import warnings

    import dagster as dg

    # The demo's reader wants the summary, not Dagster's beta notices or step-level debug lines.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}

    from fin_assets.definitions import build_definitions
    from resources.tables.core import CORE_BARS_TABLE
    from resources.tables.daily import DAILY_BARS_TABLE, DAILY_RETURNS_TABLE

    first_day, last_day = args.start, args.start + timedelta(days=args.days - 1)
    sim, url = _start_simulator()
    print(f"simulator: {url} (pid {sim.pid})")
    try:
        defs = build_definitions({**os.environ, "FIN_API_BASE_URL": url})
        instance = dg.DagsterInstance.get()
        hourly = defs.resolve_job_def("bars_hourly_job").execute_in_process(
            instance=instance,
            run_config=quiet,
            tags={
                "dagster/asset_partition_range_start": f"{first_day}-00:00",
                "dagster/asset_partition_range_end": f"{last_day}-23:00",
            },
            raise_on_error=False,
        )
        if not hourly.success:
            print("bars_hourly_job failed; see the run in the UI", file=sys.stderr)
            return 1
        daily = defs.resolve_job_def("daily_tables_job").execute_in_process(
            instance=instance,
            run_config=quiet,
            tags={
                "dagster/asset_partition_range_start": str(first_day),
                "dagster/asset_partition_range_end": str(last_day),
            },
            raise_on_error=False,
        )
        if not daily.success:
            print("daily_tables_job failed; see the run in the UI", file=sys.stderr)
            return 1
    finally:
        _stop(sim)
        print("simulator stopped")

    raw_meta = next(
        event.materialization.metadata
        for event in hourly.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey(["raw", "bars"])
    )
    resources = defs.resources
    warehouse = resources["warehouse"].warehouse()  # type: ignore[attr-defined]
    data_dir = resources["snapshots"].root  # type: ignore[attr-defined]
    hours = [
        f"{first_day + timedelta(days=d)}-{h:02d}:00" for d in range(args.days) for h in range(24)
    ]
    days = [str(first_day + timedelta(days=d)) for d in range(args.days)]
    print()
    print(f"fin-assets demo: {first_day} .. {last_day} ({args.days} days)")
    print(f"  symbols          {raw_meta['symbols'].value}")
    print(f"  partitions       {len(hours)} hourly (raw/bars, core/bars), {len(days)} daily")
    print(
        f"  requests         {raw_meta['requests'].value} "
        f"(snapshots written {raw_meta['snapshots_written'].value}, "
        f"reused {raw_meta['snapshots_reused'].value}, retries {raw_meta['retries'].value}, "
        f"429s {raw_meta['throttled_429'].value})"
    )
    print("  table                rows  content digest")
    for table, keys in (
        (CORE_BARS_TABLE, hours),
        (DAILY_BARS_TABLE, days),
        (DAILY_RETURNS_TABLE, days),
    ):
        frame = warehouse.scan(table, keys).collect()
        print(f"  {table:<18} {frame.height:>6}  {table_digest(frame)}")
    print(f"  snapshots        {data_dir}/raw")
    print(f"  warehouse        {warehouse.location}")
    print(f"  dagster home     {home}  (runs {hourly.run_id[:8]}, {daily.run_id[:8]})")
    print("  open the UI      make ui  (then http://127.0.0.1:3000)")
    return 0
