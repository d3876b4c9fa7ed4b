"""``fin-assets demo``: the whole pipeline on embedded defaults, end to end.

Starts the simulator as its own process on its usual loopback port (8765; a free one when that
is taken), serving every declared
source's market (``us_equities`` on the XNYS calendar, ``crypto`` around the clock), then, for
each source, materializes raw/bars and core/bars for every partition of the chosen days (one
single-run backfill: session hours only on an exchange calendar) and then the daily tables,
through the real Dagster instance in ``$DAGSTER_HOME`` (default ``.dagster_home/`` in the
project), prints one summary per source, and stops the simulator. A second run reuses the
stored snapshots: zero requests, identical tables (snapshots are kept per endpoint, so only a
run on the same port reuses them).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fin_assets.lib.catalog import simulator_calendar_args

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_PORT = 8765  # the simulator's default base URL (resources/simulator/adapter.py)


def _demo_port() -> int:
    """The simulator's usual port when it is free, else 0 (any): the snapshots of a demo are
    kept per endpoint (resources/endpoints.py), so a second demo reuses them only on the same
    port."""
    with socket.socket() as probe:
        # As the simulator's server binds: a port left in TIME_WAIT by the last demo is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", DEMO_PORT))
        except OSError:
            return 0
    return DEMO_PORT


def _start_simulator(
    markets: Mapping[str, tuple[str, tuple[str, ...]]],
) -> tuple[subprocess.Popen[str], str]:
    calendars = simulator_calendar_args(dict(markets))
    port = str(_demo_port())
    proc = subprocess.Popen(
        [sys.executable, "-m", "fin_assets.tools.cli", "simulator", "--port", port, *calendars],
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
    # Friday 2026-01-16 .. Tuesday 2026-01-20: a weekend, and Monday 2026-01-19 is an XNYS
    # holiday (Martin Luther King Jr. Day): no equities partition there, crypto all through.
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 16))
    parser.add_argument("--days", type=int, default=5)
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")

    home = _prepare_home()
    # Imported after DAGSTER_HOME is set: the instance is read from it.
    import warnings

    import dagster as dg

    # The demo's reader wants the summary, not Dagster's beta notices or step-level debug lines.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}

    from fin_assets.definitions import build_definitions
    from fin_assets.lib.catalog import declared_markets
    from fin_assets.lib.settings import SHORTHAND_VARIABLES

    first_day, last_day = args.start, args.start + timedelta(days=args.days - 1)
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    end = start + timedelta(days=args.days)
    # The declared sources (not a FIN_* shorthand source), pointed at this demo's simulator.
    env = {k: v for k, v in os.environ.items() if k not in SHORTHAND_VARIABLES}
    markets = declared_markets(env)
    sim, url = _start_simulator(markets)
    print(f"simulator: {url} (pid {sim.pid})")
    summaries = []
    try:
        os.environ["FIN_SIMULATOR_URL"] = env["FIN_SIMULATOR_URL"] = url
        defs = build_definitions(env)
        instance = dg.DagsterInstance.get()
        for source in markets:
            summary = _materialize_source(
                defs, instance, source, start=start, end=end, run_config=quiet
            )
            if summary is None:
                return 1
            summaries.append(summary)
    finally:
        _stop(sim)
        print("simulator stopped")
    print()
    print(f"fin-assets demo: {first_day} .. {last_day} ({args.days} days), dagster home {home}")
    for lines in summaries:
        print()
        print("\n".join(lines))
    print()
    print("open the UI: make ui  (then http://127.0.0.1:3000)")
    return 0


def _materialize_source(
    defs: object,
    instance: object,
    source: str,
    *,
    start: datetime,
    end: datetime,
    run_config: Mapping[str, object],
) -> list[str] | None:
    """One source's backfill over [start, end): its corporate actions first (as the daily
    schedule fetches them before the open, so the checks of the bars know the splits), its
    hourly job, its daily job, then the adjusted series; the lines of its summary, or None if a
    run failed."""
    import dagster as dg

    from resources.tables.core import CORE_BARS_TABLE
    from resources.tables.daily import DAILY_BARS_TABLE, DAILY_RETURNS_TABLE
    from resources.tables.intervals import INTERVALS, interval_table

    assert isinstance(defs, dg.Definitions) and isinstance(instance, dg.DagsterInstance)
    if not _materialize_actions(defs, instance, source, ACTIONS_FIRST, run_config=run_config):
        return None
    window = dg.TimeWindow(start, end)
    runs = []
    keys: dict[str, list[str]] = {}
    for kind, job_name in (("hourly", "bars_hourly_job"), ("daily", "daily_tables_job")):
        job = defs.resolve_job_def(f"{source}__{job_name}")
        partitions_def = job.partitions_def
        assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
        keys[kind] = list(partitions_def.get_partition_keys_in_time_window(window))
        if not keys[kind]:
            continue
        result = job.execute_in_process(
            instance=instance,
            run_config=dict(run_config),
            tags={
                "dagster/asset_partition_range_start": keys[kind][0],
                "dagster/asset_partition_range_end": keys[kind][-1],
            },
            raise_on_error=False,
        )
        if not result.success:
            print(f"{job.name} failed; see run {result.run_id} in the UI", file=sys.stderr)
            return None
        runs.append(result)
    raw_key = dg.AssetKey(["raw", source, "bars"])
    raw_meta = next(  # the run's figures are on its last partition (assets/common.py)
        event.materialization.metadata
        for event in runs[0].get_asset_materialization_events()
        if event.asset_key == raw_key and event.partition == keys["hourly"][-1]
    )
    resources = defs.resources
    assert resources is not None  # the code location binds its resources (definitions.py)
    warehouse = resources["warehouse"].warehouse()
    data_dir = resources["snapshots"].root
    lines = [
        f"source {source}",
        f"  symbols          {raw_meta['symbols'].value}",
        f"  partitions       {len(keys['hourly'])} hourly (raw/{source}/bars, core/{source}/bars), "
        f"{len(keys['daily'])} daily",
        f"  requests         {raw_meta['requests'].value} "
        f"(snapshots written {raw_meta['snapshots_written'].value}, "
        f"reused {raw_meta['snapshots_reused'].value}, retries {raw_meta['retries'].value}, "
        f"429s {raw_meta['throttled_429'].value})",
        "  table                              rows  content digest",
    ]
    # The interval tables the source declares (its defs.yaml `intervals:`), beside core/bars.
    interval_bases = [
        interval_table(CORE_BARS_TABLE, interval)
        for interval in INTERVALS
        if warehouse.partition_keys(f"{source}__{interval_table(CORE_BARS_TABLE, interval)}")
    ]
    for base, table_keys in (
        (CORE_BARS_TABLE, keys["hourly"]),
        *((base, keys["hourly"]) for base in interval_bases),
        (DAILY_BARS_TABLE, keys["daily"]),
        (DAILY_RETURNS_TABLE, keys["daily"]),
    ):
        table = f"{source}__{base}"
        frame = warehouse.scan(table, table_keys).collect()
        lines.append(f"  {table:<32} {frame.height:>6}  {table_digest(frame)}")
    adjusted = _materialize_actions(defs, instance, source, ADJUSTED_AFTER, run_config=run_config)
    if adjusted is None:
        return None
    lines += adjusted(warehouse, start.date(), (end - timedelta(days=1)).date())
    lines.append(f"  snapshots        {data_dir}/raw")
    lines.append(f"  warehouse        {warehouse.location}")
    lines.append(f"  runs             {', '.join(r.run_id[:8] for r in runs)}")
    return lines


ACTIONS_FIRST = (("raw", "corporate_actions"), ("core", "corporate_actions"))
ADJUSTED_AFTER = tuple(
    ("core", name) for name in ("adjustment_factors", "adjusted_daily_bars", "daily_total_returns")
)


def _materialize_actions(
    defs: object,
    instance: object,
    source: str,
    assets: tuple[tuple[str, str], ...],
    *,
    run_config: Mapping[str, object],
) -> Callable[[object, date, date], list[str]] | None:
    """``assets`` (layer, name) of an equities source's corporate actions and adjusted series
    (what the daily schedule and automation do in a deployment); the function giving their
    summary lines, or None if the run failed. A source without corporate actions (crypto) runs
    nothing and gives no line."""
    import dagster as dg
    import polars as pl

    assert isinstance(defs, dg.Definitions) and isinstance(instance, dg.DagsterInstance)
    names = {job.name for job in defs.jobs or () if hasattr(job, "name")}
    if f"{source}__corporate_actions_job" not in names:
        return lambda *_: []
    selection = [dg.AssetKey([layer, source, name]) for layer, name in assets]
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        run_config=dict(run_config),
        asset_selection=selection,
        raise_on_error=False,
    )
    if not result.success:
        print(f"corporate actions of {source} failed; see run {result.run_id}", file=sys.stderr)
        return None

    def summary(warehouse: object, first: date, last: date) -> list[str]:
        from resources.tables.adjustment import CORPORATE_ACTIONS_TABLE, TOTAL_RETURNS_TABLE

        actions = warehouse.read_table(f"{source}__{CORPORATE_ACTIONS_TABLE}")  # type: ignore[attr-defined]
        returns = warehouse.read_table(f"{source}__{TOTAL_RETURNS_TABLE}")  # type: ignore[attr-defined]
        if actions is None or returns is None:
            return []
        lines = [f"  corporate actions {actions.height} (run {result.run_id[:8]}); in the window:"]
        window = actions.filter(pl.col("ex_date").is_between(first, last)).sort("ex_date", "symbol")
        for action in window.to_dicts():
            row = returns.filter(
                (pl.col("symbol") == action["symbol"]) & (pl.col("date") == action["ex_date"])
            )
            what = (
                f"{action['split_to']:g}-for-{action['split_from']:g} split"
                if action["kind"] == "split"
                else f"dividend {action['cash_amount']:g} {action['currency'] or ''}".rstrip()
            )
            if row.is_empty():
                lines.append(f"    {action['symbol']:<5} {action['ex_date']} {what}")
                continue
            r = row.row(0, named=True)
            lines.append(
                f"    {action['symbol']:<5} {action['ex_date']} {what:<22} close "
                f"{r['prev_close']:g} -> {r['close']:g}: total return {r['total_return']:+.2%} "
                f"(price {r['price_return']:+.2%})"
            )
        return lines

    return summary
