"""A worker process for the quota-learning tests: ``MarketApiClient`` over the SQLite quota
store against a dialect server (``resources/simulator/dialects.py``) until a deadline, then one
JSON line with what it saw. Run as ``python -m tests.integration.dialect_worker URL STORE
DIALECT --start-at T --until T [--ceiling LIMIT WINDOW]``."""

from __future__ import annotations

import argparse
import json
import time

from resources.errors import FinAssetsError
from resources.http.client import MarketApiClient
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import SQLiteQuotaStore, quota_key
from resources.simulator.dialects import dialect_adapter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("store")
    parser.add_argument("dialect")
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--until", type=float, required=True)
    parser.add_argument("--ceiling", type=float, nargs=2, default=None)
    args = parser.parse_args()
    adapter = dialect_adapter(args.dialect)
    policy = QuotaPolicy(args.ceiling[0], args.ceiling[1], 1) if args.ceiling else None
    pacer = SharedPacer(
        SQLiteQuotaStore(args.store), quota_key(adapter.name, args.url, None), policy=policy
    )
    client = MarketApiClient(
        adapter, base_url=args.url, pacer=pacer, max_attempts=100, max_wait_s=600
    )
    request = adapter.latest_request("AAPL")
    time.sleep(max(0.0, args.start_at - time.time()))  # all workers start together
    failures = 0
    while time.time() < args.until:
        try:
            client.get(request, what="dialect worker")
        except FinAssetsError:
            failures += 1
    print(json.dumps({"requests": client.stats.requests, "failures": failures}))
    client.close()


if __name__ == "__main__":
    main()
