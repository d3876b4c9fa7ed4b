"""``SnapshotStore``: raw API responses kept verbatim, so anything downstream can be rebuilt
without spending quota again.

Layout under ``root``::

    raw/<feed>/<dataset>/<symbol>/<start>_<end>.<sha256[:12]>.json       the bytes
                                            (.csv: the rows cut from a provider's archive)
    raw/<feed>/<dataset>/<symbol>/<start>_<end>.<sha256[:12]>.meta.json  the sidecar
    manifests/<asset>/<partition>.json                                     partition contents

``<feed>`` is ``Feed.directory`` (``resources/endpoints.py``): the provider, the endpoint
(host, port, path) and, where the provider's answers depend on the plan, the credential's
fingerprint, e.g. ``binance@api.binance.com``. Sources on different endpoints never read each
other's snapshots; sources on the same one share them.

Data directories written before endpoints were part of the key hold ``raw/<provider>/...``.
They are read, never written: a feed lists the old snapshots whose sidecar URL is on its own
endpoint (the old layout cannot tell credentials apart, so on a shared endpoint every credential
reads them), and manifests that name them keep working.

``<start>_<end>`` is the window the page covers (UTC, ``20260105T0000Z``), so coverage is known
from file names alone. The body is written before its sidecar and a snapshot only counts once
its sidecar exists: a writer killed in between leaves a body that is ignored and later replaced.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from resources.endpoints import Endpoint, Feed
from resources.errors import InvalidInputError, StorageError
from resources.storage.atomic import (
    TEMP_PREFIX,
    atomic_write_bytes,
    atomic_write_many,
    sweep_temp_files,
)
from resources.validation import (
    ensure_utc,
    partition_file_stem,
    partition_key_from_stem,
    safe_join,
    symbol_path_part,
    validate_provider,
    validate_table,
)

logger = logging.getLogger("fin_assets.snapshots")

STAMP = "%Y%m%dT%H%MZ"
QUARANTINE_DIR = "quarantine"  # <root>/quarantine/raw/...: responses that failed to parse
# The quarantine is for a human to look at a few bad responses, not an archive of a provider
# that sends garbage for a week: past this size the oldest quarantined files are removed.
QUARANTINE_MAX_BYTES = 256 * 1024 * 1024


# What a snapshot's bytes are: an API response (JSON), the rows cut from an archive (CSV), or
# an archive file of one symbol as downloaded (a zip).
BODY_SUFFIXES = (".json", ".csv", ".zip")


def sidecar_path(body_path: str) -> str:
    """``<window>.<digest>.meta.json`` beside ``<window>.<digest>.<json|csv|zip>``."""
    for suffix in BODY_SUFFIXES:
        if body_path.endswith(suffix):
            return body_path[: -len(suffix)] + ".meta.json"
    return body_path + ".meta.json"


def _stamp(ts: datetime) -> str:
    return ensure_utc(ts).strftime(STAMP)


def snapshot_name(start: datetime, end: datetime, digest: str) -> str:
    """``<start>_<end>.<sha256[:12]>``: the window a page covers, and its content."""
    return f"{_stamp(start)}_{_stamp(end)}.{digest[:12]}"


def _unstamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP).replace(tzinfo=UTC)


@dataclass(frozen=True)
class ArchiveOrigin:
    """The provider's archive file a snapshot was cut from (``resources/raw/archive.py``)."""

    key: str  # the file's path in the archive (its URL's path, or its S3 key)
    sha256: str  # of the whole file, verified against the provider's checksum or ETag


@dataclass(frozen=True)
class SnapshotRef:
    provider: str
    dataset: str
    symbol: str
    start: datetime
    end: datetime
    sha256: str  # first 12 hex digits, as in the file name
    path: str  # relative to the store root
    # Set where the snapshot comes from a bulk archive, not from an API response.
    archive: ArchiveOrigin | None = None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end

    def as_manifest_entry(self) -> dict[str, str]:
        entry = {
            "path": self.path,
            "sha256": self.sha256,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }
        if self.archive is not None:
            # A manifest mixes REST pages and archive extracts only across symbols: each entry
            # names its own dataset (the format core/bars parses) and the file it came from.
            entry |= {
                "dataset": self.dataset,
                "archive": self.archive.key,
                "archive_sha256": self.archive.sha256,
            }
        return entry


