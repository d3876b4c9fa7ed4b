"""The raw layer of corporate actions: each split and dividend answer kept verbatim, and a manifest.

A fetch asks the provider for the whole history of each symbol's splits and cash dividends
(one request per symbol and kind at the largest page; ``resources/providers/corporate_actions``)
through the same client, pacing and shared quota as bars. Each page is parsed before it is stored
(a page that does not parse is quarantined and the fetch fails naming the file), then written as
a snapshot::

    raw/<feed>/splits/<SYMBOL>/19700101T0000Z_<as of>.<sha256[:12]>.json
    raw/<feed>/dividends/<SYMBOL>/...

covering "everything the provider knew up to the fetch". The fetch's manifest
(``manifests/<source>__corporate_actions/<day>.json``, one per day, the newest wins) lists the
pages of that fetch, so the typed table is rebuilt from exactly those bytes. Bars are never
fetched again for an action: a newly announced split only changes the adjusted tables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from resources.errors import InvalidInputError, ResponseFormatError, SchemaError, StorageError
from resources.http.client import ClientStats, MarketApiClient
from resources.providers.base import ProviderAdapter
from resources.providers.corporate_actions import ACTION_DATASETS, SPECS, ActionDataset
from resources.raw.snapshots import SnapshotRef, SnapshotStore
from resources.tables.schemas import CORPORATE_ACTIONS_SCHEMA
from resources.validation import ensure_utc

ACTIONS_MANIFESTS_DIR = "corporate_actions"  # <root>/manifests/<source>__corporate_actions/
ACTIONS_ASSET = "raw/corporate_actions"
# A snapshot of actions covers everything the provider knew from the epoch to the fetch.
HISTORY_START = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ActionsManifest:
    """The pages of one fetch, per symbol and kind (``splits``, ``dividends``)."""

    provider: str
    fetched_at: datetime
    symbols: Mapping[str, Mapping[str, tuple[SnapshotRef, ...]]]

    @property
    def key(self) -> str:
        return f"{self.fetched_at:%Y-%m-%d}"

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": ACTIONS_ASSET,
            "provider": self.provider,
            "fetched_at": self.fetched_at.isoformat(),
            # What the pages are: as the provider sent them (it never adjusts a dividend's cash
            # for later splits; the split records are the ratios themselves).
            "adjustment": "none",
            "symbols": {
                symbol: {
                    kind: [r.as_manifest_entry() for r in refs] for kind, refs in kinds.items()
                }
                for symbol, kinds in self.symbols.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str) -> ActionsManifest:
        try:
            provider = data["provider"]
            return cls(
                provider=provider,
                fetched_at=datetime.fromisoformat(data["fetched_at"]),
                symbols={
                    symbol: {
                        kind: tuple(
                            SnapshotRef(
                                provider,
                                kind,
                                symbol,
                                datetime.fromisoformat(e["start"]),
                                datetime.fromisoformat(e["end"]),
                                e["sha256"],
                                e["path"],
                            )
                            for e in entries
                        )
                        for kind, entries in kinds.items()
                    }
                    for symbol, kinds in data["symbols"].items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(
                f"manifest {where} is not a corporate-actions manifest: {exc!r}"
            ) from None


@dataclass(frozen=True)
class ActionsResult:
    """What one fetch of corporate actions did."""

    symbols: tuple[str, ...]
    provider: str
    splits: int
    dividends: int
    snapshots_written: int
    client: ClientStats
    manifest: ActionsManifest
    # sha256 of the typed rows (not of the bytes, whose request ids change every time): equal
    # for two fetches that found the same actions. The asset's data version.
    digest: str
    feed: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def action_symbols(adapter: ProviderAdapter, symbols: Sequence[str]) -> tuple[str, ...]:
    """The symbols that can have corporate actions at this provider (stocks, not pairs)."""
    return tuple(s for s in symbols if adapter.has_corporate_actions(s))


def fetch_corporate_actions(
    client: MarketApiClient,
    store: SnapshotStore,
    symbols: Sequence[str],
    *,
    manifests: str = ACTIONS_MANIFESTS_DIR,
    now: datetime | None = None,
) -> ActionsResult:
    """Fetch every split and dividend of ``symbols``, keep the pages, write the manifest."""
    adapter = client.adapter
    actions = adapter.corporate_actions
    if actions is None:
        raise InvalidInputError(f"provider {client.provider} has no corporate actions")
    wanted = action_symbols(adapter, symbols)
    as_of = ensure_utc(now or datetime.now(UTC)).replace(second=0, microsecond=0)
    store.sweep()
    refs: dict[str, dict[str, tuple[SnapshotRef, ...]]] = {}
    frames: list[pl.DataFrame] = []
    written = 0
    for symbol in wanted:
        refs[symbol] = {}
        for dataset in ACTION_DATASETS:
            kept: list[SnapshotRef] = []
            for response, page in client.iter_action_pages(dataset, symbol):
                # Where the page goes, kept or quarantined: the whole history up to the fetch.
                page_at: dict[str, Any] = {
                    "feed": client.feed,
                    "dataset": dataset,
                    "symbol": symbol,
                    "start": HISTORY_START,
                    "end": as_of,
                    "body": response.body,
                    "meta": {
                        "url": response.url,  # already redacted by the client
                        "status": response.status,
                        "headers": response.headers,
                        "fetched_at": response.fetched_at.isoformat(),
                        "records": len(page.records),
                    },
                }
                try:
                    rows = actions.rows(page.records, dataset=dataset, symbol=symbol)
                    check_tickers(rows, symbol=symbol, provider=client.provider, dataset=dataset)
                except ResponseFormatError as exc:
                    path = store.quarantine_body(**page_at, reason=str(exc))
                    raise SchemaError(
                        f"{exc}; the response is kept in {path}",
                        provider=client.provider,
                        symbol=symbol,
                        field=getattr(exc, "field", None),
                    ) from None
                kept.append(store.write(**page_at))
                written += 1
                frames.append(rows)
            refs[symbol][dataset] = tuple(kept)
    manifest = ActionsManifest(client.provider, as_of, refs)
    store.write_manifest(asset=manifests, partition_key=manifest.key, manifest=manifest.to_json())
    table = typed_actions(frames)
    counts = dict(table.group_by("kind").len().iter_rows()) if table.height else {}
    return ActionsResult(
        symbols=wanted,
        provider=client.provider,
        splits=counts.get("split", 0),
        dividends=counts.get("dividend", 0),
        snapshots_written=written,
        client=client.stats,
        manifest=manifest,
        digest=actions_digest(table),
        feed=client.feed.directory,
        counts=counts,
    )


def check_tickers(
    rows: pl.DataFrame, *, symbol: str, provider: str, dataset: ActionDataset
) -> None:
    """A page asked for ``symbol`` that holds another ticker's action is not ours to keep: a
    provider that ignored the filter would otherwise adjust one stock by another's splits."""
    others = rows.filter(pl.col("symbol") != symbol).get_column("symbol").unique().to_list()
    if others:
        raise SchemaError(
            f"{provider} {SPECS[dataset].path}: asked for ticker {symbol}, the answer holds "
            f"actions of {', '.join(sorted(others)[:5])}: an action for a symbol the source does "
            "not hold here",
            provider=provider,
            symbol=symbol,
            field="ticker",
        )


