"""Metrics benchmark: what a scrape of ``fin-assets metrics`` costs on a big instance.

    uv run --frozen python benchmarks/metrics_scrape.py [--partitions 10000] [--scrapes 20]

Builds a fresh embedded (SQLite) instance holding ``--partitions`` materialized partitions, as
the FIN_* shorthand source's runs leave them: raw/bars and core/bars, half each, hourly from
2026-01-01, one run per day (24 partitions, each materialization carrying its step's figures:
requests, 429s, waits, rows), the day's core/bars quality checks, the daily tables, a few
failed runs (one killed) and a quota store. Then starts the exporter as its own process, as
the systemd unit does (``fin-assets metrics``, ``--cache-seconds 0`` so every scrape reads
the instance and the quota store again), and measures:

- start-up: from launch to the first answer (loading the definitions, reading the history);
- scrape: ``--scrapes`` GETs of /metrics in a row, each a full reading, wall clock;
- memory: the exporter's resident set after the scrapes, and its peak (VmHWM) over its life.

Targets (the run exits 1 if one is missed): every scrape answers in under 200 ms; the
exporter's peak RSS stays under 120 MiB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.harness import PROJECT_ROOT, Targets, table

SCRAPE_TARGET_S = 0.200
RSS_TARGET_MIB = 120.0
FIRST_HOUR = datetime(2026, 1, 1, tzinfo=UTC)
CHECKS = (
    ("ohlc_invariants", "ERROR"),
    ("unique_symbol_ts", "ERROR"),
    ("positive_prices", "ERROR"),
    ("missing_minutes", "WARN"),
    ("price_jumps", "WARN"),
    ("frozen_prices", "WARN"),
)


def build_instance(home: Path, partitions: int) -> dict[str, int]:
    """An instance with ``partitions`` materialized partitions (see the module docstring)."""
    import dagster as dg
    from dagster._core.events import (
        AssetMaterializationPlannedData,
        DagsterEvent,
        StepMaterializationData,
    )

    raw, core = dg.AssetKey(["raw", "bars"]), dg.AssetKey(["core", "bars"])
    daily = [dg.AssetKey(["core", "daily_bars"]), dg.AssetKey(["core", "daily_returns"])]
    hours = partitions // 2
    counts = {"runs": 0, "events": 0, "failed": 0}
    with dg.DagsterInstance.from_config(str(home)) as instance:

        def event(run: dg.DagsterRun, kind: dg.DagsterEventType, data: object) -> None:
            instance.report_dagster_event(
                DagsterEvent(
                    event_type_value=kind.value,
                    job_name=run.job_name,
                    event_specific_data=data,  # type: ignore[arg-type]
                ),
                run_id=run.run_id,
            )
            counts["events"] += 1

        for day_start in range(0, hours, 24):
            keys = [
                (FIRST_HOUR + timedelta(hours=h)).strftime("%Y-%m-%d-%H:%M")
                for h in range(day_start, min(day_start + 24, hours))
            ]
            day = keys[0][:10]
            failed = day_start // 24 % 50 == 7  # a few failed runs, every 50th day
            run = dg.DagsterRun(
                job_name="bars_hourly_job",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.FAILURE if failed else dg.DagsterRunStatus.SUCCESS,
                tags={
                    "dagster/asset_partition_range_start": keys[0],
                    "dagster/asset_partition_range_end": keys[-1],
                },
            )
            instance.add_run(run)
            counts["runs"] += 1
            for key in (raw, core):
                for partition in keys:
                    event(
                        run,
                        dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                        AssetMaterializationPlannedData(key, partition=partition),
                    )
            if failed:
                counts["failed"] += 1
                instance.report_engine_event(
                    f"Run execution process for {run.run_id} was terminated by signal 9 (SIGKILL).",
                    run,
                )
                instance.report_run_failed(run)
                continue
            step = {
                "first_partition": keys[0],
                "last_partition": keys[-1],
                "partitions": len(keys),
                "source": "default",
                "provider": "simulator",
            }
            figures = {
                "requests": 10,
                "retries": 1,
                "throttled_429": 1,
                "banned_418": 0,
                "seconds_waited": 2.5,
                "bytes_received": 800_000,
                "rows": len(keys) * 300,
            }
            for key, metadata in ((raw, {**step, **figures}), (core, {**step, "rows": 7200})):
                for partition in keys:
                    event(
                        run,
                        dg.DagsterEventType.ASSET_MATERIALIZATION,
                        StepMaterializationData(
                            dg.AssetMaterialization(key, partition=partition, metadata=metadata)
                        ),
                    )
            for name, severity in CHECKS:
                event(
                    run,
                    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                    dg.AssetCheckEvaluation(
                        asset_key=core,
                        check_name=name,
                        passed=True,
                        severity=dg.AssetCheckSeverity(severity),
                        metadata={"rows": 7200},
                    ),
                )
            for key in daily:
                event(
                    run,
                    dg.DagsterEventType.ASSET_MATERIALIZATION,
                    StepMaterializationData(
                        dg.AssetMaterialization(
                            key,
                            partition=day,
                            metadata={"first_partition": day, "last_partition": day, "rows": 5},
                        )
                    ),
                )
    return counts


def build_quota_store(path: Path, base_url: str) -> None:
    from resources.ratelimit.pacer import SharedPacer
    from resources.ratelimit.policy import QuotaPolicy
    from resources.ratelimit.stores import SQLiteQuotaStore, quota_key

    store = SQLiteQuotaStore(path)
    pacer = SharedPacer(store, quota_key("simulator", base_url, None), policy=QuotaPolicy(20, 1))
    for _ in range(10):
        pacer.reserve()
    store.close()


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


def scrape(port: int) -> tuple[float, bytes]:
    began = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        body = response.read()
    return time.perf_counter() - began, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args(argv)
    from tests.helpers import dagster_home, free_port, stop_process

    # Built on tmpfs when there is one (each event is a SQLite transaction: on a disk, fsync
    # makes 20,000 of them take minutes), then copied to disk, where the exporter reads it.
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with (
        tempfile.TemporaryDirectory(prefix="bench-metrics-", dir=scratch) as built,
        tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp,
    ):
        base_url = "http://127.0.0.1:9"  # nothing is fetched: the shorthand source's address
        began = time.perf_counter()
        counts = build_instance(dagster_home(Path(built) / "home"), args.partitions)
        build_quota_store(Path(built) / "quota.sqlite", base_url)
        shutil.copytree(built, tmp, dirs_exist_ok=True)
        home = Path(tmp) / "home"
        built_s = time.perf_counter() - began
        port = free_port()
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "FIN_API_BASE_URL": base_url,
            "FIN_DATA_DIR": str(Path(tmp) / "data"),
            "FIN_QUOTA_STORE": str(Path(tmp) / "quota.sqlite"),
        }
        command = [
            *(sys.executable, "-m", "fin_assets.tools.cli", "metrics"),
            *("--port", str(port), "--cache-seconds", "0"),
        ]
        log = (Path(tmp) / "exporter.log").open("w")
        started = time.perf_counter()
        exporter = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            while True:
                if exporter.poll() is not None:
                    raise RuntimeError((Path(tmp) / "exporter.log").read_text()[-3000:])
                try:
                    first_s, body = scrape(port)
                    break
                except OSError:
                    time.sleep(0.05)
            startup_s = time.perf_counter() - started
            times = [scrape(port)[0] for _ in range(args.scrapes)]
            rss, peak = rss_mib(exporter.pid)
        finally:
            stop_process(exporter)
            log.close()
    text = body.decode()
    requests = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("fin_assets_api_requests_total{")
    )
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    print(
        f"instance: {args.partitions} materialized partitions, {counts['runs']} runs, "
        f"{counts['events']} events, built in {built_s:.0f} s; /metrics: {series} series, "
        f"{len(body) / 1024:.0f} KiB"
    )
    print()
    print(
        table(
            ["measure", "value"],
            [
                ["start-up to the first answer (definitions + history), s", f"{startup_s:.2f}"],
                ["first scrape, ms", f"{first_s * 1000:.1f}"],
                [f"scrape, median of {len(times)}, ms", f"{statistics.median(times) * 1000:.1f}"],
                ["scrape, slowest, ms", f"{max(times) * 1000:.1f}"],
                ["RSS after the scrapes, MiB", f"{rss:.1f}"],
                ["peak RSS (VmHWM), MiB", f"{peak:.1f}"],
            ],
        )
    )
    print()
    targets = Targets()
    expected = counts["runs"] - counts["failed"]
    targets.check(
        "the history is counted (raw/bars requests = 10 per successful run)",
        requests == 10 * expected,
        f"{requests:g} (expected {10 * expected})",
    )
    slowest = max([first_s, *times])
    targets.check(
        f"every scrape < {SCRAPE_TARGET_S * 1000:.0f} ms",
        slowest < SCRAPE_TARGET_S,
        f"slowest {slowest * 1000:.1f} ms",
    )
    targets.check(
        f"exporter peak RSS < {RSS_TARGET_MIB:.0f} MiB",
        peak < RSS_TARGET_MIB,
        f"{peak:.1f} MiB",
    )
    return targets.report()


if __name__ == "__main__":
    raise SystemExit(main())
