"""Rate-limit benchmark: how much of a shared quota N worker processes get, and at what cost.

    uv run --frozen python benchmarks/rate_limit.py [--seconds 8] [--workers 1,4,8]
                                                    [--quota 20] [--burst 5]

The simulator (``fin-assets simulator``) runs as its own process with a token-bucket quota of
Q requests/s and a burst of B. For every strategy and every N, N worker processes (this file in
``--worker`` mode) import, open their quota store and their keep-alive connection, say they are
ready, and are then all given one start epoch (on stdin, unless ``--start-at``/``--until`` are
passed): a start-up skew would read as lost utilization. They call ``GET /v1/latest`` in a
closed loop for ``--seconds`` and each prints one JSON line with a record per logical request
(start, end, seconds waited, final status, 429s seen). Each scenario gets a fresh SQLite quota
file and a reset simulator (``POST /_sim/reset``, then B/Q + 0.5 s for the bucket). Strategies:

- ``configured``: ``MarketApiClient`` + ``SharedPacer`` over one SQLite quota file, quota given;
- ``learned``: the same with no quota given: learned from the ``RateLimit-Policy`` header;
- ``fixed-sleep``: plain httpx, ``sleep(1/Q)`` after every request in every process (a cron
  script); a 429 is a failed request and the loop goes on;
- ``retry-backoff``: plain httpx, no pacing; a 429 is retried after full-jitter exponential
  backoff (base 0.05 s, doubling per consecutive 429, cap 5 s) until it succeeds.

What is reported comes from the simulator's own request log (``/_sim/requests``): accepted
requests inside the measured span over the most the server could accept in it (Q*T + B),
the same from 1 s after the start (Q*(T-1)), every 429 the server sent, and the p50/p99 of the
time each logical request spent waiting (pacing, Retry-After, backoff, sleep; not the network).

Targets (the run exits 1 if one is missed; the baselines never fail it):
configured: utilization >= 0.99 and zero 429s for every N (>= 0.98 with ``--cpu-hogs``: that
many processes spin on the CPU throughout, a busy host);
learned: at most one 429 per process (<= N) and utilization after start-up >= 0.90.

Our client paces at SAFETY_RATE (99.8 %) of the quota and uses the burst less ARRIVAL_JITTER_S
(20 ms, 0.4 of a unit here; ``resources/ratelimit/policy.py``), so its ceiling with the
defaults is (B - 0.4 + 0.998 * Q * T) / (Q * T + B) = 0.995. "After 1 s" can exceed 1.0:
tokens the bucket saved up before that second are spent inside it.
``--strategies`` runs a subset; ``--dump-log DIR`` keeps each scenario's request log and records.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import harness

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("configured", "learned", "fixed-sleep", "retry-backoff")
CLIENT_STRATEGIES = ("configured", "learned")
SYMBOL = "AAPL"
LATEST_PATH = "/v1/latest"
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 5.0
STARTUP_WINDOW_S = 1.0  # "after start-up" utilization is measured from start + this
TARGET_CONFIGURED_UTIL = 0.99
TARGET_BUSY_UTIL = 0.98  # with --cpu-hogs: two hogs on this 2-core machine (issue 25)
TARGET_LEARNED_UTIL_AFTER = 0.90
WORKER_GRACE_S = 30.0  # a worker still running this long after --until is killed
READY_TIMEOUT_S = 120.0  # for N workers to import and open their store

# One record per logical request: [start, end, seconds waited, final status, 429s seen].
Record = list[Any]


# -- worker mode ------------------------------------------------------------------------------
def _ready_and_wait(args: argparse.Namespace) -> None:
    """Say we are ready (imports done, store and connection pool open), learn the shared start
    from stdin unless it was given on the command line, and sleep until it."""
    print(json.dumps({"ready": time.time()}), flush=True)
    if args.start_at is None or args.until is None:
        args.start_at, args.until = (float(x) for x in sys.stdin.readline().split())
    _sleep_until(args.start_at)


def _sleep_until(epoch: float) -> None:
    while True:
        left = epoch - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))


def _warm_up(transport: httpx.BaseTransport, url: str) -> None:
    """Open the keep-alive connection before the start, outside the quota (``/_sim/health``).

    The simulator listens with socketserver's default backlog of 5: N > 5 processes opening
    their first connection in the same millisecond can have a SYN dropped and retried a second
    later, which would read as a second of waiting that has nothing to do with the quota."""
    response = transport.handle_request(httpx.Request("GET", f"{url}/_sim/health"))
    response.read()
    response.close()


def _worker_client(args: argparse.Namespace) -> list[Record]:
    """Our client: pacing through the shared SQLite quota, configured or learned."""
    from resources.errors import FinAssetsError
    from resources.http.client import MarketApiClient
    from resources.ratelimit.pacer import SharedPacer
    from resources.ratelimit.policy import QuotaPolicy
    from resources.ratelimit.stores import SQLiteQuotaStore, quota_key
    from resources.simulator.adapter import SimulatorAdapter

    adapter = SimulatorAdapter()
    policy = (
        QuotaPolicy(float(args.quota), 1.0, args.burst) if args.worker == "configured" else None
    )
    pacer = SharedPacer(
        SQLiteQuotaStore(args.store), quota_key(adapter.name, args.url, None), policy=policy
    )
    # Our own transport, so its connection can be opened before the start (see _warm_up).
    transport = httpx.HTTPTransport()
    client = MarketApiClient(
        adapter,
        base_url=args.url,
        pacer=pacer,
        transport=transport,
        max_attempts=1000,
        max_wait_s=3600.0,
    )
    _warm_up(transport, args.url)
    request = adapter.latest_request(SYMBOL)
    records: list[Record] = []
    _ready_and_wait(args)
    try:
        while time.time() < args.until:
            waited, throttled = client.stats.seconds_waited, client.stats.throttled
            start = time.time()
            try:
                client.get(request, what="rate-limit benchmark")
                status: int | str = 200
            except FinAssetsError:
                status = "gave-up"
            records.append(
                [
                    start,
                    time.time(),
                    client.stats.seconds_waited - waited,
                    status,
                    client.stats.throttled - throttled,
                ]
            )
    finally:
        client.close()
    return records


def _worker_fixed_sleep(args: argparse.Namespace) -> list[Record]:
    """What a cron script does: sleep 1/Q after every request, each process on its own."""
    pause = 1.0 / args.quota
    records: list[Record] = []
    with httpx.Client(base_url=args.url, timeout=10.0) as http:
        http.get("/_sim/health").raise_for_status()  # warm up: see _warm_up
        _ready_and_wait(args)
        while time.time() < args.until:
            start = time.time()
            try:
                status: int | str = http.get(LATEST_PATH, params={"symbol": SYMBOL}).status_code
            except httpx.TransportError:
                status = "error"
            end = time.time()
            time.sleep(pause)
            records.append([start, end, pause, status, int(status == 429)])
    return records


def _worker_retry_backoff(args: argparse.Namespace) -> list[Record]:
    """No pacing; a 429 is retried after full-jitter exponential backoff until it succeeds."""
    rng = random.Random()
    records: list[Record] = []
    with httpx.Client(base_url=args.url, timeout=10.0) as http:
        http.get("/_sim/health").raise_for_status()  # warm up: see _warm_up
        _ready_and_wait(args)
        while time.time() < args.until:
            start, waited, rejected = time.time(), 0.0, 0
            while True:
                try:
                    status: int | str = http.get(LATEST_PATH, params={"symbol": SYMBOL}).status_code
                except httpx.TransportError:
                    status = "error"
                if status != 429:
                    break
                rejected += 1
                delay = rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (rejected - 1)))
                if time.time() + delay >= args.until:
                    status = "cut"  # the run ends before the retry: censored, not given up
                    break
                time.sleep(delay)
                waited += delay
            records.append([start, time.time(), waited, status, rejected])
    return records


def run_worker(args: argparse.Namespace) -> int:
    worker = {
        "configured": _worker_client,
        "learned": _worker_client,
        "fixed-sleep": _worker_fixed_sleep,
        "retry-backoff": _worker_retry_backoff,
    }[args.worker]
    records = worker(args)
    print(json.dumps({"records": records}), flush=True)
    return 0


# -- the simulator ----------------------------------------------------------------------------
def start_simulator(quota: int, burst: int, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    """The simulator with a quota of ``quota`` requests a second (burst ``burst``)."""
    args = ["--quota", str(quota), "--quota-window", "1", "--quota-burst", str(burst)]
    return harness.start_simulator(args, log_path=log_path)


# -- one scenario -----------------------------------------------------------------------------
@dataclass
class Result:
    strategy: str
    n: int
    accepted: int
    rejected: int
    utilization: float
    util_after: float
    p50_ms: float
    p99_ms: float
    logical: int
    by_status: dict[str, int]
    max_429_per_process: int
    rejected_after_startup: int
    sent_after_end: int
    setup_s: float  # from launching the N workers to the last of them being ready
    first_send_skew_s: float  # last worker's first request, after the shared start
    log_complete: bool
    notes: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def wait_until_ready(
    procs: list[subprocess.Popen[str]], timeout_s: float, errors: list[Path]
) -> list[float]:
    """Each worker's "ready" time (its first stdout line), waiting for all of them."""
    ready: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        for index, proc in enumerate(procs):
            assert proc.stdout is not None
            selector.register(proc.stdout, selectors.EVENT_READ, index)
        while len(ready) < len(procs):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"only {len(ready)} of {len(procs)} workers got ready")
            for key, _ in selector.select(timeout=left):
                stdout = procs[key.data].stdout
                assert stdout is not None
                line = stdout.readline()
                if not line:
                    err = errors[key.data].read_text()[-2000:]
                    raise RuntimeError(f"a worker exited before it was ready: {err}")
                ready[key.data] = json.loads(line)["ready"]
                selector.unregister(key.fileobj)
    return [ready[i] for i in range(len(procs))]


