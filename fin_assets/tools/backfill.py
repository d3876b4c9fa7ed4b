"""``fin-assets backfill``: a long partition range, with flat memory and a progress display.

    fin-assets backfill --select raw/bars,core/bars \
        --partition-range 2025-06-01-00:00...2025-11-27-23:00
    fin-assets backfill ... --submit     hand it to the running dagster-daemon (UI: Backfills)

``dagster asset materialize --partition-range`` runs the range in one run too, but its process
keeps every event of the run in memory until the end (Dagster's ``ExecutionResult``): a few
KB per partition, which over years of hourly partitions is the OOM kill of a cron script again.
This command runs the same single run (same job, same tags, same run in the UI) and lets the
events go by: without ``--submit`` the run executes in this process, like the CLI's; with
``--submit`` it becomes a Dagster asset backfill that the daemon runs (the same thing as the UI's
"Materialize selected" on a range), and this command only follows it.

Either way it prints the steps' progress lines (``fin_assets/lib/progress.py``: partitions done /
left, requests, rows, ETA) as they reach the run's event log, and exits 0 only if every run of
the range succeeded; otherwise 1, with each failed step's message. What it cannot start (no
instance, a selection or range that is not the assets', no daemon for ``--submit``) it refuses
before any run, request or write: one line naming the option, the asset and the key, with
what to give instead, exit status 2 (``InvalidInputError``, printed by ``fin_assets/tools/cli.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import dagster as dg

from fin_assets.dagster_internals.backfill import (
    RangeJob,
    backfill_requested,
    backfill_runs,
    create_range_run,
    execute_in_process,
    resolve_range,
    submit_backfill,
)
from fin_assets.lib.partitions import partition_range_keys
from fin_assets.lib.progress import Progress, format_duration, parse_progress
from resources.errors import InvalidInputError

DEFAULT_MODULE = "fin_assets.definitions"
POLL_S = 2.0
# Run-log records read per query while following: small pages keep this process's memory flat
# (1000 records of a range run's check evaluations made its peak 20-30 MiB higher).
PAGE = 100
# How recent a backfill-daemon heartbeat must be for --submit to count on it.
DAEMON_HEARTBEAT_S = 120.0
BAR_WIDTH = 24


@dataclass(frozen=True)
class Request:
    select: str
    first: str
    last: str
    module: str = DEFAULT_MODULE


@dataclass
class Follower:
    """Reads runs' event logs as they grow: progress lines and step failures."""

    instance: dg.DagsterInstance
    out: TextIO
    cursors: dict[str, str | None] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def poll(self, run_id: str) -> None:
        while True:
            conn = self.instance.get_records_for_run(
                run_id, cursor=self.cursors.get(run_id), limit=PAGE
            )
            for record in conn.records:
                self._see(record.event_log_entry)
            self.cursors[run_id] = conn.cursor
            if not conn.has_more:
                return

    def _see(self, entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None:
            progress = parse_progress(entry.user_message)
            if progress is not None:
                print(render(progress), file=self.out, flush=True)
            return
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            message = error.message.strip() if error else "(no message)"
            self.failures.append(f"{event.step_key}: {message}")


def render(progress: Progress) -> str:
    filled = round(BAR_WIDTH * progress.done / progress.total) if progress.total else BAR_WIDTH
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    percent = 100.0 * progress.done / progress.total if progress.total else 100.0
    return (
        f"{progress.asset:<22} [{bar}] {progress.done}/{progress.total} partitions "
        f"{percent:5.1f}%  left {progress.left}  {progress.requests} requests  "
        f"{progress.rows} rows  ETA {progress.eta}"
    )


def resolve(request: Request) -> RangeJob:
    """The range run of the request, refused as its steps would refuse it."""
    return resolve_range(
        request.module, request.select, request.first, request.last, check=partition_range_keys
    )


def run_here(request: Request, instance: dg.DagsterInstance, out: TextIO) -> int:
    """One run of the range, executed in this process; its events are not kept."""
    job = resolve(request)
    run = create_range_run(instance, job)
    print(f"run {run.run_id}: {request.select} {request.first}...{request.last}", file=out)
    follower = Follower(instance, out)
    done = threading.Event()

    def follow() -> None:
        while not done.wait(POLL_S):
            follower.poll(run.run_id)

    thread = threading.Thread(target=follow, name="fin-assets-backfill-follow", daemon=True)
    thread.start()
    began = time.monotonic()
    try:
        execute_in_process(job, run, instance)
    finally:
        done.set()
        thread.join()
        follower.poll(run.run_id)
    return _summary(instance, [run.run_id], follower, time.monotonic() - began, out)


def submit(request: Request, instance: dg.DagsterInstance, out: TextIO) -> int:
    """An asset backfill for the daemon (what the UI launches), followed until it is done."""
    job = resolve(request)
    require_daemon(instance)
    title = f"fin-assets backfill {request.select} {request.first}...{request.last}"
    backfill_id, count = submit_backfill(instance, job, title)
    follower = Follower(instance, out)
    began = time.monotonic()
    run_ids: list[str] = []
    try:
        print(f"backfill {backfill_id}: {count} partitions, for the daemon", file=out, flush=True)
        while True:
            requested = backfill_requested(instance, backfill_id)
            runs = backfill_runs(instance, backfill_id)
            for record in runs:
                if record.dagster_run.run_id not in run_ids:
                    run_ids.append(record.dagster_run.run_id)
                    print(f"run {record.dagster_run.run_id}", file=out, flush=True)
                follower.poll(record.dagster_run.run_id)
            if not requested and all(r.dagster_run.is_finished for r in runs):
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        # The backfill is the daemon's now: stopping to follow it does not stop it.
        print(
            f"stopped following backfill {backfill_id}; the daemon goes on with it: follow or "
            "cancel it in the UI (Backfills)",
            file=out,
            flush=True,
        )
        return 130
    return _summary(instance, run_ids, follower, time.monotonic() - began, out)


def require_daemon(instance: dg.DagsterInstance) -> None:
    """--submit hands the range to a dagster-daemon: refuse it when none is running, rather
    than leave a backfill nobody runs."""
    beat = instance.get_daemon_heartbeats().get("BACKFILL")
    if beat is None or time.time() - beat.timestamp > DAEMON_HEARTBEAT_S:
        raise InvalidInputError(
            "--submit: no dagster-daemon is running for this instance (no backfill-daemon "
            f"heartbeat in the last {DAEMON_HEARTBEAT_S:.0f} s under DAGSTER_HOME="
            f"{os.environ.get('DAGSTER_HOME', '')}): start one "
            "(`dagster-daemon run -w workspace.yaml`, or `make ui`), or leave out --submit to "
            "run the range in this process; nothing was submitted"
        )


def require_dagster_home() -> None:
    """The instance directory a backfill is recorded in (the one the UI and the daemon read);
    InvalidInputError, before anything is loaded, when DAGSTER_HOME does not name one."""
    home = os.environ.get("DAGSTER_HOME", "")
    fix = (
        "point it at your instance's directory, e.g. `export DAGSTER_HOME=$PWD/.dagster_home` "
        "(`make ui` and `make demo` create it)"
    )
    if not home:
        raise InvalidInputError(
            "DAGSTER_HOME is not set: a backfill is recorded in a Dagster instance, the one "
            f"the UI and dagster-daemon read; {fix}"
        )
    path = os.path.expanduser(home)
    if not os.path.isabs(path):
        raise InvalidInputError(f"DAGSTER_HOME={home} is not an absolute path; {fix}")
    if not os.path.isdir(path):
        raise InvalidInputError(f"DAGSTER_HOME={home} is not a directory; {fix}")


def _summary(
    instance: dg.DagsterInstance,
    run_ids: Sequence[str],
    follower: Follower,
    seconds: float,
    out: TextIO,
) -> int:
    runs = [instance.get_run_by_id(run_id) for run_id in run_ids]
    failed = [run for run in runs if run is None or run.status != dg.DagsterRunStatus.SUCCESS]
    for message in follower.failures:
        print(f"failed: {message}", file=out)
    state = "failed" if failed or not runs else "succeeded"
    print(
        f"backfill {state} in {format_duration(seconds)}: {len(runs)} run(s) "
        f"({', '.join(run_ids) or 'none'})",
        file=out,
        flush=True,
    )
    return 1 if failed or not runs else 0


def main(argv: Sequence[str], *, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="fin-assets backfill",
        description="Materialize a partition range in one run with flat memory, showing "
        "partitions done / left, requests, rows and an ETA.",
    )
    parser.add_argument("--select", required=True, help="asset keys, e.g. raw/bars,core/bars")
    parser.add_argument(
        "--partition-range", required=True, metavar="FIRST...LAST", help="inclusive, as the UI"
    )
    parser.add_argument("-m", "--module", default=DEFAULT_MODULE, help="the code location")
    parser.add_argument(
        "--submit",
        action="store_true",
        help="hand the range to the running dagster-daemon as an asset backfill and follow it",
    )
    args = parser.parse_args(argv)
    bounds = args.partition_range.split("...")
    if len(bounds) != 2 or not all(bounds):
        raise InvalidInputError(
            f"--partition-range {args.partition_range!r}: expected FIRST...LAST, two partition "
            "keys joined by three dots, both included (e.g. 2026-01-05-00:00...2026-01-05-23:00 "
            "for hourly assets)"
        )
    request = Request(select=args.select, first=bounds[0], last=bounds[1], module=args.module)
    runner: Callable[[Request, dg.DagsterInstance, TextIO], int] = (
        submit if args.submit else run_here
    )
    require_dagster_home()  # refused before the code location loads: no instance, no backfill
    with dg.DagsterInstance.get() as instance:
        return runner(request, instance, out)
