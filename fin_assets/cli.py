"""``fin-assets``: the project's command line.

fin-assets simulator [--port 8765 ...]   serve the market-data simulator on loopback
                     [--declared-sources]  ... with every declared source's market
fin-assets demo [--start 2026-01-05 --days 2]
                                        simulator + a real Dagster instance, end to end
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="fin-assets", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["simulator", "demo"])
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
            from fin_assets.declared import declared_markets, simulator_calendar_args

            rest.remove("--declared-sources")
            rest += simulator_calendar_args(declared_markets())
        return serve_forever_from_args(rest)
    from fin_assets.demo import run_demo

    return run_demo(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
