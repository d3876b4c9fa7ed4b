"""A provider's bulk archive as a second raw path into the same snapshots and manifests.

Binance publishes every symbol's klines as daily and monthly zip files with a sha256 CHECKSUM
file beside each (data.binance.vision); Massive publishes one gzip CSV per trading day holding
every ticker, on an S3 endpoint (flat files). Neither costs API quota. For the days of a range
that are old enough to be archived, the raw layer takes them from there; the rest (recent
hours, a day whose file is not there) from the REST API, in the same run, with no decision
asked of the user (``ArchiveUse`` can force one path or the other).

What is kept, under the snapshot root::

    archives/<feed>/<file's key>               the file as downloaded, verbatim (a file of
                                               several symbols: Massive's day files)
    archives/<feed>/<file's key>.record.json   its checksum/ETag and the snapshots cut from it
    raw/<feed>/<format's dataset>/<symbol>/<start>_<end>.<sha256[:12]>.<csv|zip>
                                               the symbol's rows of the file, verbatim lines;
                                               a file of one symbol (Binance's zips) as is

A file is downloaded once: later runs ask the provider for its checksum (Binance's CHECKSUM
file, an S3 HEAD's ETag) and reuse it while that is unchanged. A file replaced upstream is
fetched again and cut again, and the manifests of the run's partitions it covers list the new
snapshots, so core/bars rebuilds them from the new rows. The previous version's snapshots stay:
manifests of partitions outside the run still name them (a partition is never left pointing at
nothing), and no listing finds them (archive snapshots enter a manifest only as the record's
current ones). A download is checked before anything is kept:
a checksum that does not match, a file cut short or a row that does not parse fails the step
naming the file, and leaves nothing of it behind (the previous version, if any, stays in force).

The record is written last: it is what says a file is in force. A writer killed before it
leaves a file or snapshots no record names; the next run finds the record's version unequal to
the provider's, or no record, and fetches the file again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from resources.endpoints import Feed
from resources.errors import ArchiveError
from resources.providers.decoding import ParsedPages
from resources.raw.snapshots import ArchiveOrigin, SnapshotRef, SnapshotStore
from resources.storage.atomic import TEMP_PREFIX, atomic_write_bytes
from resources.validation import ensure_utc, safe_join
from resources.windows import PartitionWindow

logger = logging.getLogger("fin_assets.archive")

ARCHIVES_DIR = "archives"
ARCHIVE_WORKERS = 4  # files fetched and checked at once  # <root>/archives/<feed>/<key>
RECORD_SUFFIX = ".record.json"


class ArchiveUse(StrEnum):
    """Which raw path fills a range: ``auto`` takes archived days from the archive and the rest
    from REST; ``always`` refuses a range the archive does not cover (it never spends quota);
    ``never`` is the REST path alone."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class ArchiveFile:
    """One file of a provider's archive and the window of bars it holds."""

    key: str  # its path in the archive: the URL's path under the base URL, or the S3 key
    start: datetime
    end: datetime
    symbols: tuple[str, ...]  # the source's symbols it holds (Binance: one; Massive: all)
    # Files holding the same bars in smaller pieces, tried when this one is not published
    # (a month's file not uploaded yet: its days' files).
    fallback: tuple[ArchiveFile, ...] = ()


@dataclass(frozen=True)
class UpstreamVersion:
    """What the provider says a published file is: the checksum it publishes or its ETag."""

    token: str  # "sha256:<hex>" or "etag:<value>": compared with the record's
    sha256: str | None = None  # the checksum to verify the download against, if published
    size: int | None = None  # the size to verify it against, if published


@dataclass(frozen=True)
class Download:
    path: Path
    size: int
    sha256: str
    md5: str


@dataclass(frozen=True)
class SymbolRows:
    """A symbol's rows cut from an archive file: verbatim lines, and how many."""

    body: bytes
    rows: int


