"""History benchmark: a year of 1-minute bars from Binance's bulk archive vs from its REST API.

    uv run --frozen python benchmarks/history.py [--days 365] [--symbols 20] [--rest-days 365]

The raw layer the raw/bars asset calls (``fetch_raw_bars``) fills hourly partitions of
2025-01-01 onwards (``--days``, microsecond-era files) for ``--symbols`` Binance symbols, with
``now`` fixed after the range so every day is archived, into a fresh snapshot store on disk.
Three runs, each in its own process (this file in ``--child`` mode):

- ``archive, month``: the first 31 days (January 2025) with ``BinanceVision`` and
  ``archive_use=auto``, the asset's default: one monthly zip per symbol, CHECKSUM verified;
- ``archive, range``: the same over the whole range (a year by default);
- ``REST``: no archive, ``GET /api/v3/klines`` with the provider's largest page (1000 bars)
  through ``MarketApiClient`` paced by ``SharedPacer`` under the adapter's documented quota
  (6000 REQUEST_WEIGHT a minute, a klines request weighs 2: 50 requests/s), as
  ``MarketApiResource`` builds it. Over ``--rest-days`` from the same start; shorter than the
  range, its fetching time, CPU, requests and bytes are projected linearly to the range
  (interpreter start and imports counted once).

Both emulators (``tests/emulators``: data.binance.vision's layout and Binance's REST klines
enforcing that same quota, 429 and 418 included) serve the same deterministic bars from this
process: what they cost is the provider's, not ours. An archive file is a static file at the
real provider, so every file the runs will ask for is built (GET once) before anything is
measured; a REST page is built when asked, on the emulator's side, in 10 ms (it can serve
twice the quota).

Wall time and CPU (user + sys, from ``wait4``) are the child process's, interpreter start and
imports included, the same for every path. Peak RSS is the child's ``VmHWM`` read by itself
at its end: Linux carries ``ru_maxrss`` across ``execve``, so ``wait4`` would report this
process's RSS (emulators, cached files) for every child. "fetch s" is the call up to the
layer's last progress report (files cut, or pages stored), "manifests s" the rest of it
(which partitions the archive covers, then one manifest per hourly partition). REST requests
and rejections are counted by the REST emulator, archive files and bytes by the raw layer.

Checked before the figures count: the archive runs sent no REST request and filled every
partition from the archive; the REST run drew no 429/418; one day of core bars built from the
archive snapshots equals, every column of every row (``ingested_at`` aside), the same day built
from the REST snapshots, for every symbol (``iter_core_bars``, the core/bars layer).

Targets (the run exits 1 if one is missed): REST wall / archive wall over the range >= 10;
archive peak RSS range / month <= 1.2. A last table projects both paths to 5 years x 100
symbols from the measured per-file and per-request rates.
"""

from __future__ import annotations

# Only the standard library here: a child imports the product's modules it runs and nothing
# else (the harness imports Dagster and pytest through tests.helpers, the emulators the
# simulator), so its peak RSS is the raw layer's.
import argparse
import functools
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

FIRST_DAY = date(2025, 1, 1)  # microseconds in the archive from here on
MONTH_DAYS = 31  # January 2025: one whole month, one monthly file per symbol
NOW = datetime(2026, 1, 10, tzinfo=UTC)  # every day and month of 2025 published by then
SYMBOLS = (
    *("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT"),
    *("TRXUSDT", "LINKUSDT", "AVAXUSDT", "DOTUSDT", "LTCUSDT", "BCHUSDT", "UNIUSDT"),
    *("ATOMUSDT", "XLMUSDT", "ETCUSDT", "FILUSDT", "NEARUSDT", "APTUSDT"),
)
TARGET_SPEEDUP = 10.0
TARGET_RSS_RATIO = 1.2
PROJECT_YEARS, PROJECT_SYMBOLS = 5, 100
PREWARM_THREADS = 2  # zlib and sha256 release the GIL: two builds overlap a little
DAYS_A_YEAR = 365.25
MIB = 1024.0  # VmHWM is in KiB
MB = 1e6


