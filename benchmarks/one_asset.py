"""The smallest code location: one asset. benchmarks/startup.py loads it the way it loads
fin_assets.definitions, to tell Dagster's own loading cost from the project's."""

from __future__ import annotations

import dagster as dg


@dg.asset
def one() -> int:
    return 1


defs = dg.Definitions(assets=[one])
