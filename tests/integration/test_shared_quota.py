"""One quota for every process: real subprocesses share the SQLite state against the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from resources.simulator.faults import FaultSpec
from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.helpers import PROJECT_ROOT

WORKERS = 4


def run_workers(
    sim: Any, store: Path, per_worker: int, *extra: str, workers: int = WORKERS
) -> list[dict]:
    """Start `workers` quota_worker processes against `sim` (anything with a .url) at once."""
    start_at = time.time() + 2.0  # let every worker import and open the store first
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.quota_worker",
                sim.url,
                str(store),
                str(per_worker),
                "--start-at",
                str(start_at),
                *extra,
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.mark.parametrize(
    "host",
    [(), ("--stall-ms", "80", "--stall-every", "4")],
    ids=["quiet host", "busy host: 80 ms off the CPU after every 4th booking"],
)
def test_four_processes_share_one_quota_with_zero_rejections(
    tmp_path: Path, host: tuple[str, ...]
) -> None:
    """On a busy host a process may leave well after its slot; the first of a burst that does
    so once drew a 429 (the server counts from its arrival): it now moves the schedule on."""
    config = SimulatorConfig(port=0, quota_requests=20, quota_window_s=1.0, quota_burst=5)
    with MarketSimulator(config) as sim:
        results = run_workers(
            sim, tmp_path / "quota.sqlite", 15, "--quota", "20", "--burst", "5", *host
        )
        stats = sim.stats()
        log = sim.request_log()
    assert stats["rejected_429"] == 0
    assert stats["accepted"] == WORKERS * 15
    assert sum(r["throttled"] for r in results) == 0
    # The four processes queued behind each other: together never more than the quota
    # (20 per second plus the burst of 5) in any one-second window.
    assert max_in_any_window([e["t"] for e in log], 1.0) <= 25
    # ... and they did have to wait for each other: 60 requests cannot go out in one burst.
    assert sum(r["waited"] for r in results) > 0


@pytest.mark.slow(13)
def test_a_429_seen_by_one_process_pauses_all_of_them(tmp_path: Path) -> None:
    config = SimulatorConfig(port=0, fault_retry_after_s=2)
    with MarketSimulator(config) as sim:
        sim.set_faults({"rate_limited": FaultSpec(rate=0.2, count=1)})
        results = run_workers(sim, tmp_path / "quota.sqlite", 10, "--quota", "20", "--burst", "2")
        log = sim.request_log()
    rejected = [e for e in log if e["status"] == 429]
    assert len(rejected) == 1
    assert sum(r["throttled"] for r in results) == 1
    t429 = rejected[0]["t"]
    # Every process, not just the one that was told, held off for the Retry-After. Requests
    # the others had already sent when the 429 went out may still land just after it (at most
    # one each); nothing is sent once the pause is recorded.
    in_flight = [e for e in log if t429 < e["t"] < t429 + 0.1]
    during_pause = [e for e in log if t429 + 0.1 <= e["t"] < t429 + 2.0 - 0.05]
    assert len(in_flight) <= WORKERS - 1, [e["t"] - t429 for e in in_flight]
    assert during_pause == [], [e["t"] - t429 for e in during_pause]
    assert len([e for e in log if e["status"] == 200]) == WORKERS * 10
    waited_long = [r for r in results if r["waited"] >= 1.0]
    assert len(waited_long) >= 2, results


@pytest.mark.parametrize(
    "quota_args", [("--quota", "20", "--burst", "5"), ()], ids=["configured", "learned"]
)
def test_quota_state_survives_in_the_file(tmp_path: Path, quota_args: tuple[str, ...]) -> None:
    """A learned quota is written to the store, so the next process starts paced."""
    from resources.ratelimit.stores import SQLiteQuotaStore, quota_key

    config = SimulatorConfig(port=0, quota_requests=20, quota_window_s=1.0, quota_burst=5)
    with MarketSimulator(config) as sim:
        run_workers(sim, tmp_path / "quota.sqlite", 3, *quota_args)
        store = SQLiteQuotaStore(tmp_path / "quota.sqlite")
        learned = store.learned(quota_key("simulator", sim.url, None))
        store.close()
    # What the server states is kept for every process, configured quota or not: a configured
    # quota is a ceiling, and the quota in force is the lower of the two (here equal: the
    # configured one, with its burst of 5, stays in force).
    assert learned is not None and learned.rate == 20 and learned.source == "RateLimit-Policy"