def run_scenario(
    admin: httpx.Client, url: str, strategy: str, n: int, args: argparse.Namespace, tmp: Path
) -> Result:
    store = tmp / f"quota-{strategy}-{n}.sqlite"
    if strategy in CLIENT_STRATEGIES:
        from resources.ratelimit.stores import SQLiteQuotaStore

        SQLiteQuotaStore(store).close()  # create the file and table before N processes race
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        strategy,
        "--url",
        url,
        "--store",
        str(store),
        "--quota",
        str(args.quota),
        "--burst",
        str(args.burst),
    ]
    procs: list[subprocess.Popen[str]] = []
    errors = [tmp / f"worker-{strategy}-{n}-{index}.err" for index in range(n)]
    outputs: list[dict[str, Any]] = []
    launched = time.time()
    try:
        for index in range(n):
            with errors[index].open("w") as err:
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=PROJECT_ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                )
        # Start every worker at one instant, once all of them have imported and set up (on a
        # small machine N processes importing httpx and polars take seconds): a start-up skew
        # would read as lost utilization.
        ready = wait_until_ready(procs, READY_TIMEOUT_S, errors)
        admin.post("/_sim/reset").raise_for_status()
        start_at = time.time() + args.burst / args.quota + 0.5  # let the bucket refill
        until = start_at + args.seconds
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at!r} {until!r}\n")
            proc.stdin.flush()
        for index, proc in enumerate(procs):
            timeout = max(1.0, until + WORKER_GRACE_S - time.time())
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                err = errors[index].read_text()
                raise RuntimeError(f"{strategy} worker failed ({proc.returncode}): {err[-2000:]}")
            outputs.append(
                {
                    "launched": launched,
                    "ready": ready[index],
                    **json.loads(out.strip().splitlines()[-1]),
                }
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
    log = admin.get("/_sim/requests").json()["requests"]
    stats = admin.get("/_sim/stats").json()
    if args.dump_log:
        dump = Path(args.dump_log) / f"{strategy}-{n}.json"
        dump.write_text(json.dumps({"start_at": start_at, "log": log, "workers": outputs}))
    return summarize(strategy, n, args, start_at, until, outputs, log, stats)


def summarize(
    strategy: str,
    n: int,
    args: argparse.Namespace,
    start_at: float,
    until: float,
    outputs: list[dict[str, Any]],
    log: list[dict[str, Any]],
    stats: dict[str, Any],
) -> Result:
    seconds, quota, burst = args.seconds, args.quota, args.burst
    in_span = [e for e in log if start_at <= e["t"] < until]
    accepted = sum(1 for e in in_span if e["status"] == 200)
    accepted_after = sum(
        1 for e in in_span if e["status"] == 200 and e["t"] >= start_at + STARTUP_WINDOW_S
    )
    rejected = sum(1 for e in log if e["status"] == 429)  # every 429 of the scenario
    rejected_after = sum(
        1 for e in log if e["status"] == 429 and e["t"] >= start_at + STARTUP_WINDOW_S
    )
    records = [r for out in outputs for r in out["records"]]
    waits = [r[2] for r in records]
    by_status: dict[str, int] = {}
    for r in records:
        by_status[str(r[3])] = by_status.get(str(r[3]), 0) + 1
    per_process_429 = [sum(r[4] for r in out["records"]) for out in outputs]
    ready = [out["ready"] for out in outputs if out["ready"] is not None]
    firsts = [out["records"][0][0] for out in outputs if out["records"]]
    result = Result(
        strategy=strategy,
        n=n,
        accepted=accepted,
        rejected=rejected,
        utilization=accepted / (quota * seconds + burst),
        util_after=accepted_after / (quota * (seconds - STARTUP_WINDOW_S)),
        p50_ms=1000 * percentile(waits, 0.50),
        p99_ms=1000 * percentile(waits, 0.99),
        logical=len(records),
        by_status=by_status,
        max_429_per_process=max(per_process_429, default=0),
        rejected_after_startup=rejected_after,
        sent_after_end=sum(1 for e in log if e["t"] >= until),
        setup_s=max(ready, default=start_at) - min(out["launched"] for out in outputs),
        first_send_skew_s=max(firsts, default=start_at) - start_at,
        log_complete=len(log) == stats["requests"],
    )
    if not result.log_complete:
        result.notes.append(
            f"request log holds {len(log)} of {stats['requests']} requests (deque limit)"
        )
    if sum(1 for e in log if e["t"] < start_at):
        result.notes.append("requests before the shared start")
    if sum(per_process_429) != rejected and strategy != "fixed-sleep":
        result.notes.append(f"workers saw {sum(per_process_429)} 429s, server sent {rejected}")
    return result


# -- report -------------------------------------------------------------------------------
COLUMNS = (
    ("strategy", 13, "<"),
    ("N", 2, ">"),
    ("accepted", 8, ">"),
    ("rejected", 8, ">"),
    ("utilization", 11, ">"),
    ("util after 1 s", 14, ">"),
    ("p50 wait ms", 11, ">"),
    ("p99 wait ms", 11, ">"),
)


def table(results: list[Result]) -> str:
    def row(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, COLUMNS, strict=True)
            )
            + " |"
        )

    lines = [row([name for name, _, _ in COLUMNS])]
    lines.append(
        "|"
        + "|".join(
            ("-" * (width + 1) + ":") if align == ">" else ("-" * (width + 2))
            for _, width, align in COLUMNS
        )
        + "|"
    )
    for r in results:
        lines.append(
            row(
                [
                    r.strategy,
                    str(r.n),
                    str(r.accepted),
                    str(r.rejected),
                    f"{r.utilization:.3f}",
                    f"{r.util_after:.3f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                ]
            )
        )
    return "\n".join(lines)


def details(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.by_status.items()))
        lines.append(
            f"{r.strategy:<13} N={r.n}: {r.logical} logical requests ({statuses}); "
            f"429s: max {r.max_429_per_process}/process, {r.rejected_after_startup} after 1 s; "
            f"{r.sent_after_end} sent after the span; workers ready "
            f"{r.setup_s:.1f} s after launch; first sends within "
            f"{r.first_send_skew_s * 1000:.0f} ms of the start"
            + "".join(f"; NOTE {note}" for note in r.notes)
        )
    return lines


