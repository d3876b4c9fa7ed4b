"""Waiting for a lagging provider costs no CPU (issue 21): a backfill of an hour the provider
has not finished publishing, measured while it waits for its retry, against the code before the
fix on the same machine in the same run.

    uv run --frozen python benchmarks/wait_cpu.py [--wait-s 300] [--paths cli,command]
        [--baseline-wait-s 60] [--baseline-ref 7cf6aba] [--work-dir DIR]

The simulator (its own process, ``--now`` 20 minutes into the last closed hour) has published
only part of that hour, so raw/bars asks to be tried again in ``FIN_LATE_DATA_RETRY_SECONDS``
(``--wait-s``: 300, the default setting) and, with ``FIN_LATE_DATA_RETRIES=1``, fails naming the
provider's watermark on its retry. Paths, each with its own DAGSTER_HOME, data directory and
quota store, all started at once:

- ``cli``: ``dagster asset materialize -m fin_assets.definitions --select raw/bars,core/bars
  --partition <hour>``: that process is the run worker, the steps are its children.
- ``command``: ``fin-assets backfill --select raw/bars,core/bars --partition-range <hour>...<hour>``
  (the run in its own process too, its events followed by a thread).
- ``baseline cli``: the cli path on ``--baseline-ref`` (7cf6aba, the last commit before the fix)
  exported with ``git archive`` and run with its tree as working directory and PYTHONPATH. It
  spins a core for as long as it waits, so it waits ``--baseline-wait-s`` (60 s; 0 skips it):
  CPU per second of waiting does not depend on how long one waits.

The window measured runs from the moment the step has asked for its retry (``STEP_UP_FOR_RETRY``
in the path's instance) and its process has exited, to one second before the retry is due (the
retry's start-up is work, not waiting). CPU is user +
system time of the path's process and every process below it, those reaped included, from
/proc (``tests.helpers.tree_cpu_s``). At the window's end the run must hold no slot of its
provider's pool; at the end the run must have failed naming the watermark with the hour not
materialized: waiting changed nothing else.

Targets (exit 1 if one is missed): each path of the code under test uses under 5 % of a core
while it waits, and its run ends as described. The baseline's figures are printed beside, as
the ratio of each path's CPU share to the baseline's.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from benchmarks.harness import Targets, start_simulator, table
from benchmarks.memory import clean_env
from benchmarks.scale import Tree, export_tree, which_code, working_tree
from tests.helpers import BIN, run_started_in, step_processes, tree_cpu_s

BASELINE_REF = "7cf6aba"  # the last commit before issue 21's patient executor loop
SELECT = "raw/bars,core/bars"
RAW_BARS = dg.AssetKey(["raw", "bars"])
PROVIDER_BEHIND = timedelta(minutes=20)  # how far into the hour the provider has published
TARGET_CPU_SHARE = 0.05  # of one core, while waiting
POLL_S = 0.5


@dataclass
class Piece:
    """One backfill measured while it waits."""

    path: str  # "cli" or "command"
    tree: Tree
    wait_s: float
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    run_id: str = ""
    due: float = 0.0  # time.time() the retry is due
    began: float = 0.0
    cpu_before: float = 0.0
    waited_s: float = 0.0
    cpu_s: float = 0.0
    held_slot: bool = False
    exit_code: int | None = None
    ended_as_before: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path if self.tree.name == "HEAD" else f"{self.tree.name} {self.path}"

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def share(self) -> float:
        return self.cpu_s / self.waited_s if self.waited_s else float("nan")


def last_closed_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def command(piece: Piece, key: str) -> list[str]:
    if piece.path == "cli":
        materialize = ["asset", "materialize", "-m", "fin_assets.definitions"]
        return [str(BIN / "dagster"), *materialize, "--select", SELECT, "--partition", key]
    backfill = ["backfill", "--select", SELECT, "--partition-range", f"{key}...{key}"]
    return [str(BIN / "fin-assets"), *backfill]


def start(piece: Piece, url: str, key: str) -> None:
    piece.home.mkdir(parents=True)
    (piece.home / "dagster.yaml").write_text((piece.tree.root / "dagster.yaml").read_text())
    env = {
        **clean_env(),
        "PYTHONPATH": str(piece.tree.root),
        "DAGSTER_HOME": str(piece.home),
        "FIN_PROVIDER": "simulator",
        "FIN_API_BASE_URL": url,
        "FIN_SYMBOLS": "AAPL",
        "FIN_DATA_DIR": str(piece.root / "data"),
        "FIN_QUOTA_STORE": str(piece.root / "quota.sqlite"),
        "FIN_LATE_DATA_RETRIES": "1",
        "FIN_LATE_DATA_RETRY_SECONDS": f"{piece.wait_s:g}",
    }
    with (piece.root / "output.log").open("w") as log:
        # Its own session: whatever it leaves behind is killed with it at the end.
        piece.proc = subprocess.Popen(
            command(piece, key),
            cwd=piece.tree.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def step_up_for_retry(instance: dg.DagsterInstance) -> dg.EventLogRecord | None:
    runs = instance.get_runs()
    if not runs:
        return None
    records = instance.get_records_for_run(
        runs[0].run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
    ).records
    return records[0] if records else None


def measure(pieces: list[Piece], watermark: str, key: str) -> None:
    """Every piece's window, polled together; then how each run ended."""
    instances: dict[str, dg.DagsterInstance] = {}
    try:
        waiting = list(pieces)
        deadline = time.monotonic() + max(p.wait_s for p in pieces) + 300
        while waiting and time.monotonic() < deadline:
            for piece in list(waiting):
                assert piece.proc is not None
                if piece.proc.poll() is not None:
                    piece.notes.append("ended before its retry")
                    waiting.remove(piece)
                    continue
                if piece.name not in instances:
                    if not run_started_in(piece.home):
                        continue
                    instances[piece.name] = dg.DagsterInstance.from_config(str(piece.home))
                instance = instances[piece.name]
                if not piece.run_id:
                    retry = step_up_for_retry(instance)
                    # The wait begins once the step's process has exited.
                    if retry is not None and not step_processes(piece.proc.pid):
                        piece.run_id = retry.event_log_entry.run_id
                        piece.due = retry.event_log_entry.timestamp + piece.wait_s
                        piece.began, piece.cpu_before = time.time(), tree_cpu_s(piece.proc.pid)
                elif time.time() >= piece.due - 1.0:
                    piece.waited_s = time.time() - piece.began
                    piece.cpu_s = tree_cpu_s(piece.proc.pid) - piece.cpu_before
                    holders = instance.event_log_storage.get_concurrency_run_ids()
                    piece.held_slot = piece.run_id in holders
                    waiting.remove(piece)
            time.sleep(POLL_S)
        for piece in pieces:
            assert piece.proc is not None
            try:
                piece.exit_code = piece.proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                piece.notes.append("did not end within 300 s of its retry")
                continue
            if piece.run_id and piece.name in instances:
                piece.ended_as_before = ended_as_before(
                    instances[piece.name], piece.run_id, watermark, key
                )
    finally:
        for instance in instances.values():
            instance.dispose()


