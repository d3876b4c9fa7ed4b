"""Memory benchmark: a range backfill must cost the same memory whatever its length.

    uv run --frozen python benchmarks/memory.py [--days 1,30] [--symbols AAPL,MSFT,GOOG,AMZN,NVDA]

For each range length, a fresh Dagster instance, data directory and quota store (in a temporary
directory), then the command the README documents, in its own process::

    dagster asset materialize -m fin_assets.definitions --select raw/bars,core/bars \\
        --partition-range 2026-01-05-00:00...<last day>-23:00

against the simulator running as another process (no quota: the run is as fast as it can be).
That is one single-run backfill: one run worker process and, with Dagster's default executor,
one process per step (raw/bars, then core/bars).

Peak RSS is what the kernel recorded: ``wait4`` on the command gives the largest peak of any
process in its tree (``ru_maxrss``); a thread polling /proc every 50 ms attributes peaks to the
run worker and the step processes (``VmHWM``) and records the largest sum over the whole tree.
Next to it, the peak RSS of a bare ``python -c "import dagster, polars, httpx"``.

Each run is checked before its memory counts: it must succeed, fetch from the simulator and
leave every hourly core/bars partition with 1440 bars per symbol and day.

Target (the run exits 1 if it is missed): peak RSS of the longest range over the shortest,
<= 1.2, for the largest process and for the whole tree.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx

from benchmarks.harness import PROJECT_ROOT, Targets, start_simulator, stop_process, table
from tests.helpers import dagster_home, materialize_command

FIRST_DAY = date(2026, 1, 5)
DEFAULT_SYMBOLS = "AAPL,MSFT,GOOG,AMZN,NVDA"
TARGET_RATIO = 1.2
POLL_S = 0.05
MIB = 1024.0  # ru_maxrss and /proc are in KiB


# -- measuring a process tree ---------------------------------------------------------------
def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces


def _status_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line[:5]] = int(line.split()[1])
    if len(values) < 2:
        return None  # a zombie
    return values["VmRSS"], values["VmHWM"]


@dataclass
class TreeWatch:
    """Polls /proc for the tree under ``root``: each process's peak, the largest tree sum."""

    root: int
    peaks: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM KiB
    roles: dict[int, str] = field(default_factory=dict)
    max_sum_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _members(self) -> list[int]:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                parent = _ppid(int(entry))
                if parent is not None:
                    parents[int(entry)] = parent
        members, frontier = [self.root], [self.root]
        while frontier:
            frontier = [pid for pid, parent in parents.items() if parent in frontier]
            members += frontier
        return members

    def _role(self, pid: int) -> str:
        if pid == self.root:
            return "run worker"
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return "other"
        if "multiprocessing.spawn" in cmdline:
            return "step"
        return "other"  # multiprocessing's resource tracker, the compute-log tailer

    def poll(self) -> None:
        total = 0
        for pid in self._members():
            sample = _status_kib(pid)
            if sample is None:
                continue
            rss, hwm = sample
            total += rss
            self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
            if pid not in self.roles:
                self.roles[pid] = self._role(pid)
        self.max_sum_kib = max(self.max_sum_kib, total)

    def run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(POLL_S)

    def stop(self) -> None:
        self._stop.set()

    def peak_of(self, role: str) -> float:
        return max((k for p, k in self.peaks.items() if self.roles.get(p) == role), default=0)


@dataclass
class Measured:
    label: str
    seconds: float
    maxrss_kib: int  # wait4: the largest process of the tree
    worker_kib: float = 0.0
    step_kib: float = 0.0
    tree_kib: float = 0.0
    partitions: int | None = None
    rows: int | None = None
    requests: int | None = None