class ArchiveFormat(ABC):
    """A provider's archive: where its files are, how to ask for their version, fetch them,
    check them and cut them into per-symbol snapshots, and how core/bars parses those."""

    provider: str  # the adapter whose canonical bars these are
    dataset: str  # the snapshots' dataset: names this format for core/bars
    feed: Feed  # where its files and snapshots are kept (one per archive endpoint)
    suffix = ".csv"  # what a snapshot cut from a file is
    # Whether the file is kept beside its snapshots: a file of several symbols is (a symbol
    # added later is cut from it, no download); a file of one symbol that is its own snapshot
    # is not kept twice.
    keeps_files = True

    @abstractmethod
    def plan(
        self, symbols: Sequence[str], partitions: Sequence[PartitionWindow], *, now: datetime
    ) -> list[ArchiveFile]:
        """The files that hold the partitions' bars and are old enough to be published."""

    @abstractmethod
    def version(self, file: ArchiveFile) -> UpstreamVersion | None:
        """The file's published checksum or ETag; None if the provider does not have it (yet)."""

    @abstractmethod
    def download(self, file: ArchiveFile, into: Path) -> Download:
        """Stream the file into ``into``, hashing it on the way (memory stays bounded)."""

    def verify(self, file: ArchiveFile, download: Download, version: UpstreamVersion) -> None:
        """Refuse a download that is not the published file (checksum, size)."""
        if version.size is not None and download.size != version.size:
            raise self.error(
                file,
                f"is cut short or padded: {download.size} bytes received, the archive lists "
                f"{version.size}",
            )
        if version.sha256 is not None and download.sha256 != version.sha256:
            raise self.error(
                file,
                f"fails its checksum: sha256 {download.sha256} received, the archive publishes "
                f"{version.sha256}",
                checksum=True,
            )

    @abstractmethod
    def split(self, file: ArchiveFile, path: Path) -> dict[str, SymbolRows]:
        """Each of ``file.symbols``' rows (a symbol without any: empty rows), every row checked;
        a file cut short or a row that does not parse is an ArchiveError naming the file."""

    @abstractmethod
    def parse_pages(
        self, pages: Sequence[tuple[str, bytes]], *, partition: str | None = None
    ) -> ParsedPages:
        """``(symbol, snapshot body)`` pages as canonical bars, as the REST adapter gives them."""

    def url(self, file: ArchiveFile) -> str:
        """Where the file is, for messages and sidecars (never a credential)."""
        return f"{self.feed.endpoint}/{file.key}"

    def error(self, file: ArchiveFile, what: str, *, checksum: bool = False) -> ArchiveError:
        return ArchiveError(
            f"{self.provider} archive file {self.url(file)} {what}; nothing is kept from it",
            provider=self.provider,
            file=self.url(file),
            checksum=checksum,
        )

    def close(self) -> None:  # noqa: B027 - formats without connections need not close
        """Release connections."""


@dataclass
class ArchiveStats:
    files_planned: int = 0
    files_downloaded: int = 0
    files_reused: int = 0
    files_replaced: int = 0  # downloaded again: their checksum changed upstream
    files_missing: int = 0  # not published: their windows went to REST
    bytes_downloaded: int = 0
    checksum_failures: int = 0
    bars: int = 0

    def as_metadata(self) -> dict[str, int]:
        return {f"archive_{name}": value for name, value in vars(self).items()}


@dataclass
class ArchiveResult:
    refs: dict[str, list[SnapshotRef]] = field(default_factory=dict)  # symbol -> in force
    stats: ArchiveStats = field(default_factory=ArchiveStats)
    # Files are fetched by several threads: every change to refs and stats holds it.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, **figures: int) -> None:
        with self.lock:
            for name, value in figures.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)


@dataclass(frozen=True)
class _Record:
    """What the record beside a kept file says: its version and the snapshots cut from it."""

    token: str
    sha256: str
    size: int
    fetched_at: str
    snapshots: Mapping[str, Mapping[str, Any]]  # symbol -> ref fields and rows

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "sha256": self.sha256,
            "size": self.size,
            "fetched_at": self.fetched_at,
            "snapshots": dict(self.snapshots),
        }


