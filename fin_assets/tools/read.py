"""``fin-assets read SOURCE``: a source's bars written out as CSV (stdout by default) or Parquet.

    fin-assets read us_equities --symbols AAPL,MSFT --start 2026-01-16 --end 2026-01-21
    fin-assets read crypto --symbols BTCUSD --start 2026-01-16T12:00Z --end 2026-01-17 \\
        --interval 1d --format parquet --output btc.parquet

The range is ``[--start, --end)``: a date is its UTC midnight, a time must say its zone.
What is read is ``fin_assets.lib.read.read_bars``; a refused input (source, symbol, range,
interval, adjustment, format) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

from resources.errors import InvalidInputError
from resources.tables.read import ADJUSTMENTS, DEFAULT_ADJUSTMENT, DEFAULT_INTERVAL, INTERVALS

FORMATS = ("csv", "parquet")


def parse_bound(value: str, *, name: str) -> date | datetime:
    """``2026-01-16`` (a date) or an ISO time with its zone (``2026-01-16T14:30Z``)."""
    try:
        if len(value) == len("2026-01-16"):
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"--{name} {value!r}: expected a date (2026-01-16) or a UTC time (2026-01-16T14:30Z)"
        ) from None


def main(argv: Sequence[str], *, out: BinaryIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fin-assets read",
        description="Write a source's bars over [--start, --end) as CSV or Parquet.",
    )
    parser.add_argument("source", help="a declared source, e.g. us_equities")
    parser.add_argument("--symbols", required=True, help="comma-separated, e.g. AAPL,MSFT")
    parser.add_argument("--start", required=True, help="first day or time, included (UTC)")
    parser.add_argument("--end", required=True, help="day or time after the last, excluded")
    # Choices are checked by read_bars, so a bad one is the same one line as any refused input.
    parser.add_argument("--interval", default=DEFAULT_INTERVAL, help=", ".join(INTERVALS))
    parser.add_argument("--adjustment", default=DEFAULT_ADJUSTMENT, help=", ".join(ADJUSTMENTS))
    parser.add_argument("--format", default="csv", help="csv (default) or parquet")
    parser.add_argument("--output", type=Path, help="a file (default stdout; parquet needs one)")
    args = parser.parse_args(list(argv))
    if args.format not in FORMATS:
        raise InvalidInputError(f"unknown --format {args.format!r}: expected csv or parquet")
    if args.format == "parquet" and args.output is None:
        raise InvalidInputError("--format parquet needs --output FILE (Parquet is not for a tty)")
    start = parse_bound(args.start, name="start")
    end = parse_bound(args.end, name="end")

    from fin_assets.lib.read import read_bars

    bars = read_bars(
        args.source,
        args.symbols,
        start,
        end,
        interval=args.interval,
        adjustment=args.adjustment,
    ).collect()
    if args.format == "parquet":
        bars.write_parquet(args.output)
    elif args.output is not None:
        bars.write_csv(args.output)
    else:
        bars.write_csv(out if out is not None else sys.stdout.buffer)
    return 0
