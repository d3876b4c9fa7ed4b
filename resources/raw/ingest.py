"""Fetch what is missing, keep it verbatim: the raw layer's logic, free of Dagster.

For each symbol the requested window is compared with the snapshots already stored; only the
gaps are fetched (a re-run or a retry resumes without spending quota again), page by page with
the provider's largest page, each page written as soon as it arrives (memory stays flat however
long the range). ``refresh=True`` fetches the whole window again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from resources.http.client import MarketApiClient
from resources.raw.snapshots import SnapshotRef, SnapshotStore
from resources.validation import ensure_utc

BARS_DATASET = "bars_1m"
# Partitions whose manifests are built from one listing of each symbol's snapshots (a week).
MANIFEST_CHUNK = 168


@dataclass
class IngestStats:
    snapshots_written: int = 0
    snapshots_reused: int = 0
    bars_fetched: int = 0
    # The pages fetched, kept only with refresh=True (its manifests prefer them): one small
    # record per page, not the bars.
    fetched_refs: list[SnapshotRef] = field(default_factory=list)


def ingest_bars(
    client: MarketApiClient,
    store: SnapshotStore,
    symbols: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    refresh: bool = False,
    on_page: Callable[[SnapshotRef], None] | None = None,
    label: str | None = None,
) -> IngestStats:
    start, end = ensure_utc(start), ensure_utc(end)
    stats = IngestStats()
    provider = client.provider
    for symbol in symbols:
        if refresh:
            gaps = [(start, end)]
        else:
            gaps = store.uncovered(
                provider=provider, dataset=BARS_DATASET, symbol=symbol, start=start, end=end
            )
            stats.snapshots_reused += len(
                store.list(
                    provider=provider, dataset=BARS_DATASET, symbol=symbol, start=start, end=end
                )
            )
        for gap_start, gap_end in gaps:
            for page in client.iter_pages(symbol, start=gap_start, end=gap_end, label=label):
                ref = store.write(
                    provider=provider,
                    dataset=BARS_DATASET,
                    symbol=symbol,
                    start=page.coverage_start,
                    end=page.coverage_end,
                    body=page.response.body,
                    meta={
                        "url": page.response.url,  # already redacted by the client
                        "status": page.response.status,
                        "headers": page.response.headers,
                        "fetched_at": page.response.fetched_at.isoformat(),
                        "bar_count": page.bar_count,
                    },
                )
                stats.snapshots_written += 1
                stats.bars_fetched += page.bar_count
                if refresh:
                    stats.fetched_refs.append(ref)
                if on_page is not None:
                    on_page(ref)
    return stats


def build_manifest(
    store: SnapshotStore,
    *,
    provider: str,
    symbols: Sequence[str],
    partition_key: str,
    start: datetime,
    end: datetime,
    prefer: Sequence[SnapshotRef] = (),
) -> dict[str, object]:
    """The snapshots that cover one partition window, per symbol.

    With ``prefer`` (a refresh's fresh pages) those are used where they cover the window;
    otherwise every stored snapshot overlapping it is listed and core/bars keeps the newest
    copy of each minute.
    """
    ((_, manifest),) = build_manifests(
        store,
        provider=provider,
        symbols=symbols,
        partitions=[(partition_key, start, end)],
        prefer=prefer,
    )
    return manifest


def build_manifests(
    store: SnapshotStore,
    *,
    provider: str,
    symbols: Sequence[str],
    partitions: Sequence[tuple[str, datetime, datetime]],
    prefer: Sequence[SnapshotRef] = (),
    chunk: int = MANIFEST_CHUNK,
) -> Iterator[tuple[str, dict[str, object]]]:
    """``(partition_key, manifest)`` for each ``(key, start, end)``, as ``build_manifest``
    gives them, listing each symbol's snapshots once per ``chunk`` consecutive partitions
    instead of once per partition: a year of hourly partitions would otherwise scan each
    symbol's directory 8760 times. Only one chunk's listing is held at a time."""
    for first in range(0, len(partitions), chunk):
        group = partitions[first : first + chunk]
        lo = min(start for _, start, _ in group)
        hi = max(end for _, _, end in group)
        listed = {
            symbol: store.list(
                provider=provider, dataset=BARS_DATASET, symbol=symbol, start=lo, end=hi
            )
            for symbol in symbols
        }
        preferred: dict[str, list[SnapshotRef]] = {}
        for ref in prefer:
            if ref.overlaps(lo, hi):
                preferred.setdefault(ref.symbol, []).append(ref)
        for key, start, end in group:
            entries: dict[str, list[dict[str, str]]] = {}
            for symbol in symbols:
                refs = [r for r in preferred.get(symbol, ()) if r.overlaps(start, end)] or [
                    r for r in listed[symbol] if r.overlaps(start, end)
                ]
                entries[symbol] = [r.as_manifest_entry() for r in refs]
            yield (
                key,
                {
                    "asset": "raw/bars",
                    "partition": key,
                    "provider": provider,
                    "dataset": BARS_DATASET,
                    "window": {"start": start.isoformat(), "end": end.isoformat()},
                    "symbols": entries,
                },
            )