def hourly_partitions(first: date, days: int) -> list[Any]:
    """The hourly partitions (``2025-01-01-00:00``) of ``days`` days from ``first``. Not
    tests.helpers.hourly_windows: that module imports Dagster, pytest and psycopg2, whose
    memory would be counted in the child's peak RSS."""
    from resources.windows import PartitionWindow

    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    hours = [start + timedelta(hours=h) for h in range(days * 24)]
    return [PartitionWindow(f"{h:%Y-%m-%d-%H}:00", h, h + timedelta(hours=1)) for h in hours]


# -- child mode: one measured run -------------------------------------------------------------
def run_child(spec: dict[str, Any]) -> int:
    """One ``fetch_raw_bars`` call, as the raw/bars asset makes it; prints one JSON line."""
    from resources.http.client import MarketApiClient
    from resources.providers import get_adapter
    from resources.providers.archives import BinanceVision
    from resources.ratelimit.pacer import SharedPacer
    from resources.ratelimit.stores import MemoryQuotaStore, quota_key
    from resources.raw.archive import ArchiveUse
    from resources.raw.ingest import fetch_raw_bars
    from resources.raw.snapshots import SnapshotStore

    adapter = get_adapter("binance")
    # MarketApiResource.pacer() with no quota store configured: this process only, the
    # provider's documented quota.
    pacer = SharedPacer(
        MemoryQuotaStore(),
        quota_key(adapter.name, spec["rest_url"], None),
        policy=adapter.default_quota,
    )
    archive = BinanceVision(spec["archive_url"]) if spec["archive"] else None
    partitions = hourly_partitions(date.fromisoformat(spec["first"]), spec["days"])
    store = SnapshotStore(spec["store"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    # The layer reports progress as files are cut and pages land, the asset's way: its last
    # report ends the fetching; the manifests of the partitions are written after it.
    fetched = [began]

    def progress(fraction: float, bars: int) -> None:
        fetched[0] = time.perf_counter()

    with MarketApiClient(adapter, base_url=spec["rest_url"], pacer=pacer) as client:
        try:
            result = fetch_raw_bars(
                client,
                store,
                spec["symbols"],
                partitions,
                archive=archive,
                archive_use=ArchiveUse.AUTO if archive else ArchiveUse.NEVER,
                now=NOW,
                progress=progress,
            )
        finally:
            if archive is not None:
                archive.close()
    seconds = time.perf_counter() - began
    stats = result.archive
    status = Path("/proc/self/status").read_text()
    hwm = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert hwm is not None, "peak RSS needs Linux's /proc/self/status"
    print(
        json.dumps(
            {
                "call_s": seconds,
                "fetch_s": fetched[0] - began,
                "setup_cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_kib": int(hwm.group(1)),
                "partitions": result.partitions,
                "partitions_from_archive": result.partitions_from_archive,
                "bars": result.bars_fetched,
                "requests": result.client.requests,
                "throttled": result.client.throttled,
                "rest_bytes": result.client.bytes_received,
                "files_planned": stats.files_planned if stats else 0,
                "files_downloaded": stats.files_downloaded if stats else 0,
                "archive_bytes": stats.bytes_downloaded if stats else 0,
            }
        ),
        flush=True,
    )
    return 0


# -- parent mode --------------------------------------------------------------------------------
@dataclass
class Run:
    label: str
    span: str
    days: int
    wall_s: float
    cpu_s: float
    peak_rss_kib: int  # VmHWM
    call_s: float  # the fetch_raw_bars call alone
    fetch_s: float  # of which fetching (archive files, or REST pages), the rest manifests
    setup_cpu_s: float  # CPU before the call: interpreter start, imports
    rest_requests: int  # counted by the REST emulator
    rejected: int  # 429s and 418s the REST emulator sent
    requests: int  # counted by the client
    partitions: int
    partitions_from_archive: int
    bars: int
    files_downloaded: int
    downloaded_bytes: int
    projected_from: int | None = None  # REST: measured over this many days, scaled to `days`

    def scaled(self, days: int) -> Run:
        """This REST run projected linearly to ``days`` days (the call's wall time and CPU,
        requests, bytes; start-up and imports once)."""
        k = days / self.days
        return Run(
            self.label,
            f"{days} d, projected from {self.days} d",
            days,
            self.wall_s - self.call_s + self.call_s * k,
            self.setup_cpu_s + (self.cpu_s - self.setup_cpu_s) * k,
            self.peak_rss_kib,
            self.call_s * k,
            self.fetch_s * k,
            self.setup_cpu_s,
            round(self.rest_requests * k),
            self.rejected,
            round(self.requests * k),
            round(self.partitions * k),
            0,
            round(self.bars * k),
            0,
            round(self.downloaded_bytes * k),
            projected_from=self.days,
        )


def measure(
    label: str,
    *,
    archive: bool,
    days: int,
    symbols: list[str],
    rest: Any,
    archive_url: str,
    tmp: Path,
) -> Run:
    """Run one path in its own process: wall time and CPU from ``wait4``, peak RSS its own."""
    name = label.replace(", ", "-").replace(" ", "-")
    spec = {
        "archive": archive,
        "first": FIRST_DAY.isoformat(),
        "days": days,
        "symbols": symbols,
        "rest_url": rest.url,
        "archive_url": archive_url,
        "store": str(tmp / name / "snapshots"),
    }
    (tmp / name).mkdir()
    out, log = tmp / name / "result.json", tmp / name / "run.log"
    before = rest.stats()
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    with out.open("w") as stdout, log.open("w") as stderr:
        began = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{label} failed ({code}): {log.read_text()[-3000:]}")
    after = rest.stats()
    got = json.loads(out.read_text().strip().splitlines()[-1])
    archived = got["files_downloaded"] > 0
    return Run(
        label,
        f"{days} d",
        days,
        wall,
        usage.ru_utime + usage.ru_stime,
        got["peak_rss_kib"],
        got["call_s"],
        got["fetch_s"],
        got["setup_cpu_s"],
        after["klines_requests"] - before["klines_requests"],
        (after["rejected_429"] - before["rejected_429"])
        + (after["rejected_418"] - before["rejected_418"]),
        got["requests"],
        got["partitions"],
        got["partitions_from_archive"],
        got["bars"],
        got["files_downloaded"],
        got["archive_bytes"] if archived else got["rest_bytes"],
    )


def prewarm(archive_url: str, symbols: list[str], days: int) -> tuple[int, int, float]:
    """GET once every file the runs will ask for, so the emulator has built and cached it (a
    real provider serves static files): (files, bytes, seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from resources.providers.archives import BinanceVision

    plan = BinanceVision(archive_url).plan(symbols, hourly_partitions(FIRST_DAY, days), now=NOW)
    began = time.perf_counter()
    with (
        httpx.Client(base_url=archive_url, timeout=120.0) as http,
        ThreadPoolExecutor(PREWARM_THREADS) as pool,
    ):

        def get(key: str) -> int:
            response = http.get(f"/{key}")
            response.raise_for_status()
            return len(response.content)

        sizes = list(pool.map(get, [file.key for file in plan]))
    return len(sizes), sum(sizes), time.perf_counter() - began


def core_day(store_dir: Path, day: date) -> Any:
    """The day's core bars as core/bars builds them, without the fetch time (when each path's
    bytes arrived, not a property of the bars)."""
    import polars as pl

    from resources.raw.snapshots import SnapshotStore
    from resources.tables.core import BuildStats, iter_core_bars

    frames = [
        frame
        for _, frame in iter_core_bars(
            SnapshotStore(store_dir), hourly_partitions(day, 1), stats=BuildStats()
        )
    ]
    return pl.concat(frames).drop("ingested_at").sort("symbol", "ts")


def rest_year_requests(days: int, symbols: int) -> int:
    """Requests for ``days`` days of 1-minute bars with the largest page (1000 bars)."""
    from resources.providers.binance import BinanceAdapter

    return symbols * math.ceil(days * 1440 / BinanceAdapter.page_limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365, help="the range, from 2025-01-01")
    parser.add_argument("--symbols", type=int, default=20, help=f"how many (1-{len(SYMBOLS)})")
    parser.add_argument(
        "--rest-days", type=int, default=None, help="days the REST path runs (default: --days)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(json.loads(args.child))
    rest_days = args.rest_days or args.days
    if not (1 <= args.symbols <= len(SYMBOLS)) or args.days < 1 or not 1 <= rest_days <= args.days:
        parser.error(f"--symbols 1-{len(SYMBOLS)}, --days >= 1, 1 <= --rest-days <= --days")

    from benchmarks.harness import Targets, table
    from resources.providers.binance import KLINES_WEIGHT, WEIGHT_PER_MINUTE
    from tests.emulators.binance import BinanceEmulator
    from tests.emulators.binance_archive import BinanceArchiveEmulator

    symbols = list(SYMBOLS[: args.symbols])
    began = time.monotonic()
    last = FIRST_DAY + timedelta(days=args.days - 1)
    print(
        f"{FIRST_DAY}..{last} ({args.days} d) x {len(symbols)} symbols of 1-minute bars; "
        f"REST over {rest_days} d at {WEIGHT_PER_MINUTE} weight/min, klines weight {KLINES_WEIGHT}",
        flush=True,
    )
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="fin-assets-bench-history-") as tmp_name,
        # Binance's documented REQUEST_WEIGHT: 6000 a minute, a 1000-bar klines request 2.
        BinanceEmulator(weight_limit=WEIGHT_PER_MINUTE, request_weight=KLINES_WEIGHT) as rest,
        BinanceArchiveEmulator() as archive_server,
    ):
        tmp = Path(tmp_name)
        files, size, seconds = prewarm(archive_server.url, symbols, args.days)
        print(
            f"  archive files built once, before measuring: {files} ({size / MB:.0f} MB) "
            f"in {seconds:.0f} s",
            flush=True,
        )
        measure_run = functools.partial(
            measure, symbols=symbols, rest=rest, archive_url=archive_server.url, tmp=tmp
        )
        if args.days > MONTH_DAYS:
            runs.append(measure_run("archive, month", archive=True, days=MONTH_DAYS))
            print(f"  {runs[-1].label}: {runs[-1].wall_s:.1f} s", flush=True)
        runs.append(measure_run("archive, range", archive=True, days=args.days))
        print(f"  {runs[-1].label}: {runs[-1].wall_s:.1f} s", flush=True)
        rest_run = measure_run("REST", archive=False, days=rest_days)
        runs.append(rest_run)
        print(f"  {rest_run.label}: {rest_run.wall_s:.1f} s", flush=True)
        check_day = FIRST_DAY + timedelta(days=rest_days // 2)
        from_archive = core_day(tmp / "archive-range" / "snapshots", check_day)
        from_rest = core_day(tmp / "REST" / "snapshots", check_day)

    archive_range = runs[-2]
    archive_month = runs[0] if len(runs) == 3 else None
    rest_range = rest_run if rest_days == args.days else rest_run.scaled(args.days)
    shown = [*runs, *([rest_range] if rest_range is not rest_run else [])]
    print()
    print(
        table(
            [
                "path",
                "span",
                "wall s",
                "fetch s",
                "manifests s",
                "CPU s",
                "peak RSS MiB",
                "REST requests",
                "archive files downloaded",
                "MB downloaded",
            ],
            [
                [
                    r.label,
                    r.span,
                    f"{r.wall_s:.1f}",
                    f"{r.fetch_s:.1f}",
                    f"{r.call_s - r.fetch_s:.1f}",
                    f"{r.cpu_s:.1f}",
                    "—" if r.projected_from else f"{r.peak_rss_kib / MIB:.1f}",
                    f"{r.rest_requests}",
                    f"{r.files_downloaded}",
                    f"{r.downloaded_bytes / MB:.1f}",
                ]
                for r in shown
            ],
        )
    )
    speedup = rest_range.wall_s / archive_range.wall_s
    print()
    print(
        f"REST wall / archive wall over {args.days} d: {speedup:.1f}x "
        f"({rest_range.wall_s:.1f} s / {archive_range.wall_s:.1f} s)"
        + (f", REST projected from {rest_days} d" if rest_range is not rest_run else "")
    )
    rss_ratio = (
        archive_range.peak_rss_kib / archive_month.peak_rss_kib if archive_month else math.nan
    )
    if archive_month:
        print(
            f"archive peak RSS {args.days} d / {MONTH_DAYS} d: {rss_ratio:.3f} "
            f"({archive_range.peak_rss_kib / MIB:.1f} / {archive_month.peak_rss_kib / MIB:.1f} MiB)"
        )
    quota_per_s = WEIGHT_PER_MINUTE / KLINES_WEIGHT / 60
    quota_floor_s = rest_range.rest_requests / quota_per_s
    print(
        f"REST request rate: {rest_run.rest_requests / rest_run.fetch_s:.1f}/s while fetching "
        f"(the documented quota allows {quota_per_s:.0f}/s); its {rest_range.rest_requests} "
        f"requests at exactly the quota, nothing else counted: {quota_floor_s:.1f} s, "
        f"{quota_floor_s / archive_range.wall_s:.1f}x the archive path"
    )

    # -- 5 years x 100 symbols, from the measured rates
    project_days = (date(FIRST_DAY.year + PROJECT_YEARS, 1, 1) - FIRST_DAY).days
    symbol_months = PROJECT_SYMBOLS * PROJECT_YEARS * 12
    # Per symbol-month of the range (a monthly file, or its days' files where a month is cut).
    measured_months = len(symbols) * args.days * 12 / DAYS_A_YEAR
    per_file_s = archive_range.wall_s / measured_months
    per_file_bytes = archive_range.downloaded_bytes / measured_months
    requests = rest_year_requests(project_days, PROJECT_SYMBOLS)
    per_request_s = rest_run.wall_s / rest_run.rest_requests
    per_request_bytes = rest_run.downloaded_bytes / rest_run.rest_requests
    print()
    print(f"Projected to {PROJECT_YEARS} years x {PROJECT_SYMBOLS} symbols ({project_days} d):")
    print(
        table(
            ["path", "REST requests", "archive files", "GB downloaded", "wall", "from"],
            [
                [
                    "archive",
                    "0",
                    f"{symbol_months}",
                    f"{symbol_months * per_file_bytes / 1e9:.1f}",
                    f"{symbol_months * per_file_s / 60:.1f} min",
                    f"{per_file_s:.3f} s and {per_file_bytes / MB:.2f} MB a symbol-month",
                ],
                [
                    "REST",
                    f"{requests}",
                    "0",
                    f"{requests * per_request_bytes / 1e9:.1f}",
                    f"{requests * per_request_s / 3600:.1f} h",
                    f"{per_request_s * 1000:.1f} ms and {per_request_bytes / 1e3:.0f} kB a request",
                ],
            ],
        )
    )
    print()

    targets = Targets()
    for run in (archive_month, archive_range):
        if run is None:
            continue
        targets.check(
            f"{run.label}: no REST request, every partition from the archive",
            run.rest_requests == 0 and run.partitions_from_archive == run.partitions,
            f"{run.rest_requests} requests, {run.partitions_from_archive}/{run.partitions}",
        )
    targets.check(
        "REST under the documented quota: no 429/418",
        rest_run.rejected == 0,
        f"{rest_run.rejected} rejected of {rest_run.rest_requests}",
    )
    equal = from_archive.height == 1440 * len(symbols) and from_archive.equals(from_rest)
    targets.check(
        f"core bars of {check_day} from the archive equal those from REST ({len(symbols)} symbols)",
        equal,
        f"{from_archive.height} vs {from_rest.height} rows, " + ("equal" if equal else "DIFFERENT"),
    )
    targets.check(
        f"REST wall / archive wall over {args.days} d >= {TARGET_SPEEDUP:g}x",
        speedup >= TARGET_SPEEDUP,
        f"{speedup:.1f}x",
    )
    if archive_month:
        targets.check(
            f"archive peak RSS {args.days} d / {MONTH_DAYS} d <= {TARGET_RSS_RATIO}",
            rss_ratio <= TARGET_RSS_RATIO,
            f"{rss_ratio:.3f}",
        )
    else:
        targets.skip("archive peak RSS ratio", f"needs --days > {MONTH_DAYS}")
    code = targets.report()
    print(f"\nruntime {time.monotonic() - began:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
