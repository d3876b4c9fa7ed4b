"""``fin-assets``: the project's command line.

fin-assets simulator [--port 8765 ...]   serve the market-data simulator on loopback
                     [--declared-sources]  ... with every declared source's market
fin-assets demo [--start 2026-01-05 --days 2]
                                        simulator + a real Dagster instance, end to end
fin-assets metrics [--port 9465 --host 127.0.0.1]
                                        Prometheus exporter over $DAGSTER_HOME and the quota
fin-assets backfill --select raw/bars,core/bars --partition-range FIRST...LAST [--submit]
                                        a long range in one run, flat memory, with progress
fin-assets migrate-unadjusted SOURCE [--dry-run]
                                        refetch bars an earlier version stored split-adjusted
fin-assets read SOURCE --symbols AAPL,MSFT --start 2026-01-16 --end 2026-01-21
                [--interval 1m|1d] [--adjustment none|splits|splits_and_dividends]
                [--format csv|parquet] [--output FILE]
                                        a source's bars as CSV (stdout) or Parquet
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run a command; a bad setting or input ends it with one line naming it, exit status 2."""
    from resources.errors import InvalidInputError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except InvalidInputError as exc:
        print(f"fin-assets {argv[0] if argv else ''}: {exc}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fin-assets", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        choices=["simulator", "demo", "metrics", "backfill", "migrate-unadjusted", "read"],
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args, rest = parser.parse_known_args(argv[:1])
    # Imports are per command: the simulator should not pay for importing Dagster.
    if args.command == "simulator":
        from resources.simulator.cli import serve_forever_from_args

        rest = argv[1:]
        if "--declared-sources" in rest:
            # Serve every declared source's market (us_equities on XNYS ...), as `make
            # simulator` does for the default deployment.
            from fin_assets.lib.catalog import declared_markets, simulator_calendar_args

            rest.remove("--declared-sources")
            rest += simulator_calendar_args(declared_markets())
        return serve_forever_from_args(rest)
    if args.command == "metrics":
        return metrics(argv[1:])
    if args.command == "backfill":
        from fin_assets.tools.backfill import main as backfill

        return backfill(argv[1:])
    if args.command == "migrate-unadjusted":
        from fin_assets.tools.migrate import main as migrate

        return migrate(argv[1:])
    if args.command == "read":
        from fin_assets.tools.read import main as read

        return read(argv[1:])
    from fin_assets.tools.demo import run_demo

    return run_demo(argv[1:])


def metrics(argv: list[str]) -> int:
    import logging
    import os

    from fin_assets.tools.metrics import DEFAULT_PORT, serve

    parser = argparse.ArgumentParser(
        prog="fin-assets metrics",
        description="Serve Prometheus metrics read from the Dagster instance ($DAGSTER_HOME) "
        "and the quota store (FIN_QUOTA_STORE) at http://HOST:PORT/metrics.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument(
        "--cache-seconds",
        type=float,
        default=None,
        help="scrapes within this many seconds share one reading (default: "
        "FIN_METRICS_CACHE_SECONDS)",
    )
    parser.add_argument(
        "--describe",
        action="store_true",
        help="print what the exporter reads from the definitions (JSON) and exit",
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.describe:
        from fin_assets.tools.metrics import load_code_location

        print(load_code_location(env).to_json())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up, every start
    return serve(host=args.host, port=args.port, cache_s=args.cache_seconds, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