def run_measured(
    command: list[str], *, env: dict[str, str], log: Path, cwd: Path = PROJECT_ROOT
) -> tuple[int, float, int, TreeWatch]:
    """Run ``command`` (from ``cwd``: another checkout's, for benchmarks/scale.py's baseline)
    to its end: exit code, wall seconds, ``ru_maxrss`` (KiB) and the /proc watch of its tree."""
    with log.open("w") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)
        watch = TreeWatch(proc.pid)
        poller = threading.Thread(target=watch.run, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        watch.stop()
        poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, seconds, usage.ru_maxrss, watch


# -- the scenarios ------------------------------------------------------------------------
def clean_env() -> dict[str, str]:
    """This environment without any FIN_* or DAGSTER_HOME setting of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FIN_") and k != "DAGSTER_HOME"}


def bare_import(tmp: Path) -> Measured:
    command = [sys.executable, "-c", "import dagster, polars, httpx"]
    code, seconds, maxrss, watch = run_measured(command, env=clean_env(), log=tmp / "bare.log")
    if code != 0:
        raise RuntimeError(f"bare import failed: {(tmp / 'bare.log').read_text()[-2000:]}")
    return Measured("bare `import dagster, polars, httpx`", seconds, maxrss)


def backfill(days: int, symbols: list[str], url: str, admin: httpx.Client, tmp: Path) -> Measured:
    root = tmp / f"days-{days}"
    env = {
        **clean_env(),
        "DAGSTER_HOME": str(dagster_home(root / "dagster_home")),
        "FIN_PROVIDER": "simulator",
        "FIN_API_BASE_URL": url,
        "FIN_SYMBOLS": ",".join(symbols),
        "FIN_DATA_DIR": str(root / "data"),
        "FIN_QUOTA_STORE": str(root / "quota.sqlite"),
    }
    last = FIRST_DAY + timedelta(days=days - 1)
    partitions = f"{FIRST_DAY}-00:00...{last}-23:00"
    command = [
        sys.executable,
        "-m",
        *materialize_command("raw/bars,core/bars", "--partition-range", partitions),
    ]
    before = admin.get("/_sim/stats").json()["requests"]
    log = root / "run.log"
    code, seconds, maxrss, watch = run_measured(command, env=env, log=log)
    if code != 0:
        raise RuntimeError(f"the {days}-day backfill failed ({code}): {log.read_text()[-3000:]}")
    requests = admin.get("/_sim/stats").json()["requests"] - before
    landed, rows = check_landed(root / "data", days, len(symbols))
    return Measured(
        f"{days} day{'s' if days > 1 else ''} x {len(symbols)} symbols",
        seconds,
        maxrss,
        worker_kib=watch.peak_of("run worker"),
        step_kib=watch.peak_of("step"),
        tree_kib=watch.max_sum_kib,
        partitions=landed,
        rows=rows,
        requests=requests,
    )


def check_landed(data_dir: Path, days: int, symbols: int) -> tuple[int, int]:
    """(partitions, rows) of core/bars under ``data_dir`` (the Parquet warehouse), once they are
    what a ``days``-day backfill from FIRST_DAY must leave: every hourly partition, 1440 bars per
    symbol and day; RuntimeError otherwise."""
    import polars as pl  # only the parent checks the result; it is not measured

    files = sorted((data_dir / "warehouse" / "core_bars").glob("*.parquet"))
    rows = pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0
    expected = days * 24, days * 1440 * symbols
    if (len(files), rows) != expected:
        raise RuntimeError(
            f"the {days}-day backfill left {len(files)} partitions and {rows} rows, "
            f"expected {expected[0]} and {expected[1]}"
        )
    return len(files), rows


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", default="1,30", help="comma-separated range lengths in days")
    parser.add_argument("--symbols", default=DEFAULT_SYMBOLS)
    args = parser.parse_args(argv)
    lengths = sorted({int(d) for d in args.days.split(",") if d.strip()})
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not lengths or lengths[0] < 1 or not symbols:
        parser.error("--days needs positive day counts and --symbols at least one symbol")
    began = time.monotonic()
    # On tmpfs when there is one: the instance's SQLite event log is written once per event
    # (thousands in a 30-day run), and the disk's fsyncs would only lengthen the run. Files in
    # tmpfs are not part of any process's RSS.
    shm = Path("/dev/shm")
    scratch = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="fin-assets-bench-memory-", dir=scratch) as tmp_name:
        tmp = Path(tmp_name)
        sim, url = start_simulator(log_path=tmp / "simulator.log")
        try:
            print(f"simulator {url}; ranges of {args.days} days x {len(symbols)} symbols")
            with httpx.Client(base_url=url, timeout=30.0) as admin:
                results = [bare_import(tmp)]
                for days in lengths:
                    results.append(backfill(days, symbols, url, admin, tmp))
                    print(f"  {results[-1].label}: {results[-1].seconds:.1f} s", flush=True)
        finally:
            stop_process(sim)

    def mib(kib: float) -> str:
        return f"{kib / MIB:.1f}" if kib else "—"

    def count(value: int | None) -> str:
        return "—" if value is None else f"{value}"

    print()
    print(
        table(
            [
                "run",
                "partitions",
                "rows",
                "requests",
                "seconds",
                "peak RSS MiB",
                "run worker MiB",
                "step process MiB",
                "whole tree MiB",
            ],
            [
                [
                    r.label,
                    count(r.partitions),
                    count(r.rows),
                    count(r.requests),
                    f"{r.seconds:.1f}",
                    mib(r.maxrss_kib),
                    mib(r.worker_kib),
                    mib(r.step_kib),
                    mib(r.tree_kib),
                ]
                for r in results
            ],
        )
    )
    bare, shortest, longest = results[0], results[1], results[-1]
    ratio = longest.maxrss_kib / shortest.maxrss_kib
    tree_ratio = longest.tree_kib / shortest.tree_kib if shortest.tree_kib else float("nan")
    print()
    print(
        f"peak RSS {longest.label} / {shortest.label}: {ratio:.3f} (largest process), "
        f"{tree_ratio:.3f} (whole tree)"
    )
    print(
        f"absolute peak {longest.maxrss_kib / MIB:.1f} MiB = "
        f"{longest.maxrss_kib / bare.maxrss_kib:.2f}x a bare `import dagster, polars, httpx` "
        f"({bare.maxrss_kib / MIB:.1f} MiB)"
    )
    print()
    targets = Targets()
    if len(results) > 2:
        targets.check(
            f"peak RSS ratio {longest.label} / {shortest.label} <= {TARGET_RATIO}",
            ratio <= TARGET_RATIO,
            f"{ratio:.3f}",
        )
        targets.check(
            f"whole-tree peak RSS ratio <= {TARGET_RATIO}",
            tree_ratio <= TARGET_RATIO,
            f"{tree_ratio:.3f}",
        )
    else:
        targets.skip("peak RSS ratio", "needs two range lengths (--days)")
    code = targets.report()
    print(f"\nruntime {time.monotonic() - began:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
