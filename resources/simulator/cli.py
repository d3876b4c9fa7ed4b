"""``fin-assets simulator``: serve the simulator in the foreground until SIGINT/SIGTERM.

Prints ``simulator listening on <url>`` once it serves (with ``--port 0`` that is how a parent
process learns the port), and exits 1 with a reason on stderr if it cannot start.

``--calendar XNYS:AAPL,MSFT --calendar XLON:VOD.L`` serves those symbols in their exchange's
sessions only; every other symbol trades 24/7.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from typing import Any

from resources.simulator.data import SYMBOL_PATTERN, check_calendar
from resources.simulator.faults import FaultSpec
from resources.simulator.protocol import parse_iso
from resources.simulator.server import MarketSimulator, SimulatorConfig

__all__ = ["serve_forever_from_args"]

# Each fault's command-line flag: the probability that a /v1/bars request gets it.
_FAULT_FLAGS: tuple[tuple[str, str], ...] = (
    ("--rate-limited-rate", "rate_limited"),
    ("--error-rate", "server_error"),
    ("--truncate-rate", "truncated_body"),
    ("--malformed-rate", "malformed_json"),
    ("--throttle-rate", "throttle_body"),
    ("--drift-rate", "schema_drift"),
)


def _rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number") from None
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError("must be within 0..1")
    return rate


def _iso_arg(value: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected ISO-8601 UTC, e.g. 2026-01-05T00:00:00Z"
        ) from None


def _calendar_arg(value: str) -> tuple[str, tuple[str, ...]]:
    """``NAME:SYM[,SYM...]`` -> (calendar name, symbols), the calendar checked and loaded."""
    name, colon, listed = value.partition(":")
    symbols = tuple(s.strip() for s in listed.split(","))
    if not colon or not name.strip() or not listed.strip():
        raise argparse.ArgumentTypeError(
            f"expected CALENDAR:SYMBOL[,SYMBOL...], e.g. XNYS:AAPL,MSFT, not {value!r}"
        )
    bad = [s for s in symbols if not SYMBOL_PATTERN.fullmatch(s)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"{value!r}: invalid symbol(s) {', '.join(map(repr, bad))} "
            "(upper-case letters and digits, e.g. AAPL, BRK.B, VOD.L)"
        )
    try:
        check_calendar(name.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name.strip(), symbols


def _calendars(
    parser: argparse.ArgumentParser, given: list[tuple[str, tuple[str, ...]]]
) -> dict[str, str]:
    calendars: dict[str, str] = {}
    for name, symbols in given:
        for symbol in symbols:
            if calendars.get(symbol, name) != name:
                parser.error(
                    f"argument --calendar: symbol {symbol} is on two calendars "
                    f"({calendars[symbol]} and {name}); a symbol trades on one"
                )
            calendars[symbol] = name
    return calendars


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fin-assets simulator", description="Deterministic fake market-data API."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 = ephemeral")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accepted API key (repeatable); none = no auth",
    )
    p.add_argument("--quota", type=int, default=None, help="requests per key per window")
    p.add_argument("--quota-window", type=float, default=1.0, help="quota window seconds")
    p.add_argument(
        "--quota-burst",
        type=int,
        default=None,
        help="token-bucket quota: at most this many back to back (default: fixed window)",
    )
    p.add_argument("--page-limit", type=int, default=1000, help="max bars per page")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--now", type=_iso_arg, default=None, help="fixed 'now' (UTC ISO-8601)")
    p.add_argument(
        "--clock-lag-hours",
        type=float,
        default=0.0,
        help="start this many hours behind the wall clock (a provider publishing late)",
    )
    p.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="while lagging, the clock runs this many times faster than real time",
    )
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument(
        "--calendar",
        action="append",
        dest="calendars",
        type=_calendar_arg,
        default=[],
        metavar="CALENDAR:SYMBOL[,SYMBOL...]",
        help="serve these symbols only in this exchange_calendars calendar's sessions, "
        "e.g. XNYS:AAPL,MSFT (repeatable); other symbols trade 24/7",
    )
    for flag, name in _FAULT_FLAGS:
        p.add_argument(flag, type=_rate, default=0.0, help=f"probability of {name}")
    return p


def serve_forever_from_args(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground until SIGINT/SIGTERM; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    calendars = _calendars(parser, args.calendars)
    rates = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name in _FAULT_FLAGS}
    try:
        config = SimulatorConfig(
            host=args.host,
            port=args.port,
            api_keys=frozenset(args.api_keys) if args.api_keys else None,
            quota_requests=args.quota,
            quota_window_s=args.quota_window,
            quota_burst=args.quota_burst,
            page_limit_max=args.page_limit,
            seed=args.seed,
            now=args.now,
            clock_lag_s=args.clock_lag_hours * 3600.0,
            clock_speed=args.clock_speed,
            latency_ms=args.latency_ms,
            faults={name: FaultSpec(rate=r) for name, r in rates.items() if r > 0},
            calendars=calendars,
        )
        sim = MarketSimulator(config).start()
    except (OSError, ValueError) as exc:
        print(f"simulator failed to start: {exc}", file=sys.stderr, flush=True)
        return 1

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    # signal.signal only works on the main thread; elsewhere the caller must stop us.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    print(f"simulator listening on {sim.url}", flush=True)
    try:
        # Timed waits so signal handlers get a chance to run promptly.
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
