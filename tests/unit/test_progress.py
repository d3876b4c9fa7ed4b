"""Progress lines: throttled, with a rate and an ETA, and read back by ``fin-assets backfill``."""

from __future__ import annotations

from fin_assets.lib.progress import ProgressReporter, format_duration, parse_progress
from fin_assets.tools.backfill import render


def test_one_line_per_interval_then_the_last_and_an_eta_from_the_rate() -> None:
    now = [100.0]
    lines: list[str] = []
    reporter = ProgressReporter(
        lines.append, asset="raw/bars", total=4320, every_s=10.0, clock=lambda: now[0]
    )
    now[0] = 102.0
    reporter.update(86.4, requests=36, rows=25_920)  # the first update always shows
    now[0] = 105.0
    reporter.update(400, requests=100, rows=120_000)  # within 10 s of the last: not shown
    now[0] = 112.0
    reporter.update(1296, requests=540, rows=388_800)
    now[0] = 113.0
    reporter.update(4320, requests=1800, rows=1_296_000, final=True)
    assert lines == [
        "progress raw/bars: 86/4320 partitions (2.0%), 36 requests, 25920 rows, "
        "43.2 partitions/s, ETA 1m38s",
        "progress raw/bars: 1296/4320 partitions (30.0%), 540 requests, 388800 rows, "
        "108.0 partitions/s, ETA 28s",
        "progress raw/bars: 4320/4320 partitions (100.0%), 1800 requests, 1296000 rows, "
        "332.3 partitions/s, ETA 0s",
    ]
    parsed = parse_progress(lines[1])
    assert parsed is not None
    assert (parsed.asset, parsed.done, parsed.left, parsed.requests, parsed.rows, parsed.eta) == (
        "raw/bars",
        1296,
        3024,
        540,
        388_800,
        "28s",
    )
    assert render(parsed).startswith("raw/bars               [#######.................] 1296/4320")


def test_names_with_spaces_and_lines_that_are_not_progress() -> None:
    lines: list[str] = []
    ProgressReporter(lines.append, asset="core/bars checks", total=48).update(48, final=True)
    parsed = parse_progress(lines[0])
    assert parsed is not None and parsed.asset == "core/bars checks" and parsed.left == 0
    assert parse_progress("raw/bars: 48 partition(s), 2 symbol(s): 4 snapshot(s) written") is None


def test_durations_read_as_a_person_reads_them() -> None:
    assert [format_duration(s) for s in (None, 0.4, 59, 61, 3600 * 5 + 125)] == [
        "?",
        "0s",
        "59s",
        "1m01s",
        "5h02m",
    ]
