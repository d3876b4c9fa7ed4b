"""Fetch what is missing, keep it verbatim: the raw layer's logic, free of Dagster.

For each symbol the requested window is compared with the snapshots already stored; only the
gaps are fetched (a re-run or a retry resumes without spending quota again), page by page with
the provider's largest page, each page written as soon as it arrives (memory stays flat however
long the range). ``refresh=True`` fetches the whole window again.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from resources.endpoints import Feed
from resources.errors import ArchiveError, NotYetPublishedError, ResponseFormatError, SchemaError
from resources.http.client import ClientStats, FetchedPage, MarketApiClient
from resources.logfields import log_context, with_log_context
from resources.providers.base import ProviderAdapter
from resources.raw.archive import (
    ArchiveFormat,
    ArchiveResult,
    ArchiveStats,
    ArchiveUse,
    ingest_archive,
)
from resources.raw.manifest import BARS_DATASET, MANIFESTS_DIR, Manifest, save_manifests
from resources.raw.snapshots import SnapshotRef, SnapshotStore, as_feed, uncovered
from resources.validation import ensure_utc
from resources.windows import PartitionWindow

# Partitions whose manifests are built from one listing of each symbol's snapshots (a week).
MANIFEST_CHUNK = 168
# For a provider whose pages do not state their coverage, data older than this (on our clock)
# is taken as published; a window ending later is checked against the provider's latest bar.
LATE_DATA_HORIZON = timedelta(days=1)
# A window the provider has not published yet is tried again this many times, this far apart
# (30 minutes of provider lag in all), before the step fails naming the provider's watermark.
DEFAULT_LATE_DATA_RETRIES = 6
DEFAULT_LATE_DATA_RETRY_S = 300.0


@dataclass
class IngestStats:
    snapshots_written: int = 0
    snapshots_reused: int = 0
    bars_fetched: int = 0
    # The pages fetched, kept only with refresh=True (its manifests prefer them): one small
    # record per page, not the bars.
    fetched_refs: list[SnapshotRef] = field(default_factory=list)
    # Every symbol's data is complete from the start of the window to here (the end of the
    # window, or where the provider's published data stops).
    published_through: datetime | None = None
    short_symbol: str | None = None  # the symbol whose data ends there


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
    # Where the snapshots are kept (raw/<feed>/): shared by every source on the same feed.
    feed: str = ""
    # What the provider's bulk archive gave (None: no archive configured, or not used).
    archive: ArchiveStats | None = None
    partitions_from_archive: int = 0  # filled from the archive for every symbol


# Called as pages land: (fraction of the symbols x range fetched, bars fetched so far).
FetchProgress = Callable[[float, int], None]


def fetch_raw_bars(
    client: MarketApiClient,
    store: SnapshotStore,
    symbols: Sequence[str],
    partitions: Sequence[PartitionWindow],
    *,
    refresh: bool = False,
    label: str | None = None,
    manifests: str = MANIFESTS_DIR,
    progress: FetchProgress | None = None,
    archive: ArchiveFormat | None = None,
    archive_use: ArchiveUse = ArchiveUse.AUTO,
    now: datetime | None = None,
    archive_stats: ArchiveStats | None = None,
) -> RawResult:
    """The raw layer for a run: fetch what the range lacks, then one manifest per partition.

    ``partitions`` are contiguous and in time order (one partition, or a backfill's range).
    With an ``archive``, the days it has published come from it (``resources/raw/archive.py``:
    no quota spent); the partitions it does not cover are fetched from REST, each run of
    consecutive ones at once with the provider's largest page, not one request per partition;
    snapshots already stored are reused unless ``refresh`` (which concerns REST pages: archive
    files are checked against the provider's checksum on every run)."""
    store.sweep()  # temp files of a writer that was killed
    archived = ArchiveResult(stats=archive_stats or ArchiveStats())
    if archive is not None and archive_use is not ArchiveUse.NEVER:
        archived = ingest_archive(
            archive,
            store,
            symbols,
            partitions,
            use=archive_use,
            now=now or datetime.now(UTC),
            progress=None if progress is None else lambda f: progress(f * 0.5, archived.stats.bars),
            stats=archived.stats,
        )
    from_archive = [p for p in partitions if _archived(p, symbols, archived)]
    rest = [p for p in partitions if not _archived(p, symbols, archived)]
    if rest and archive is not None and archive_use is ArchiveUse.ALWAYS:
        first, last = rest[0].key, rest[-1].key
        raise ArchiveError(
            f"{archive.provider} archive at {archive.feed.endpoint} does not cover partition(s) "
            f"{first if first == last else f'{first}...{last}'} ({len(rest)} of "
            f"{len(partitions)}): not published yet (daily files appear the next day); the "
            "archive path was forced (archive: always), so nothing is fetched from REST",
            provider=archive.provider,
            file=archive.feed.endpoint,
        )
    stats = IngestStats(published_through=partitions[-1].end)
    runs = _consecutive(rest, partitions)
    done = 0
    for run in runs:
        part = ingest_bars(
            client,
            store,
            symbols,
            start=run[0].start,
            end=run[-1].end,
            refresh=refresh,
            label=label,
            now=now,
            covered=archived.refs,
            progress=None
            if progress is None
            else _scaled(progress, done, len(run), len(rest), offset=0.5 if from_archive else 0),
        )
        done += len(run)
        stats.snapshots_written += part.snapshots_written
        stats.snapshots_reused += part.snapshots_reused
        stats.bars_fetched += part.bars_fetched
        stats.fetched_refs += part.fetched_refs
        if part.published_through is not None and part.published_through < run[-1].end:
            stats.published_through, stats.short_symbol = part.published_through, part.short_symbol
            break  # the provider has nothing later: the rest waits with it
    published = stats.published_through or partitions[-1].end
    complete = [p for p in partitions if p.end <= published]
    prefer = [*stats.fetched_refs, *(ref for refs in archived.refs.values() for ref in refs)]
    chunk: list[Manifest] = []
    for manifest in build_manifests(
        store,
        feed=client.feed,
        symbols=symbols,
        partitions=complete,
        prefer=prefer,
        dataset=client.adapter.bars_dataset,
    ):
        chunk.append(manifest)
        if len(chunk) == MANIFEST_CHUNK:
            save_manifests(store, chunk, directory=manifests)
            chunk = []
    save_manifests(store, chunk, directory=manifests)
    if len(complete) < len(partitions):
        # Never an empty or partial success: what is published is kept (its snapshots and
        # manifests are reused), the rest waits until the provider has it.
        waiting = partitions[len(complete) :]
        first, last = waiting[0].key, waiting[-1].key
        keys = first if first == last else f"{first}...{last}"
        raise NotYetPublishedError(
            f"{client.provider} has published bars only up to {published:%Y-%m-%dT%H:%MZ} "
            f"(its watermark; symbol {stats.short_symbol}): partition(s) {keys} are not "
            "complete there yet"
            + (
                f"; {len(complete)} earlier partition(s) are fetched and will be reused"
                if complete
                else ""
            ),
            provider=client.provider,
            watermark=published,
        )
    return RawResult(
        partitions=len(partitions),
        symbols=tuple(symbols),
        provider=client.provider,
        snapshots_written=stats.snapshots_written,
        snapshots_reused=stats.snapshots_reused,
        bars_fetched=stats.bars_fetched + archived.stats.bars,
        client=client.stats,
        feed=client.feed.directory,
        archive=archived.stats if archive is not None else None,
        partitions_from_archive=len(from_archive),
    )


def _archived(partition: PartitionWindow, symbols: Sequence[str], archived: ArchiveResult) -> bool:
    """Whether the archive's snapshots cover the partition for every symbol (refs are sorted
    by start: a year of daily files is 365 per symbol, looked up, not scanned)."""
    for symbol in symbols:
        refs = archived.refs.get(symbol, [])
        # The last snapshot starting at or before the partition: it covers it, or none does
        # (one archive file's window holds whole days, never part of an hour).
        index = bisect.bisect_right(refs, partition.start, key=lambda r: r.start) - 1
        if index < 0 or refs[index].end < partition.end:
            return False
    return True


def _consecutive(
    chosen: Sequence[PartitionWindow], partitions: Sequence[PartitionWindow]
) -> list[list[PartitionWindow]]:
    """``chosen`` in runs of partitions with no other partition of ``partitions`` between
    them: each run is one REST window (nights and weekends inside it cost nothing more), and
    an archived day between two runs is never fetched from REST."""
    position = {p.key: i for i, p in enumerate(partitions)}
    runs: list[list[PartitionWindow]] = []
    for p in chosen:
        if runs and position[p.key] == position[runs[-1][-1].key] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _scaled(
    progress: FetchProgress, done: int, size: int, total: int, *, offset: float
) -> FetchProgress:
    def report(fraction: float, bars: int) -> None:
        share = (done + fraction * size) / max(total, 1)
        progress(offset + (1 - offset) * share, bars)

    return report


def ingest_bars(
    client: MarketApiClient,
    store: SnapshotStore,
    symbols: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    refresh: bool = False,
    label: str | None = None,
    now: datetime | None = None,
    progress: FetchProgress | None = None,
    covered: Mapping[str, Sequence[SnapshotRef]] | None = None,
) -> IngestStats:
    """Fetch what ``[start, end)`` lacks, symbol by symbol, and say how far the data is complete.

    Each page is parsed before it is stored: a response that does not parse is quarantined
    (kept verbatim, but not as a snapshot) and the run fails naming it, so a bad response is
    never reused as truth and the next run fetches its window again. ``covered``: snapshots of
    another path (the archive's) that count as stored."""
    start, end = ensure_utc(start), ensure_utc(end)
    stats = IngestStats(published_through=end)
    adapter = client.adapter
    fetch_end = end
    if not adapter.reports_coverage and end > (now or datetime.now(UTC)) - LATE_DATA_HORIZON:
        # A short last page could be quiet minutes or minutes not published yet: ask how far
        # the provider's data goes, and fetch no further (a page claims coverage to its end).
        fetch_end = min(end, provider_watermark(client, symbols, until=end))
    span = (end - start).total_seconds() or 1.0
    for index, symbol in enumerate(symbols):
        stored: list[SnapshotRef] = []
        if refresh:
            stored = [r for r in (covered or {}).get(symbol, ()) if r.overlaps(start, end)]
            gaps = uncovered(stored, start=start, end=fetch_end)
        else:
            # One listing per symbol gives both what is reused and what is missing.
            stored = store.list(
                feed=client.feed, dataset=adapter.bars_dataset, symbol=symbol, start=start, end=end
            )
            stats.snapshots_reused += len(stored)
            other = [r for r in (covered or {}).get(symbol, ()) if r.overlaps(start, end)]
            if other:
                stored = sorted([*stored, *other], key=lambda r: (r.start, r.end))
            gaps = uncovered(stored, start=start, end=fetch_end)
        written: list[SnapshotRef] = []
        for gap_start, gap_end in gaps:
            if gap_end <= gap_start:
                continue
            pages = keep_unparseable(
                store,
                client.feed,
                client.iter_pages(symbol, start=gap_start, end=gap_end, label=label),
                dataset=adapter.bars_dataset,
                symbol=symbol,
                start=gap_start,
                end=gap_end,
            )
            for page in with_log_context(pages, symbol=symbol):
                meta = {
                    "url": page.response.url,  # already redacted by the client
                    "status": page.response.status,
                    "headers": page.response.headers,
                    "fetched_at": page.response.fetched_at.isoformat(),
                    "bar_count": page.bar_count,
                }
                check_page(store, client.feed, adapter, page, meta=meta, label=label)
                ref = store.write(
                    feed=client.feed,
                    dataset=adapter.bars_dataset,
                    symbol=symbol,
                    start=page.coverage_start,
                    end=page.coverage_end,
                    body=page.response.body,
                    meta=meta,
                )
                written.append(ref)
                stats.snapshots_written += 1
                stats.bars_fetched += page.bar_count
                if refresh:
                    stats.fetched_refs.append(ref)
                if progress is not None:
                    through = (page.coverage_end - start).total_seconds() / span
                    progress((index + min(through, 1.0)) / len(symbols), stats.bars_fetched)
        if progress is not None:
            progress((index + 1) / len(symbols), stats.bars_fetched)
        holes = uncovered(sorted([*stored, *written], key=lambda r: r.start), start=start, end=end)
        if holes and holes[0][0] < (stats.published_through or end):
            stats.published_through, stats.short_symbol = holes[0][0], symbol
    return stats


def provider_watermark(
    client: MarketApiClient, symbols: Sequence[str], *, until: datetime
) -> datetime:
    """How far the provider's data goes: the end of the newest bar of the first symbols (one
    request each, stopping at the first that reaches ``until``). A quiet symbol alone would
    understate it; the provider has published a minute once any symbol has a bar there."""
    best: datetime | None = None
    for symbol in symbols:
        with log_context(symbol=symbol):
            latest = client.latest_bar_time(symbol) + timedelta(minutes=1)
        best = latest if best is None else max(best, latest)
        if best >= until:
            break
    assert best is not None  # symbols is never empty (parse_symbols refuses it)
    return best


def keep_unparseable(
    store: SnapshotStore,
    feed: Feed,
    pages: Iterator[FetchedPage],
    *,
    symbol: str,
    start: datetime,
    end: datetime,
    dataset: str = BARS_DATASET,
) -> Iterator[FetchedPage]:
    """``pages``; a body the client gave up parsing (not JSON at all: garbled, cut short, an
    HTML error page) is kept in the quarantine, and the error names the file."""
    try:
        yield from pages
    except ResponseFormatError as exc:
        if exc.body is None:
            raise
        path = store.quarantine_body(
            feed=feed,
            dataset=dataset,
            symbol=symbol,
            start=start,
            end=end,
            body=exc.body,
            meta={"url": exc.url, "fetched_at": datetime.now(UTC).isoformat()},
            reason=str(exc),
        )
        raise ResponseFormatError(
            f"{exc}; the last response is kept in {path} and its window is fetched again on "
            "the next run",
            provider=exc.provider,
        ) from None


def check_page(
    store: SnapshotStore,
    feed: Feed,
    adapter: ProviderAdapter,
    page: FetchedPage,
    *,
    meta: Mapping[str, Any],
    label: str | None,
) -> None:
    """Parse a page before it is stored; a page that does not parse goes to the quarantine and
    the error names the file."""
    try:
        adapter.parse_bars(page.response.body, symbol=page.symbol)
    except ResponseFormatError as exc:
        path = store.quarantine_body(
            feed=feed,
            dataset=adapter.bars_dataset,
            symbol=page.symbol,
            start=page.coverage_start,
            end=page.coverage_end,
            body=page.response.body,
            meta=meta,
            reason=str(exc),
        )
        message = (
            f"{exc}"
            + (f" ({label})" if label else "")
            + f"; the response is kept in {path} and its window is fetched again on the next run"
        )
        if isinstance(exc, SchemaError):
            raise SchemaError(
                message, provider=exc.provider, symbol=page.symbol, field=exc.field
            ) from None
        raise ResponseFormatError(message, provider=exc.provider) from None


def build_manifest(
    store: SnapshotStore,
    *,
    feed: Feed | str,
    symbols: Sequence[str],
    partition: PartitionWindow,
    prefer: Sequence[SnapshotRef] = (),
    dataset: str = BARS_DATASET,
) -> Manifest:
    """The snapshots that cover one partition window, per symbol.

    With ``prefer`` (a refresh's fresh pages) those are used where they cover the window;
    otherwise every stored snapshot overlapping it is listed and core/bars keeps the newest
    copy of each minute.
    """
    (manifest,) = build_manifests(
        store, feed=feed, symbols=symbols, partitions=[partition], prefer=prefer, dataset=dataset
    )
    return manifest


def build_manifests(
    store: SnapshotStore,
    *,
    feed: Feed | str,
    symbols: Sequence[str],
    partitions: Sequence[PartitionWindow],
    prefer: Sequence[SnapshotRef] = (),
    chunk: int = MANIFEST_CHUNK,
    dataset: str = BARS_DATASET,
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
            symbol: store.list(feed=feed, dataset=dataset, symbol=symbol, start=lo, end=hi)
            for symbol in symbols
        }
        preferred: dict[str, list[SnapshotRef]] = {}
        for ref in prefer:
            if ref.overlaps(lo, hi):
                preferred.setdefault(ref.symbol, []).append(ref)
        for p in group:
            yield Manifest(
                partition=p.key,
                provider=as_feed(feed).provider,
                start=p.start,
                end=p.end,
                symbols={
                    symbol: tuple(
                        [r for r in preferred.get(symbol, ()) if r.overlaps(p.start, p.end)]
                        or [r for r in listed[symbol] if r.overlaps(p.start, p.end)]
                    )
                    for symbol in symbols
                },
                dataset=dataset,
            )