def typed_actions(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The typed rows of every page, one per action, in (symbol, ex_date, kind) order."""
    if not frames:
        return pl.DataFrame(schema=CORPORATE_ACTIONS_SCHEMA)
    return (
        pl.concat(frames)
        .unique(
            subset=["symbol", "ex_date", "kind", "provider_id"], keep="last", maintain_order=True
        )
        .sort(["symbol", "ex_date", "kind", "provider_id"], nulls_last=True)
    )


def actions_digest(table: pl.DataFrame) -> str:
    """A content hash of the typed actions, blind to the provider's own adjustment factors
    (which move with every new action) — two fetches that found the same actions agree."""
    stable = table.drop("provider_factor").sort(table.drop("provider_factor").columns)
    return hashlib.sha256(stable.write_csv().encode()).hexdigest()[:16]


def load_actions_manifest(store: SnapshotStore, *, manifests: str) -> ActionsManifest | None:
    """The newest fetch's manifest, or None if actions were never fetched."""
    keys = store.manifest_keys(asset=manifests)
    if not keys:
        return None
    data = store.read_manifest(asset=manifests, partition_key=keys[-1])
    return ActionsManifest.from_json(data, where=f"{manifests}/{keys[-1]}")


def read_actions(
    store: SnapshotStore, manifest: ActionsManifest, adapter: ProviderAdapter
) -> pl.DataFrame:
    """The typed actions of one fetch, rebuilt from its verbatim pages."""
    actions = adapter.corporate_actions
    if actions is None:
        raise InvalidInputError(f"provider {adapter.name} has no corporate actions")
    frames = []
    for symbol, kinds in manifest.symbols.items():
        for kind, refs in kinds.items():
            dataset: ActionDataset = "splits" if kind == "splits" else "dividends"
            for ref in refs:
                payload = json.loads(store.read(ref))
                records = payload.get("results", []) if isinstance(payload, dict) else []
                frames.append(actions.rows(records, dataset=dataset, symbol=symbol))
    return typed_actions(frames)