def ended_as_before(instance: dg.DagsterInstance, run_id: str, watermark: str, key: str) -> bool:
    """Failed on its retry naming the provider's watermark, the hour not materialized."""
    run = instance.get_run_by_id(run_id)
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    messages = [
        f.dagster_event.step_failure_data.error.message
        for f in failures
        if f.dagster_event and f.dagster_event.step_failure_data.error
    ]
    return (
        run is not None
        and run.status == dg.DagsterRunStatus.FAILURE
        and any(f"published bars only up to {watermark}" in m for m in messages)
        and key not in instance.get_materialized_partitions(RAW_BARS)
    )


def kill(piece: Piece) -> None:
    if piece.proc is not None:
        with suppress(ProcessLookupError):
            os.killpg(piece.proc.pid, signal.SIGKILL)
        piece.proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wait-s", type=float, default=300.0)
    parser.add_argument("--paths", default="cli,command")
    parser.add_argument("--baseline-wait-s", type=float, default=60.0)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    if not paths or set(paths) - {"cli", "command"} or args.wait_s < 10:
        parser.error("--paths: cli and/or command; --wait-s: at least 10")

    hour = last_closed_hour()
    key = hour.strftime("%Y-%m-%d-%H:00")
    watermark = (hour + PROVIDER_BEHIND).strftime("%Y-%m-%dT%H:%MZ")
    pieces: list[Piece] = []
    with tempfile.TemporaryDirectory(prefix="fin-assets-wait-cpu-", dir=args.work_dir) as tmp:
        root = Path(tmp)
        head = which_code(working_tree())
        print(f"code under test: {head.describe}")
        pieces = [Piece(p, head, args.wait_s, root / p) for p in paths]
        if args.baseline_wait_s > 0:
            base = which_code(export_tree("baseline", args.baseline_ref, root / "baseline-tree"))
            print(f"baseline: {base.describe}")
            pieces.append(Piece("cli", base, args.baseline_wait_s, root / "baseline"))
        now = (hour + PROVIDER_BEHIND).isoformat()
        simulator, url = start_simulator(["--now", now], log_path=root / "simulator.log")
        began = time.monotonic()
        try:
            for piece in pieces:
                start(piece, url, key)
            print(
                f"{len(pieces)} backfills of {key} waiting for a provider published up to "
                f"{watermark} ({args.wait_s:g} s; baseline {args.baseline_wait_s:g} s) ...",
                flush=True,
            )
            measure(pieces, watermark, key)
        finally:
            for piece in pieces:
                kill(piece)
            simulator.terminate()
            simulator.wait(timeout=30)
        print(f"({time.monotonic() - began:.0f} s)\n")

    baseline = next((p for p in pieces if p.tree.name != "HEAD" and p.waited_s), None)
    rows = []
    for piece in pieces:
        ratio = "—"
        if baseline is not None and piece.waited_s and piece is not baseline:
            ratio = f"{piece.share / baseline.share:.4f}x"
        rows.append(
            [
                piece.name,
                f"{piece.waited_s:.1f}",
                f"{piece.cpu_s:.2f}",
                f"{100 * piece.share:.2f}%" if piece.waited_s else "—",
                ratio,
                "yes" if piece.held_slot else "no",
                "yes" if piece.ended_as_before else "no",
            ]
        )
    print(
        table(
            [
                "path",
                "waited s",
                "CPU s",
                "CPU % of a core",
                "vs baseline",
                "slot held",
                "ended as before",
            ],
            rows,
        )
    )
    print()
    targets = Targets()
    for piece in pieces:
        notes = f" ({'; '.join(piece.notes)})" if piece.notes else ""
        if piece.tree.name != "HEAD":
            targets.note(
                f"{piece.name} CPU while waiting",
                f"{100 * piece.share:.1f}% of a core over {piece.waited_s:.0f} s{notes}",
            )
            continue
        targets.check(
            f"{piece.name}: CPU while waiting < {100 * TARGET_CPU_SHARE:.0f}% of a core",
            bool(piece.waited_s) and piece.share < TARGET_CPU_SHARE,
            f"{piece.cpu_s:.2f} s in {piece.waited_s:.1f} s = {100 * piece.share:.2f}%{notes}",
        )
        targets.check(
            f"{piece.name}: no pool slot held while waiting; failed naming the watermark",
            bool(piece.run_id) and not piece.held_slot and piece.ended_as_before,
            f"slot held: {piece.held_slot}, exit {piece.exit_code}, ended as before: "
            f"{piece.ended_as_before}",
        )
    return targets.report()


if __name__ == "__main__":
    sys.exit(main())
