"""``fin-assets migrate-unadjusted <source>``: refetch the bars an earlier version stored adjusted.

Until corporate actions, Polygon/Massive bars were asked ``adjusted=true``: prices divided by
every split known on the day of the request. Such snapshots (dataset ``bars_1m``) are never read
as unadjusted ones (those are ``bars_1m_unadjusted``), and core/bars refuses a partition whose
manifest still names them. This command finds those partitions from the source's manifests and
re-materializes them — raw/bars and core/bars over each contiguous run of them (the new raw
snapshots are fetched unadjusted; partitions in between are not touched), then the daily tables
of the days they cover — in this process, with the same runs and progress lines as
``fin-assets backfill``. The old snapshots stay where they are, never read again; delete
``raw/<feed>/bars_1m/`` to reclaim the space.

    fin-assets migrate-unadjusted us_equities --dry-run   what it would do
    fin-assets migrate-unadjusted us_equities             do it (DAGSTER_HOME: your instance)

Exit status 0 when no partition is left adjusted, 1 when a run failed, 2 for a refused input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from resources.errors import InvalidInputError
from resources.raw.manifest import load_manifest
from resources.raw.snapshots import SnapshotStore


def stale_partitions(store: SnapshotStore, manifests: str, dataset: str) -> list[str]:
    """The partition keys whose raw/bars manifest names another dataset than ``dataset``."""
    return [
        key
        for key in store.manifest_keys(asset=manifests)
        if load_manifest(store, key, directory=manifests).dataset != dataset
    ]


def contiguous_runs(keys: Sequence[str], every: Sequence[str]) -> list[tuple[str, str]]:
    """``keys`` as maximal runs of neighbours in ``every`` (the partitions, in order); a key
    that is not a partition (any more: a calendar's closed hour) is left out."""
    position = {key: index for index, key in enumerate(every)}
    runs: list[tuple[str, str]] = []
    start = previous = None
    for key in sorted((k for k in keys if k in position), key=lambda k: position[k]):
        if previous is not None and position[key] == position[previous] + 1:
            previous = key
            continue
        if start is not None and previous is not None:
            runs.append((start, previous))
        start = previous = key
    if start is not None and previous is not None:
        runs.append((start, previous))
    return runs


def main(argv: Sequence[str], *, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="fin-assets migrate-unadjusted",
        description="Refetch, unadjusted, the bars an earlier version stored split-adjusted.",
    )
    parser.add_argument("source", help="the source's name, e.g. us_equities")
    parser.add_argument("--dry-run", action="store_true", help="only say what would run")
    parser.add_argument("-m", "--module", default="fin_assets.definitions")
    args = parser.parse_args(list(argv))

    from fin_assets.lib.catalog import sources_in_force
    from fin_assets.lib.pipeline import partitions_of
    from fin_assets.lib.settings import Settings
    from resources.raw.manifest import MANIFESTS_DIR

    env = dict(os.environ)
    settings = Settings.from_env(env)
    sources = {s.name or "": s for s in sources_in_force(env, settings)}
    source = sources.get(args.source)
    if source is None:
        names = ", ".join(sorted(n for n in sources if n)) or "none"
        raise InvalidInputError(f"source {args.source!r} is not declared (sources: {names})")
    adapter = settings.adapter_for(source.provider)
    store = SnapshotStore(settings.data_dir)
    manifests = source.table(MANIFESTS_DIR)
    stale = stale_partitions(store, manifests, adapter.bars_dataset)
    if not stale:
        print(
            f"source {source.label}: no partition of raw/bars holds adjusted snapshots "
            f"(manifests under {store.root}/manifests/{manifests}): nothing to migrate",
            file=out,
        )
        return 0
    partitions = partitions_of(source, settings)
    every = partitions.hourly.get_partition_keys()
    runs = contiguous_runs(stale, every)
    days = sorted({key[:10] for key in stale})
    day_runs = contiguous_runs(days, partitions.daily.get_partition_keys())
    hourly = ",".join(source.key(layer, "bars").to_user_string() for layer in ("raw", "core"))
    daily = ",".join(
        source.key("core", name).to_user_string() for name in ("daily_bars", "daily_returns")
    )
    print(
        f"source {source.label}: {len(stale)} partition(s) of raw/bars hold snapshots fetched "
        f"adjusted ({stale[0]} ... {stale[-1]}); refetching them unadjusted in {len(runs)} "
        f"run(s), then the daily tables of {len(days)} day(s)",
        file=out,
    )
    for first, last in runs:
        print(f"  {hourly} {first}...{last}", file=out)
    for first, last in day_runs:
        print(f"  {daily} {first}...{last}", file=out)
    if args.dry_run:
        return 0

    import dagster as dg

    from fin_assets.tools.backfill import Request, require_dagster_home, run_here

    require_dagster_home()
    instance = dg.DagsterInstance.get()
    for select, ranges in ((hourly, runs), (daily, day_runs)):
        for first, last in ranges:
            status = run_here(Request(select, first, last, args.module), instance, out)
            if status != 0:
                return status
    left = stale_partitions(store, manifests, adapter.bars_dataset)
    if left:
        print(f"still adjusted after the runs: {', '.join(left[:5])}", file=out)
        return 1
    print(f"source {source.label}: every partition of raw/bars is unadjusted now", file=out)
    return 0
