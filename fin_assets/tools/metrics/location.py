"""What the exporter reads of the code location: the sources in force (fin_assets/lib/catalog.py),
their quota ceilings, the assets with their partitions and the checks, loaded in a child process
so that the exporter's own memory never holds the definitions."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import dagster as dg

from fin_assets.dagster_internals.instance import (
    partitions_from_json,
    partitions_to_json,
)
from resources.endpoints import public_url
from resources.metrics.quota import Ceiling
from resources.ratelimit.policy import QuotaPolicy

logger = logging.getLogger("fin_assets.tools.metrics")

logger = logging.getLogger("fin_assets.tools.metrics")


def source_of(key: dg.AssetKey) -> str:
    """The source an asset key belongs to: ``[layer, source, name]``, or ``[layer, name]`` for
    the FIN_* shorthand source ("default"), as ``Source.key`` makes them."""
    return key.path[1] if len(key.path) == 3 else "default"


# -- what the code location says ------------------------------------------------------------------
@dataclass(frozen=True)
class SourceFacts:
    label: str
    provider: str
    base_url: str
    ceiling: Ceiling
    stale_after_s: float


@dataclass(frozen=True)
class AssetFacts:
    key: dg.AssetKey
    source: str
    partitions: dg.TimeWindowPartitionsDefinition | None


@dataclass(frozen=True)
class CodeLocation:
    """What the exporter reads from the code location: sources, assets (with their
    partitions, for the lag), checks, and the settings it needs (the quota store, the cache)."""

    sources: tuple[SourceFacts, ...] = ()
    assets: tuple[AssetFacts, ...] = ()
    check_keys: tuple[dg.AssetCheckKey, ...] = ()
    quota_store: str | None = None
    cache_s: float | None = None

    def ceilings(self) -> dict[tuple[str, str], Ceiling]:
        return {(s.provider, public_url(s.base_url)): s.ceiling for s in self.sources}

    # The exporter gets these from a short-lived child process that loads the definitions
    # (``fin-assets metrics --describe``): loading them imports the code location (polars, the
    # adapters, ~35 MiB) for good; the exporter itself keeps Dagster and its storage only.
    def to_json(self) -> str:
        def policy(p: QuotaPolicy | None) -> list[object] | None:
            return None if p is None else [p.limit, p.window_s, p.burst, p.source]

        return json.dumps(
            {
                "sources": [
                    {
                        **{k: v for k, v in asdict(s).items() if k != "ceiling"},
                        "ceiling": policy(s.ceiling.policy),
                        "ceiling_origin": s.ceiling.origin,
                    }
                    for s in self.sources
                ],
                "assets": [
                    {
                        "key": list(a.key.path),
                        "source": a.source,
                        "partitions": partitions_to_json(a.partitions)
                        if a.partitions is not None
                        else None,
                    }
                    for a in self.assets
                ],
                "checks": [[list(k.asset_key.path), k.name] for k in self.check_keys],
                "quota_store": self.quota_store,
                "cache_s": self.cache_s,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CodeLocation:
        data = json.loads(text)
        sources = tuple(
            SourceFacts(
                label=s["label"],
                provider=s["provider"],
                base_url=s["base_url"],
                ceiling=Ceiling(
                    QuotaPolicy(*s["ceiling"]) if s["ceiling"] else None, s["ceiling_origin"]
                ),
                stale_after_s=s["stale_after_s"],
            )
            for s in data["sources"]
        )
        assets = tuple(
            AssetFacts(
                dg.AssetKey(a["key"]),
                a["source"],
                partitions_from_json(a["partitions"]) if a["partitions"] else None,  # type: ignore[arg-type]
            )
            for a in data["assets"]
        )
        checks = tuple(dg.AssetCheckKey(dg.AssetKey(path), name) for path, name in data["checks"])
        return cls(sources, assets, checks, data["quota_store"], data["cache_s"])


def load_code_location(env: Mapping[str, str]) -> CodeLocation:
    """The definitions Dagster would load from this environment, as the exporter needs them
    (in this process: ``describe_in_child`` is what the exporter uses)."""
    from fin_assets.definitions import definitions_of
    from fin_assets.lib.catalog import sources_in_force
    from fin_assets.lib.resources import MarketApiResource
    from fin_assets.lib.settings import Settings

    settings = Settings.from_env(env)
    in_force = sources_in_force(env, settings)  # the same answer definitions.py builds from
    defs = definitions_of(in_force, settings, env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        graph = defs.get_repository_def().asset_graph
    sources = []
    for source in in_force:
        api = (defs.resources or {}).get(source.resource_key("market_api"))
        if not isinstance(api, MarketApiResource):
            continue
        origin = "configured" if api.quota_requests or api.learn_quota else "documented"
        sources.append(
            SourceFacts(
                label=source.label,
                provider=api.provider,
                base_url=public_url(api.base_url),  # the password stays with the client
                ceiling=Ceiling(api.policy(), origin),
                stale_after_s=source.freshness.hourly_fail_minutes * 60,
            )
        )
    assets = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        partitions = graph.get(key).partitions_def
        assets.append(
            AssetFacts(
                key,
                source_of(key),
                partitions if isinstance(partitions, dg.TimeWindowPartitionsDefinition) else None,
            )
        )
    checks = tuple(sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()))
    return CodeLocation(
        tuple(sources), tuple(assets), checks, settings.quota_store, settings.metrics_cache_s
    )


def describe_in_child(env: Mapping[str, str], *, timeout_s: float = 300) -> CodeLocation:
    """``load_code_location`` in a child process (``fin-assets metrics --describe``)."""
    result = subprocess.run(
        [sys.executable, "-m", "fin_assets.tools.cli", "metrics", "--describe"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "failed")
    return CodeLocation.from_json(result.stdout)
