"""What every benchmark here does the same way: start the simulator as its own process, print
one Markdown table, and check its targets (PASS/FAIL lines; the script exits 1 on a FAIL).

Benchmarks are run as files (``uv run --frozen python benchmarks/<name>.py``); the project root
is importable because the project is installed in the environment.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Shared with the tests: where the project is, how a process is stopped.
from tests.helpers import PROJECT_ROOT, stop_process


# -- processes ------------------------------------------------------------------------------
@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """``count`` processes spinning ``while True: pass`` for as long as the block runs: a busy
    host, each hog wanting a whole core."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        if hogs:
            print(f"{count} CPU hog(s) running beside the benchmark", flush=True)
        yield
    finally:
        for hog in hogs:
            stop_process(hog, timeout=5)


def start_simulator(
    args: Sequence[str] = (), *, log_path: Path, timeout_s: float = 30.0
) -> tuple[subprocess.Popen[str], str]:
    """``fin-assets simulator --port 0 <args>`` as its own process; returns it and its URL."""
    command = [sys.executable, "-m", "fin_assets.tools.cli", "simulator", "--port", "0", *args]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log, text=True
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = proc.stdout.readline()
            if not line:
                break  # the simulator exited
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                return proc, match.group(1)
    stop_process(proc, timeout=5)
    raise RuntimeError(f"simulator did not start: {log_path.read_text()[-2000:]}")


# -- report ---------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; columns whose cells are all numbers are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]

    def numeric(column: int) -> bool:
        return all(re.fullmatch(r"[-+]?[\d,.]+[x%]?|—", row[column]) for row in cells)

    right = [bool(cells) and numeric(i) for i in range(len(headers))]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [
            f"{v:>{w}}" if r else f"{v:<{w}}" for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if r else "-" * (w + 2)
            for w, r in zip(widths, right, strict=True)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


@dataclass
class Targets:
    """PASS/FAIL lines for a benchmark's targets; ``ok`` is False once any target fails."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def check(self, name: str, passed: bool, shown: str) -> None:
        self.ok &= bool(passed)
        self.lines.append(f"{'PASS' if passed else 'FAIL'}  {name}: {shown}")

    def skip(self, name: str, why: str) -> None:
        self.lines.append(f"SKIP  {name}: {why}")

    def note(self, name: str, shown: str) -> None:
        """A figure reported beside the targets, not one of them."""
        self.lines.append(f"INFO  {name}: {shown}")

    def report(self) -> int:
        for entry in self.lines:
            print(entry)
        return 0 if self.ok else 1


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result
