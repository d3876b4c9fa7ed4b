"""Progress of a long step, as a person watches it: partitions done / left, requests, rows, ETA.

A step that works through a range (raw/bars fetching, core/bars building, the quality checks)
reports through a ``ProgressReporter``: at most one line every ``every_s`` seconds, plus the
last, in the run's log (the UI's run view shows them next to the step), for example::

    progress raw/bars: 1296/4320 partitions (30.0%), 540 requests, 388800 rows,
        21.6 partitions/s, ETA 2m20s    (one line)

``fin-assets backfill`` reads the same lines back (``parse_progress``) to draw its terminal
progress bar, so the format is written once, here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

PREFIX = "progress "
_LINE = re.compile(
    r"progress (?P<asset>.+?): (?P<done>\d+)/(?P<total>\d+) partitions \([\d.]+%\), "
    r"(?P<requests>\d+) requests, (?P<rows>\d+) rows, (?P<rate>[\d.]+) partitions/s, "
    r"ETA (?P<eta>\S+)"
)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@dataclass(frozen=True)
class Progress:
    asset: str
    done: int
    total: int
    requests: int
    rows: int
    rate: float  # partitions per second since the step began
    eta: str  # as printed: "2m20s", "0s", "?"

    @property
    def left(self) -> int:
        return self.total - self.done

    def line(self) -> str:
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{PREFIX}{self.asset}: {self.done}/{self.total} partitions ({percent:.1f}%), "
            f"{self.requests} requests, {self.rows} rows, {self.rate:.1f} partitions/s, "
            f"ETA {self.eta}"
        )


def parse_progress(message: str) -> Progress | None:
    """The ``Progress`` in a run-log message, or None if the message is not a progress line."""
    match = _LINE.search(message)
    if match is None:
        return None
    return Progress(
        asset=match["asset"],
        done=int(match["done"]),
        total=int(match["total"]),
        requests=int(match["requests"]),
        rows=int(match["rows"]),
        rate=float(match["rate"]),
        eta=match["eta"],
    )


class ProgressReporter:
    """Turns a step's running totals into progress lines, at most one every ``every_s``."""

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        asset: str,
        total: int,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._asset = asset
        self._total = total
        self._every_s = every_s
        self._clock = clock
        self._began = clock()
        self._last: float | None = None

    def update(self, done: float, *, requests: int = 0, rows: int = 0, final: bool = False) -> None:
        """``done``: partitions' worth of work finished (fractions allowed while fetching)."""
        now = self._clock()
        if not final and self._last is not None and now - self._last < self._every_s:
            return
        self._last = now
        done = min(max(done, 0.0), float(self._total))
        elapsed = now - self._began
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = 0.0 if done >= self._total else (self._total - done) / rate if rate > 0 else None
        progress = Progress(
            asset=self._asset,
            done=int(done),
            total=self._total,
            requests=requests,
            rows=rows,
            rate=rate,
            eta=format_duration(eta),
        )
        self._emit(progress.line())
