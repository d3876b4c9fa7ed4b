"""A worker process for the shared-quota tests: N requests through MarketApiClient with the
SQLite quota store, then one JSON line with what it saw. Run as
``python -m tests.integration.quota_worker URL STORE N [--quota Q --window W --burst B]``."""

from __future__ import annotations

import argparse
import itertools
import json
import time
from datetime import UTC, datetime, timedelta

from resources.http.client import MarketApiClient
from resources.providers import get_adapter
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import SQLiteQuotaStore, quota_key


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("store")
    parser.add_argument("requests", type=int)
    parser.add_argument("--quota", type=float, default=None)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--provider", default="simulator")
    parser.add_argument("--symbol", default="AAPL")
    # A busy host: every Nth booking (the first included) is followed by this many milliseconds
    # off the CPU before the request goes out, as the scheduler, a page-fault storm or a GC
    # pause does to a process.
    parser.add_argument("--stall-ms", type=float, default=0.0)
    parser.add_argument("--stall-every", type=int, default=4)
    args = parser.parse_args()
    adapter = get_adapter(args.provider)
    policy = QuotaPolicy(args.quota, args.window, args.burst) if args.quota else None
    policy = policy or adapter.default_quota
    pacer = SharedPacer(
        SQLiteQuotaStore(args.store), quota_key(adapter.name, args.url, None), policy=policy
    )
    if args.stall_ms:
        reserve, bookings = pacer.reserve, itertools.count()

        def stalled_reserve(weight: int = 1) -> float:
            wait = reserve(weight)
            if next(bookings) % args.stall_every == 0:
                time.sleep(args.stall_ms / 1000)
            return wait

        pacer.reserve = stalled_reserve  # type: ignore[method-assign]
    client = MarketApiClient(adapter, base_url=args.url, pacer=pacer, max_wait_s=30)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    request = adapter.bars_request(args.symbol, start=start, end=start + timedelta(minutes=1))
    time.sleep(max(0.0, args.start_at - time.time()))  # all workers start together
    for _ in range(args.requests):
        client.get(request, what="quota worker")
    print(
        json.dumps(
            {
                "requests": client.stats.requests,
                "throttled": client.stats.throttled,
                "waited": client.stats.seconds_waited,
            }
        )
    )
    client.close()


if __name__ == "__main__":
    main()