class ArchiveKeeper:
    """The kept files of one archive and their records, under ``<root>/archives/<feed>/``."""

    def __init__(self, store: SnapshotStore, fmt: ArchiveFormat) -> None:
        self.store = store
        self.format = fmt
        self.directory = safe_join(store.root, ARCHIVES_DIR, fmt.feed.directory)

    def path(self, file: ArchiveFile) -> Path:
        return safe_join(self.directory, *file.key.split("/"))

    def record(self, file: ArchiveFile) -> _Record | None:
        path = self.path(file)
        try:
            data = json.loads(path.with_name(path.name + RECORD_SUFFIX).read_bytes())
            return _Record(
                data["token"], data["sha256"], data["size"], data["fetched_at"], data["snapshots"]
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("archive record of %s is unreadable (%r): fetched again", file.key, exc)
            return None

    def write_record(self, file: ArchiveFile, record: _Record) -> None:
        path = self.path(file)
        atomic_write_bytes(
            path.with_name(path.name + RECORD_SUFFIX),
            json.dumps(record.to_json(), sort_keys=True, indent=1).encode(),
        )

    def ref(
        self, file: ArchiveFile, symbol: str, entry: Mapping[str, Any], sha256: str
    ) -> SnapshotRef:
        return SnapshotRef(
            self.format.provider,
            self.format.dataset,
            symbol,
            datetime.fromisoformat(entry["start"]),
            datetime.fromisoformat(entry["end"]),
            entry["sha256"],
            entry["path"],
            ArchiveOrigin(file.key, sha256),
        )

    def in_force(self, file: ArchiveFile, record: _Record) -> dict[str, SnapshotRef] | None:
        """The record's snapshots of ``file.symbols``, if every one is still there."""
        refs = {}
        for symbol in file.symbols:
            entry = record.snapshots.get(symbol)
            if entry is None:
                return None
            ref = self.ref(file, symbol, entry, record.sha256)
            if not (self.store.root / ref.path).is_file():
                return None
            refs[symbol] = ref
        return refs


def ingest_archive(
    fmt: ArchiveFormat,
    store: SnapshotStore,
    symbols: Sequence[str],
    partitions: Sequence[PartitionWindow],
    *,
    use: ArchiveUse = ArchiveUse.AUTO,
    now: datetime,
    progress: Callable[[float], None] | None = None,
    stats: ArchiveStats | None = None,
) -> ArchiveResult:
    """Fill the partitions' archived days from the archive: each planned file is checked
    against the provider's checksum and reused, or downloaded, verified and cut into per-symbol
    snapshots. Returns the snapshots in force per symbol; a file not published is left to REST
    (``use=ALWAYS``: an ArchiveError naming it). ``stats``: filled as it goes, so a caller
    still has the figures (a checksum failure) when a file fails the step."""
    keeper = ArchiveKeeper(store, fmt)
    result = ArchiveResult(stats=stats if stats is not None else ArchiveStats())
    planned = fmt.plan(symbols, partitions, now=ensure_utc(now))
    result.stats.files_planned = len(planned)
    # A few files at a time: a download waits on the network while another file is checked
    # (unzip, gunzip, parsing and writing release the GIL).
    with ThreadPoolExecutor(ARCHIVE_WORKERS, thread_name_prefix="archive") as pool:
        done = pool.map(lambda f: _ingest_file(keeper, f, result, use=use), planned)
        for index, _ in enumerate(done):
            if progress is not None:
                progress((index + 1) / len(planned))
    for refs in result.refs.values():
        refs.sort(key=lambda r: (r.start, r.end))
    return result


def _ingest_file(
    keeper: ArchiveKeeper, file: ArchiveFile, result: ArchiveResult, *, use: ArchiveUse
) -> None:
    fmt = keeper.format
    version = fmt.version(file)
    if version is None:
        if file.fallback:
            for piece in file.fallback:
                _ingest_file(keeper, piece, result, use=use)
            return
        if use is ArchiveUse.ALWAYS:
            raise fmt.error(
                file,
                "is not published (yet); the archive path was forced (archive: always), so "
                "nothing is fetched from REST: run again once the provider has it, or allow "
                "REST for recent days (archive: auto)",
            )
        result.count(files_missing=1)
        logger.info(
            "archive file %s is not published: its window goes to the REST API", fmt.url(file)
        )
        return
    record = keeper.record(file)
    refs = None
    if record is not None and record.token == version.token:
        refs = keeper.in_force(file, record)
        if refs is None and keeper.path(file).is_file():
            # Same version, a symbol added since: cut it from the kept file, no download.
            refs, _ = _cut(
                keeper, file, keeper.path(file), record.sha256, record.fetched_at, version
            )
        if refs is not None:
            result.count(files_reused=1)
    if refs is None:
        refs = _fetch(keeper, file, version, result)
        if record is not None and record.token != version.token:
            result.count(files_replaced=1)
            logger.warning(
                "archive file %s was replaced upstream (%s, was %s): this run's partitions in "
                "its window are rebuilt from the new file; partitions of %s..%s outside this "
                "run keep the previous version until a run covers them",
                fmt.url(file),
                version.token,
                record.token,
                f"{file.start:%Y-%m-%dT%H:%MZ}",
                f"{file.end:%Y-%m-%dT%H:%MZ}",
            )
    with result.lock:
        for symbol, ref in refs.items():
            result.refs.setdefault(symbol, []).append(ref)


def _fetch(
    keeper: ArchiveKeeper, file: ArchiveFile, version: UpstreamVersion, result: ArchiveResult
) -> dict[str, SnapshotRef]:
    """Download, verify, cut and keep ``file``; nothing is kept if any step fails."""
    fmt = keeper.format
    target = keeper.path(file)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}")
    try:
        download = fmt.download(file, temp)
        result.count(files_downloaded=1, bytes_downloaded=download.size)
        try:
            fmt.verify(file, download, version)
        except ArchiveError as exc:
            if exc.checksum:
                result.count(checksum_failures=1)
            raise
        fetched_at = datetime.now(UTC).isoformat()
        refs, rows = _cut(keeper, file, temp, download.sha256, fetched_at, version, keep=temp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    result.count(bars=rows)
    return refs


def _cut(
    keeper: ArchiveKeeper,
    file: ArchiveFile,
    path: Path,
    sha256: str,
    fetched_at: str,
    version: UpstreamVersion,
    *,
    keep: Path | None = None,
) -> tuple[dict[str, SnapshotRef], int]:
    """Cut ``file.symbols``' snapshots from the file at ``path``, then (``keep``: a new
    download) move it into place, then write the record that puts them in force."""
    fmt = keeper.format
    pieces = fmt.split(file, path)  # every row checked before anything is written
    refs: dict[str, SnapshotRef] = {}
    entries: dict[str, Mapping[str, Any]] = {}
    for symbol in file.symbols:
        rows = pieces.get(symbol, SymbolRows(b"", 0))
        ref = keeper.store.write(
            feed=fmt.feed,
            dataset=fmt.dataset,
            symbol=symbol,
            start=file.start,
            end=file.end,
            body=rows.body,
            meta={
                "url": fmt.url(file),
                "fetched_at": fetched_at,
                "bar_count": rows.rows,
                "archive": file.key,
                "archive_sha256": sha256,
            },
            suffix=fmt.suffix,
            archive=ArchiveOrigin(file.key, sha256),
        )
        refs[symbol] = ref
        entries[symbol] = {**ref.as_manifest_entry(), "rows": rows.rows}
    target = keeper.path(file)
    size = path.stat().st_size
    if keep is not None and fmt.keeps_files:
        os.replace(keep, target)
    record = keeper.record(file)
    if record is not None and record.token == version.token:
        # Symbols cut earlier from the same version stay in force beside the new ones.
        entries = {**record.snapshots, **entries}
    keeper.write_record(
        file,
        _Record(version.token, sha256, size, fetched_at, entries),
    )
    return refs, sum(piece.rows for piece in pieces.values())


def write_stream(path: Path, chunks: Iterable[bytes]) -> Download:
    """Write ``chunks`` to ``path`` (a temp name of the caller's, fsynced), hashing them on the
    way: the one way a download lands. The caller moves it into place once it is checked."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return Download(path, size, sha.hexdigest(), md5.hexdigest())
