"""Fetch what is missing, keep it verbatim: the raw layer's logic, free of Dagster.

For each symbol the requested window is compared with the snapshots already stored; only the
gaps are fetched (a re-run or a retry resumes without spending quota again), page by page with
the provider's largest page, each page written as soon as it arrives (memory stays flat however
long the range). ``refresh=True`` fetches the whole window again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from resources.http.client import ClientStats, MarketApiClient
from resources.raw.manifest import BARS_DATASET, Manifest, save_manifest
from resources.raw.snapshots import SnapshotRef, SnapshotStore, uncovered
from resources.validation import ensure_utc
from resources.windows import PartitionWindow

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


@dataclass(frozen=True)
class RawResult:
    """What one raw/bars step did: partitions and symbols covered, snapshots and requests."""

    partitions: int
    symbols: tuple[str, ...]
    provider: str
    snapshots_written: int
    snapshots_reused: int
    bars_fetched: int
    client: ClientStats


def fetch_raw_bars(
    client: MarketApiClient,
    store: SnapshotStore,
    symbols: Sequence[str],
    partitions: Sequence[PartitionWindow],
    *,
    refresh: bool = False,
    label: str | None = None,
) -> RawResult:
    """The raw layer for a run: fetch what the range lacks, then one manifest per partition.

    ``partitions`` are contiguous and in time order (one partition, or a backfill's range):
    the whole range is fetched at once with the provider's largest page, not one request per
    partition; snapshots already stored are reused unless ``refresh``."""
    store.sweep()  # temp files of a writer that was killed
    stats = ingest_bars(
        client,
        store,
        symbols,
        start=partitions[0].start,
        end=partitions[-1].end,
        refresh=refresh,
        label=label,
    )
    for manifest in build_manifests(
        store,
        provider=client.provider,
        symbols=symbols,
        partitions=partitions,
        prefer=stats.fetched_refs,
    ):
        save_manifest(store, manifest)
    return RawResult(
        partitions=len(partitions),
        symbols=tuple(symbols),
        provider=client.provider,
        snapshots_written=stats.snapshots_written,
        snapshots_reused=stats.snapshots_reused,
        bars_fetched=stats.bars_fetched,
        client=client.stats,
    )


def ingest_bars(
    client: MarketApiClient,
    store: SnapshotStore,
    symbols: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    refresh: bool = False,
    label: str | None = None,
) -> IngestStats:
    start, end = ensure_utc(start), ensure_utc(end)
    stats = IngestStats()
    provider = client.provider
    for symbol in symbols:
        if refresh:
            gaps = [(start, end)]
        else:
            # One listing per symbol gives both what is reused and what is missing.
            stored = store.list(
                provider=provider, dataset=BARS_DATASET, symbol=symbol, start=start, end=end
            )
            stats.snapshots_reused += len(stored)
            gaps = uncovered(stored, start=start, end=end)
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
    return stats


def build_manifest(
    store: SnapshotStore,
    *,
    provider: str,
    symbols: Sequence[str],
    partition: PartitionWindow,
    prefer: Sequence[SnapshotRef] = (),
) -> Manifest:
    """The snapshots that cover one partition window, per symbol.

    With ``prefer`` (a refresh's fresh pages) those are used where they cover the window;
    otherwise every stored snapshot overlapping it is listed and core/bars keeps the newest
    copy of each minute.
    """
    (manifest,) = build_manifests(
        store, provider=provider, symbols=symbols, partitions=[partition], prefer=prefer
    )
    return manifest


def build_manifests(
    store: SnapshotStore,
    *,
    provider: str,
    symbols: Sequence[str],
    partitions: Sequence[PartitionWindow],
    prefer: Sequence[SnapshotRef] = (),
    chunk: int = MANIFEST_CHUNK,
) -> Iterator[Manifest]:
    """One manifest per partition, as ``build_manifest`` gives them, listing each symbol's
    snapshots once per ``chunk`` consecutive partitions instead of once per partition: a year
    of hourly partitions would otherwise scan each symbol's directory 8760 times. Only one
    chunk's listing is held at a time."""
    for first in range(0, len(partitions), chunk):
        group = partitions[first : first + chunk]
        lo = min(p.start for p in group)
        hi = max(p.end for p in group)
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
        for p in group:
            yield Manifest(
                partition=p.key,
                provider=provider,
                start=p.start,
                end=p.end,
                symbols={
                    symbol: tuple(
                        [r for r in preferred.get(symbol, ()) if r.overlaps(p.start, p.end)]
                        or [r for r in listed[symbol] if r.overlaps(p.start, p.end)]
                    )
                    for symbol in symbols
                },
            )
