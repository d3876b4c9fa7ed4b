"""``fin-assets metrics``: a Prometheus exporter over the Dagster instance and the quota store.

Dagster's open-source edition serves no metrics (``dagster-prometheus`` only pushes to a
Pushgateway). This is a long-lived process of its own (``deploy/systemd/
fin-assets-metrics.service``), apart from the daemon, so the Prometheus rules in ``deploy/``
page a person even when the daemon is dead. Each reading (cached ``FIN_METRICS_CACHE_SECONDS``,
so scrapes are cheap) asks the instance — SQLite or PostgreSQL, through Dagster's own API —
and the quota store; ``resources/metrics/catalog.py`` declares every metric.

Counters are sums over the event log, not over the exporter's lifetime: at start the exporter
reads the history once, then only what is new (a storage-id cursor per event type), so a
restart neither resets nor double-counts them. What each step spent on the API comes from
its materialization (once per step: a range run's partitions share one set of figures) or,
for an attempt that was rescheduled or failed, from the observation it left
(``fin_assets/lib/assets/attempts.py``). Gauges (lag, freshness, checks, runs, backfills,
heartbeats, the quota) are read fresh each time.
"""

from fin_assets.tools.metrics.events import ApiTotals, EventTotals, lag_seconds
from fin_assets.tools.metrics.location import (
    AssetFacts,
    CodeLocation,
    SourceFacts,
    describe_in_child,
    load_code_location,
    source_of,
)
from fin_assets.tools.metrics.readings import InstanceMetrics
from fin_assets.tools.metrics.server import DEFAULT_PORT, CachedCollector, serve

__all__ = [
    "DEFAULT_PORT",
    "ApiTotals",
    "AssetFacts",
    "CachedCollector",
    "CodeLocation",
    "EventTotals",
    "InstanceMetrics",
    "SourceFacts",
    "describe_in_child",
    "lag_seconds",
    "load_code_location",
    "serve",
    "source_of",
]
