"""The default deployment's names, snapshotted: every asset key, check, job, schedule, sensor,
pool, resource and table that ``fin_assets/defs/`` gives, as a user meets them in the UI, in
``dg list defs`` and in the warehouse. A change to any of them is a change users see (a
dashboard, an alert rule, a saved selection, a ``--select``): it shows here as a diff of
``tests/snapshots/default_deployment.json``, to be made on purpose.

After a deliberate change, write the snapshot anew and commit it with the change::

    FIN_UPDATE_SNAPSHOT=1 uv run pytest tests/unit/test_definitions_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from fin_assets.definitions import build_definitions
from fin_assets.lib.assets.actions import EQUITIES_TABLES, has_corporate_actions
from fin_assets.lib.catalog import sources_in_force
from resources.tables.core import CORE_BARS_TABLE
from resources.tables.daily import DAILY_BARS_TABLE, DAILY_RETURNS_TABLE

SNAPSHOT = Path(__file__).resolve().parents[1] / "snapshots" / "default_deployment.json"


def default_deployment() -> dict[str, Any]:
    defs = build_definitions({})
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    pools = {
        f"{node.name}: {node.pool}"
        for job in repo.get_all_jobs()
        for node in job.graph.node_defs
        if getattr(node, "pool", None)
    }
    sources = sources_in_force({})
    return {
        "assets": sorted(
            f"{key.to_user_string()} (group {graph.get(key).group_name})"
            for key in graph.get_all_asset_keys()
        ),
        "checks": sorted(key.to_user_string() for key in graph.asset_check_keys),
        "jobs": sorted(job.name for job in repo.get_all_jobs()),
        "schedules": sorted(
            f"{s.name}: {s.cron_schedule} {s.execution_timezone or 'UTC'}"
            for s in repo.schedule_defs
        ),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "pools": sorted(pools),
        "resources": sorted(defs.resources or {}),
        "tables": sorted(
            [
                source.table(base)
                for source in sources
                for base in (CORE_BARS_TABLE, DAILY_BARS_TABLE, DAILY_RETURNS_TABLE)
            ]
            + [
                source.table(base)
                for source in sources
                if has_corporate_actions(source)
                for base in EQUITIES_TABLES
            ]
        ),
        "manifests": sorted(source.table("raw_bars") for source in sources),
    }


def test_the_default_deployment_matches_its_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    # The declared sources' base URL is {{ env('FIN_SIMULATOR_URL', ...) }}: its default here.
    monkeypatch.delenv("FIN_SIMULATOR_URL", raising=False)
    found = default_deployment()
    if os.environ.get("FIN_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(found, indent=2) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for part in expected.keys() | found.keys():
        assert found.get(part) == expected.get(part), (
            f"{part} of the default deployment changed (a change users see): if on purpose, "
            f"FIN_UPDATE_SNAPSHOT=1 and commit {SNAPSHOT.name}"
        )