class SnapshotStore:
    def __init__(
        self, root: Path | str, *, quarantine_max_bytes: int = QUARANTINE_MAX_BYTES
    ) -> None:
        self.root = Path(root).resolve()
        self.quarantine_max_bytes = quarantine_max_bytes
        self._directories: dict[tuple[str, ...], Path] = {}  # resolved by _read_stored
        self._legacy_endpoint: dict[str, str | None] = {}  # old sidecar name -> endpoint URL

    # -- paths -------------------------------------------------------------------------------
    def _symbol_dir(self, feed: Feed | str, dataset: str, symbol: str) -> Path:
        feed = as_feed(feed)
        return safe_join(
            self.root,
            "raw",
            feed.directory,
            validate_table(dataset),
            symbol_path_part(symbol, provider=feed.provider),
        )

    # -- snapshots ---------------------------------------------------------------------------
    def write(
        self,
        *,
        feed: Feed | str,
        dataset: str,
        symbol: str,
        start: datetime,
        end: datetime,
        body: bytes,
        meta: Mapping[str, Any],
        suffix: str = ".json",
        archive: ArchiveOrigin | None = None,
    ) -> SnapshotRef:
        """Store one response verbatim with its sidecar; the same bytes land at the same path.
        ``suffix`` says what the bytes are (``.csv`` for an archive's rows)."""
        if suffix not in BODY_SUFFIXES:
            raise InvalidInputError(f"snapshot suffix {suffix!r}: expected one of {BODY_SUFFIXES}")
        feed = as_feed(feed)
        if feed.is_legacy:
            raise InvalidInputError(
                f"snapshots of {feed.provider} are written under a feed (provider, endpoint and "
                "credential), not the provider alone"
            )
        digest = hashlib.sha256(body).hexdigest()
        directory = self._symbol_dir(feed, dataset, symbol)
        name = snapshot_name(start, end, digest)
        atomic_write_bytes(directory / f"{name}{suffix}", body)
        sidecar = {
            **meta,
            "provider": feed.provider,
            "endpoint": feed.endpoint,
            **({"credential": feed.credential} if feed.credential else {}),
            "dataset": dataset,
            "symbol": symbol,
            "coverage_start": ensure_utc(start).isoformat(),
            "coverage_end": ensure_utc(end).isoformat(),
            "sha256": digest,
            "bytes": len(body),
        }
        atomic_write_bytes(
            directory / f"{name}.meta.json",
            json.dumps(sidecar, sort_keys=True, indent=1).encode(),
        )
        return SnapshotRef(
            feed.provider,
            dataset,
            symbol,
            ensure_utc(start),
            ensure_utc(end),
            digest[:12],
            str((directory / f"{name}{suffix}").relative_to(self.root)),
            archive,
        )

    def list(  # noqa: A003 - reads naturally as store.list(...)
        self,
        *,
        feed: Feed | str,
        dataset: str,
        symbol: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> builtins.list[SnapshotRef]:
        """Complete snapshots (sidecar present) of a symbol, optionally only those overlapping;
        for a feed, with the old layout's snapshots from its endpoint."""
        feed = as_feed(feed)
        refs = self._list_directory(feed, dataset, symbol, start, end)
        if not feed.is_legacy:
            old = self._list_directory(Feed(feed.provider), dataset, symbol, start, end)
            refs += [ref for ref in old if self._legacy_on(ref, feed)]
        return sorted(refs, key=lambda r: (r.start, r.end, r.sha256))

    def _legacy_on(self, ref: SnapshotRef, feed: Feed) -> bool:
        """Whether a snapshot of the old layout was fetched from ``feed``'s endpoint (its
        sidecar's URL says; one read per snapshot and store)."""
        if ref.path not in self._legacy_endpoint:
            url: str | None = None
            with contextlib.suppress(OSError, ValueError, StorageError, InvalidInputError):
                recorded = self.read_meta(ref).get("url")
                if isinstance(recorded, str):
                    url = Endpoint.parse(recorded, where=ref.path).label
            self._legacy_endpoint[ref.path] = url
        url = self._legacy_endpoint[ref.path]
        return url is not None and (url == feed.endpoint or url.startswith(feed.endpoint + "/"))

    def _list_directory(
        self,
        feed: Feed,
        dataset: str,
        symbol: str,
        start: datetime | None,
        end: datetime | None,
    ) -> builtins.list[SnapshotRef]:
        directory = self._symbol_dir(feed, dataset, symbol)
        if not directory.is_dir():
            return []
        provider = feed.provider
        names = {e.name for e in os.scandir(directory) if not e.name.startswith(TEMP_PREFIX)}
        # Stamps sort like the times they stand for: names that certainly end before start or
        # begin after end are skipped unparsed (a year of pages makes parsing the cost).
        after = _stamp(start) if start is not None and end is not None else ""
        before = _stamp(end) if start is not None and end is not None else "~"
        refs = []
        for name in names:
            if not name.endswith(".meta.json"):
                continue
            stem = name[: -len(".meta.json")]
            body = next((f"{stem}{x}" for x in BODY_SUFFIXES if f"{stem}{x}" in names), None)
            if body is None:
                continue
            try:
                window, digest = stem.split(".")
                first, last = window.split("_")
                if last <= after or first > before:
                    continue
                ref = SnapshotRef(
                    provider,
                    dataset,
                    symbol,
                    _unstamp(first),
                    _unstamp(last),
                    digest,
                    str((directory / body).relative_to(self.root)),
                )
            except ValueError:
                continue  # not ours
            if start is None or end is None or ref.overlaps(ensure_utc(start), ensure_utc(end)):
                refs.append(ref)
        return refs

    def uncovered(
        self, *, feed: Feed | str, dataset: str, symbol: str, start: datetime, end: datetime
    ) -> builtins.list[tuple[datetime, datetime]]:
        """Sub-windows of [start, end) that no stored snapshot covers yet."""
        refs = self.list(feed=feed, dataset=dataset, symbol=symbol, start=start, end=end)
        return uncovered(refs, start=start, end=end)

    def _read_stored(self, ref_path: str) -> bytes:
        """The bytes of a stored file, checked to lie under the root. Each directory is resolved
        (``safe_join``) once per store: a range run reads thousands of files from a few
        directories, and resolving costs a system call per path component. The file name is
        then opened with O_NOFOLLOW; a symlink (ELOOP) or '..' gets the full check."""
        *directory, name = Path(ref_path).parts or ("",)
        if name not in ("", ".."):
            resolved = self._directories.get(tuple(directory))
            if resolved is None:
                resolved = self._directories[tuple(directory)] = safe_join(self.root, *directory)
            try:
                fd = os.open(resolved / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
            else:
                with open(fd, "rb") as file:
                    return file.read()
        return safe_join(self.root, *Path(ref_path).parts).read_bytes()

    def read(self, ref: SnapshotRef | Mapping[str, str]) -> bytes:
        """The stored bytes, checked against the digest in their name."""
        path, digest = (
            (ref.path, ref.sha256) if isinstance(ref, SnapshotRef) else (ref["path"], ref["sha256"])
        )
        try:
            body = self._read_stored(path)
        except FileNotFoundError:
            raise StorageError(f"snapshot {path} is missing from {self.root}") from None
        if not hashlib.sha256(body).hexdigest().startswith(digest):
            raise StorageError(f"snapshot {path} is corrupt: its sha256 no longer matches")
        return body

    def read_meta(self, ref: SnapshotRef | Mapping[str, str]) -> dict[str, Any]:
        path = ref.path if isinstance(ref, SnapshotRef) else ref["path"]
        sidecar = sidecar_path(path)
        try:
            meta: dict[str, Any] = json.loads(self._read_stored(sidecar))
        except FileNotFoundError:
            raise StorageError(f"snapshot sidecar {self.root / sidecar} is missing") from None
        return meta

    # -- manifests ---------------------------------------------------------------------------
    def _manifest_path(self, asset: str, partition_key: str) -> Path:
        return safe_join(
            self.root,
            "manifests",
            validate_table(asset),
            f"{partition_file_stem(partition_key)}.json",
        )

    def write_manifest(
        self, *, asset: str, partition_key: str, manifest: Mapping[str, Any]
    ) -> Path:
        path = self._manifest_path(asset, partition_key)
        atomic_write_bytes(path, _manifest_bytes(manifest))
        return path

    def write_manifests(self, *, asset: str, manifests: Mapping[str, Mapping[str, Any]]) -> None:
        """Several partitions' manifests (partition key -> manifest), each replaced atomically,
        with one durability barrier for all (``atomic_write_many``)."""
        atomic_write_many(
            [
                (self._manifest_path(asset, key), _manifest_bytes(manifest))
                for key, manifest in manifests.items()
            ]
        )

    def read_manifest(self, *, asset: str, partition_key: str) -> dict[str, Any]:
        path = self._manifest_path(asset, partition_key)
        try:
            manifest: dict[str, Any] = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise StorageError(
                f"no manifest for {asset} partition {partition_key} under {self.root}: "
                "materialize raw/bars for it first"
            ) from None
        return manifest

    def manifest_keys(self, *, asset: str) -> builtins.list[str]:
        """The partition keys ``asset`` has manifests for, in order (file names, not parsed)."""
        directory = safe_join(self.root, "manifests", validate_table(asset))
        if not directory.is_dir():
            return []
        return sorted(
            partition_key_from_stem(e.name[: -len(".json")])
            for e in os.scandir(directory)
            if e.name.endswith(".json") and not e.name.startswith(TEMP_PREFIX)
        )

    def sweep(self, *, older_than_s: float = 3600.0) -> int:
        return sweep_temp_files(self.root, older_than_s=older_than_s)

    # -- quarantine ----------------------------------------------------------------------------
    # A response that fails to parse is kept verbatim for a human to inspect, but out of the
    # store: it is no longer listed, so it is neither reused as truth nor counted as coverage,
    # and the next run fetches its window again.
    def quarantine_path(self, ref: SnapshotRef) -> Path:
        """Where ``ref`` goes (or went) when quarantined: the same relative path under
        ``<root>/quarantine/``."""
        return safe_join(self.root, QUARANTINE_DIR, *Path(ref.path).parts)

    def quarantine(self, ref: SnapshotRef, *, reason: str) -> Path:
        """Move a stored snapshot and its sidecar to the quarantine (the reason goes in the
        sidecar). Idempotent: a snapshot already moved is not an error."""
        target = self.quarantine_path(ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = safe_join(self.root, *Path(ref.path).parts)
        sidecar = source.with_name(Path(sidecar_path(source.name)).name)
        meta: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            meta = json.loads(sidecar.read_bytes())
        # The sidecar goes first: without it the body is no longer listed as a snapshot.
        atomic_write_bytes(
            target.with_name(sidecar.name),
            json.dumps({**meta, "quarantined": reason}, sort_keys=True, indent=1).encode(),
        )
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
        with contextlib.suppress(FileNotFoundError):
            os.replace(source, target)
        self._bound_quarantine(keep=target)
        return target

    def quarantine_body(
        self,
        *,
        feed: Feed | str,
        dataset: str,
        symbol: str,
        start: datetime,
        end: datetime,
        body: bytes,
        meta: Mapping[str, Any],
        reason: str,
    ) -> Path:
        """Keep a response that was refused before it was stored, straight in the quarantine."""
        digest = hashlib.sha256(body).hexdigest()
        directory = self._symbol_dir(feed, dataset, symbol)
        name = snapshot_name(start, end, digest)
        relative = (directory / f"{name}.json").relative_to(self.root)
        target = safe_join(self.root, QUARANTINE_DIR, *relative.parts)
        atomic_write_bytes(target, body)
        atomic_write_bytes(
            target.with_name(f"{name}.meta.json"),
            json.dumps(
                {**meta, "sha256": digest, "quarantined": reason}, sort_keys=True, indent=1
            ).encode(),
        )
        self._bound_quarantine(keep=target)
        return target

    def _bound_quarantine(self, *, keep: Path) -> None:
        """Remove the oldest quarantined responses (body and sidecar together) while the
        quarantine holds more than ``quarantine_max_bytes``; ``keep`` (just written) stays."""
        root = self.root / QUARANTINE_DIR
        bodies: dict[Path, tuple[float, int]] = {}
        total = 0
        for path in root.rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.lstat()
                if not path.is_file():
                    continue
                total += stat.st_size
                stem = path.name.removesuffix(".meta.json").removesuffix(".json")
                body = path.with_name(stem + ".json")
                mtime, size = bodies.get(body, (stat.st_mtime, 0))
                bodies[body] = (min(mtime, stat.st_mtime), size + stat.st_size)
        if total <= self.quarantine_max_bytes:
            return
        for body, (_, size) in sorted(bodies.items(), key=lambda item: item[1][0]):
            if total <= self.quarantine_max_bytes:
                break
            if body == keep:
                continue
            for path in (body, body.with_name(body.name.removesuffix(".json") + ".meta.json")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            total -= size
            logger.warning(
                "quarantine over %d bytes: removed %s, the oldest quarantined response",
                self.quarantine_max_bytes,
                body,
            )


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    # msgspec: a tenth of json.dumps's time, the same JSON (keys sorted, one-space indent).
    return msgspec.json.format(msgspec.json.encode(manifest, order="sorted"), indent=1)


def as_feed(feed: Feed | str) -> Feed:
    """A feed; a provider name alone stands for the old layout (read only)."""
    return feed if isinstance(feed, Feed) else Feed(validate_provider(feed))


def uncovered(
    refs: Iterable[SnapshotRef], *, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Sub-windows of [start, end) that none of ``refs`` (sorted by start) covers."""
    gaps: list[tuple[datetime, datetime]] = []
    cursor, end = ensure_utc(start), ensure_utc(end)
    for ref in refs:
        if ref.start > cursor:
            gaps.append((cursor, min(ref.start, end)))
        cursor = max(cursor, ref.end)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    return gaps
