"""``Manifest``: which verbatim snapshots make up one raw/bars partition.

A manifest is written for every partition raw/bars materializes and read by core/bars to build
the same window, so the processed table is rebuilt from exactly the bytes that were fetched.
On disk it is JSON under ``<root>/manifests/raw_bars/<partition>.json`` (``SnapshotStore``)::

    {"asset": "raw/bars", "partition": "2026-01-05-03:00", "provider": "simulator",
     "dataset": "bars_1m", "adjustment": "none", "window": {"start": ..., "end": ...},
     "filled_by": {"AAPL": "rest"},
     "symbols": {"AAPL": [{"path": ..., "sha256": ..., "start": ..., "end": ...}, ...]}}

An entry cut from a provider's bulk archive (``resources/raw/archive.py``) also names its own
``dataset`` (the archive's format), the ``archive`` file and that file's verified
``archive_sha256``; ``filled_by`` then says ``archive`` for its symbol.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resources.errors import StorageError
from resources.raw.snapshots import ArchiveOrigin, SnapshotRef, SnapshotStore

RAW_BARS_ASSET = "raw/bars"
MANIFESTS_DIR = "raw_bars"  # <root>/manifests/<MANIFESTS_DIR>/
BARS_DATASET = "bars_1m"


@dataclass(frozen=True)
class Manifest:
    """The snapshots covering one partition window, per symbol, in time order."""

    partition: str
    provider: str
    start: datetime
    end: datetime
    symbols: Mapping[str, tuple[SnapshotRef, ...]]
    dataset: str = BARS_DATASET

    def refs(self) -> Iterator[tuple[str, SnapshotRef]]:
        for symbol, refs in self.symbols.items():
            for ref in refs:
                yield symbol, ref

    def filled_by(self) -> dict[str, str]:
        paths = {}
        for symbol, refs in self.symbols.items():
            kinds = {"archive" if ref.archive is not None else "rest" for ref in refs}
            paths[symbol] = "+".join(sorted(kinds)) if kinds else "none"
        return paths

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": RAW_BARS_ASSET,
            "partition": self.partition,
            "provider": self.provider,
            "dataset": self.dataset,
            # Raw bars are as traded: never split-adjusted (docs/corporate-actions.md).
            "adjustment": "none",
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            # Which path filled each symbol's window: the provider's bulk archive, its REST API,
            # or both (a window across an archived day and a recent one).
            "filled_by": self.filled_by(),
            "symbols": {
                symbol: [ref.as_manifest_entry() for ref in refs]
                for symbol, refs in self.symbols.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str) -> Manifest:
        """A manifest read back; a file that is not one fails naming ``where``."""
        try:
            provider, dataset = data["provider"], data["dataset"]
            symbols = {
                symbol: tuple(
                    SnapshotRef(
                        provider,
                        entry.get("dataset", dataset),
                        symbol,
                        datetime.fromisoformat(entry["start"]),
                        datetime.fromisoformat(entry["end"]),
                        entry["sha256"],
                        entry["path"],
                        ArchiveOrigin(entry["archive"], entry["archive_sha256"])
                        if "archive" in entry
                        else None,
                    )
                    for entry in entries
                )
                for symbol, entries in data["symbols"].items()
            }
            return cls(
                partition=data["partition"],
                provider=provider,
                start=datetime.fromisoformat(data["window"]["start"]),
                end=datetime.fromisoformat(data["window"]["end"]),
                symbols=symbols,
                dataset=dataset,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(f"manifest {where} is not a raw/bars manifest: {exc!r}") from None


def save_manifest(
    store: SnapshotStore, manifest: Manifest, *, directory: str = MANIFESTS_DIR
) -> None:
    """``directory``: one per source (``<source>__raw_bars``), so two sources never share one."""
    store.write_manifest(
        asset=directory, partition_key=manifest.partition, manifest=manifest.to_json()
    )


def save_manifests(
    store: SnapshotStore, manifests: list[Manifest], *, directory: str = MANIFESTS_DIR
) -> None:
    """Several partitions' manifests in one write (``SnapshotStore.write_manifests``)."""
    store.write_manifests(asset=directory, manifests={m.partition: m.to_json() for m in manifests})


def load_manifest(
    store: SnapshotStore, partition_key: str, *, directory: str = MANIFESTS_DIR
) -> Manifest:
    data = store.read_manifest(asset=directory, partition_key=partition_key)
    return Manifest.from_json(data, where=f"{directory}/{partition_key}")