def targets(
    results: list[Result], configured_util: float = TARGET_CONFIGURED_UTIL
) -> tuple[list[str], bool]:
    lines: list[str] = []
    ok = True

    def check(name: str, rows: list[Result], passed: Any, shown: Any) -> None:
        nonlocal ok
        if not rows:
            return
        verdicts = [bool(passed(r)) for r in rows]
        ok &= all(verdicts)
        values = ", ".join(f"N={r.n} {shown(r)}" for r in rows)
        lines.append(f"{'PASS' if all(verdicts) else 'FAIL'}  {name}: {values}")

    configured = [r for r in results if r.strategy == "configured"]
    learned = [r for r in results if r.strategy == "learned"]
    check(
        f"configured: utilization >= {configured_util}",
        configured,
        lambda r: r.utilization >= configured_util,
        lambda r: f"{r.utilization:.3f}",
    )
    check(
        "configured: zero rejected",
        configured,
        lambda r: r.rejected == 0,
        lambda r: str(r.rejected),
    )
    check(
        "learned: at most one rejection per process (rejected <= N)",
        learned,
        lambda r: r.rejected <= r.n,
        lambda r: f"{r.rejected} (max {r.max_429_per_process}/process)",
    )
    check(
        f"learned: utilization after start-up >= {TARGET_LEARNED_UTIL_AFTER}",
        learned,
        lambda r: r.util_after >= TARGET_LEARNED_UTIL_AFTER,
        lambda r: f"{r.util_after:.3f}",
    )
    return lines, ok


# -- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured span per scenario")
    parser.add_argument("--workers", default="1,4,8", help="comma-separated process counts")
    parser.add_argument("--quota", type=int, default=20, help="server quota Q, requests/s")
    parser.add_argument("--burst", type=int, default=5, help="server burst B")
    parser.add_argument(
        "--strategies", default=",".join(STRATEGIES), help="comma-separated subset to run"
    )
    parser.add_argument(
        "--dump-log", metavar="DIR", help="write each scenario's request log and records here"
    )
    parser.add_argument(
        "--cpu-hogs",
        type=int,
        default=0,
        help="processes spinning on the CPU throughout (a busy host); the configured "
        f"target is then {TARGET_BUSY_UTIL}",
    )
    # Worker mode (internal): this file run as one of the N processes.
    parser.add_argument("--worker", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds <= STARTUP_WINDOW_S:
        parser.error(f"--seconds must be more than {STARTUP_WINDOW_S}")
    if args.quota < 1 or args.burst < 1:
        parser.error("--quota and --burst must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown or not counts or min(counts) < 1:
        print(f"bad --strategies {sorted(unknown)} or --workers {args.workers}", file=sys.stderr)
        return 2
    began = time.monotonic()
    results: list[Result] = []
    with (
        harness.cpu_hogs(args.cpu_hogs),
        tempfile.TemporaryDirectory(prefix="fin-assets-bench-") as tmp_name,
    ):
        tmp = Path(tmp_name)
        sim, url = start_simulator(args.quota, args.burst, tmp / "simulator.log")
        try:
            print(
                f"simulator {url}: quota {args.quota}/s burst {args.burst}; "
                f"{args.seconds:g} s per scenario",
                flush=True,
            )
            with httpx.Client(base_url=url, timeout=30.0) as admin:
                for strategy in strategies:
                    for n in counts:
                        result = run_scenario(admin, url, strategy, n, args, tmp)
                        results.append(result)
                        print(
                            f"  {strategy:<13} N={n}: accepted {result.accepted}, "
                            f"rejected {result.rejected}",
                            flush=True,
                        )
        finally:
            harness.stop_process(sim)
    print()
    print(table(results))
    print()
    for line in details(results):
        print(line)
    print()
    lines, ok = targets(results, TARGET_BUSY_UTIL if args.cpu_hogs else TARGET_CONFIGURED_UTIL)
    for line in lines:
        print(line)
    print(f"\nruntime {time.monotonic() - began:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
