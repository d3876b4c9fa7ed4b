"""Every metric the exporter serves, declared once: name, type, labels and meaning.

The exporter (``fin_assets/tools/metrics/``) produces ``Sample`` records; ``families`` turns them
into
``prometheus_client`` metric families, refusing a name or a label set the catalog does not
declare. The README's metrics table, the Grafana dashboard and the Prometheus rules in
``deploy/`` are checked against ``CATALOG`` by tests, so a renamed metric cannot leave a panel
or a rule reading nothing.

Conventions (https://prometheus.io/docs/practices/naming/): base units in names (seconds,
bytes), ``_total`` on counters, and no unbounded label: no run ids, no partition keys, no
symbols. ``source`` is a declared source (``default`` for the FIN_* shorthand), ``asset`` an
asset key (``raw/crypto/bars``), ``check`` a check's name: all bounded by the code location.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str

    def __post_init__(self) -> None:
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")


@dataclass(frozen=True)
class Sample:
    """One value of one series in a reading."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def _m(name: str, kind: Kind, labels: str, help: str) -> MetricSpec:
    return MetricSpec(name, kind, tuple(labels.split()), help)


CATALOG: tuple[MetricSpec, ...] = (
    # -- API calls, per source and provider: from what each step recorded -------------------
    _m(
        "fin_assets_api_requests_total",
        "counter",
        "source provider",
        "HTTP requests runs sent to the provider (every attempt, retries included)",
    ),
    _m(
        "fin_assets_api_throttled_total",
        "counter",
        "source provider reason",
        "responses that said slow down: reason=rate_limited (HTTP 429, or a throttle "
        "message in a 200 body), reason=banned (HTTP 418, Binance's ban)",
    ),
    _m(
        "fin_assets_api_retries_total",
        "counter",
        "source provider",
        "requests sent again after a 429, a 5xx, a timeout or a broken body",
    ),
    _m(
        "fin_assets_api_wait_seconds_total",
        "counter",
        "source provider",
        "seconds runs waited before sending: pacing, shared pauses, Retry-After, backoff",
    ),
    _m(
        "fin_assets_api_received_bytes_total",
        "counter",
        "source provider",
        "response bytes received (decoded)",
    ),
    # -- bulk archives (Binance public data, Massive flat files): no API quota spent ---------
    _m(
        "fin_assets_archive_files_total",
        "counter",
        "source provider result",
        "archive files runs used: downloaded, reused (checksum unchanged), missing (to REST)",
    ),
    _m(
        "fin_assets_archive_downloaded_bytes_total",
        "counter",
        "source provider",
        "archive bytes downloaded",
    ),
    _m(
        "fin_assets_archive_checksum_failures_total",
        "counter",
        "source provider",
        "archive downloads refused: their checksum or ETag did not match (nothing kept)",
    ),
    _m(
        "fin_assets_step_attempts_total",
        "counter",
        "source asset outcome",
        "step attempts by outcome: materialized, rescheduled (a wait longer than the step's "
        "budget: Dagster runs it again later) or failed",
    ),
    # -- the shared quota, per quota key: from the quota store ------------------------------
    _m(
        "fin_assets_source_info",
        "gauge",
        "source provider endpoint",
        "1 for each declared source: joins sources to their quota (provider, endpoint)",
    ),
    _m(
        "fin_assets_quota_limit",
        "gauge",
        "provider endpoint credential origin",
        "units (requests or weight) per window in force; origin: configured, documented "
        "(the provider's published quota), stated (the server said it), estimate (learned "
        "from 429s)",
    ),
    _m(
        "fin_assets_quota_window_seconds",
        "gauge",
        "provider endpoint credential",
        "the window of the quota in force",
    ),
    _m(
        "fin_assets_quota_paused_until_timestamp_seconds",
        "gauge",
        "provider endpoint credential",
        "until when every process sharing the quota is paused (a 429, a ban); 0 = never",
    ),
    _m(
        "fin_assets_quota_pause_remaining_seconds",
        "gauge",
        "provider endpoint credential",
        "seconds of that pause still to run (0 = not paused)",
    ),
    _m(
        "fin_assets_quota_booked_ahead_seconds",
        "gauge",
        "provider endpoint credential",
        "how far ahead of now the pacer has booked the quota (0 = idle, it is free now)",
    ),
    # -- assets, per source ------------------------------------------------------------------
    _m(
        "fin_assets_asset_materializations_total",
        "counter",
        "source asset",
        "partitions materialized (a partition materialized twice counts twice)",
    ),
    _m(
        "fin_assets_asset_rows_total",
        "counter",
        "source asset",
        "rows landed: bars fetched (raw), rows written (core tables)",
    ),
    _m(
        "fin_assets_asset_last_materialization_timestamp_seconds",
        "gauge",
        "source asset",
        "when the asset last materialized (any partition)",
    ),
    _m(
        "fin_assets_asset_last_materialization_age_seconds",
        "gauge",
        "source asset",
        "seconds since the asset last materialized (any partition)",
    ),
    _m(
        "fin_assets_asset_lag_seconds",
        "gauge",
        "source asset",
        "how overdue the asset's data is: seconds since the first closed window after the "
        "newest one landed closed; 0 when the newest closed window has landed. Grows without "
        "bound while a source is stopped",
    ),
    _m(
        "fin_assets_source_stale_after_seconds",
        "gauge",
        "source",
        "lag after which the source is stale (its hourly freshness fail window): the "
        "FinAssetsSourceStale rule's threshold",
    ),
    _m(
        "fin_assets_asset_freshness_state",
        "gauge",
        "source asset state",
        "1 for the asset's freshness state as the daemon last evaluated it (pass, warn, "
        "fail, unknown), 0 for the others",
    ),
    _m(
        "fin_assets_check_failing",
        "gauge",
        "source asset check severity",
        "1 when the check's latest evaluation failed, 0 when it passed",
    ),
    # -- Dagster's health ----------------------------------------------------------------------
    _m(
        "fin_assets_runs",
        "gauge",
        "status",
        "runs not finished, by status: queued, starting, started, canceling",
    ),
    _m(
        "fin_assets_runs_queued_oldest_age_seconds",
        "gauge",
        "",
        "age of the oldest queued run (0 = none queued)",
    ),
    _m(
        "fin_assets_runs_failed_last_hour",
        "gauge",
        "reason",
        "runs that failed in the last hour, by reason: killed (the worker was killed or "
        "died), step_failure, timeout (max runtime), start_timeout, other",
    ),
    _m(
        "fin_assets_backfills_in_progress",
        "gauge",
        "",
        "asset backfills requested and not finished",
    ),
    _m(
        "fin_assets_backfill_partitions_left",
        "gauge",
        "",
        "asset partitions those backfills have neither materialized nor failed",
    ),
    _m(
        "fin_assets_daemon_heartbeat_age_seconds",
        "gauge",
        "daemon",
        "seconds since each daemon the instance needs last sent a heartbeat (never: seconds "
        "since the exporter started)",
    ),
    # -- alerting ------------------------------------------------------------------------------
    _m(
        "fin_assets_alerts_sent_total",
        "counter",
        "kind",
        "alerts delivered by health_alert_sensor, by kind: failure, killed, recovery",
    ),
    _m(
        "fin_assets_alert_webhook_failures_total",
        "counter",
        "",
        "alert deliveries the webhook refused or did not answer (after retries)",
    ),
    _m(
        "fin_assets_alerts_pending",
        "gauge",
        "",
        "alerts not delivered yet, kept for the next tick",
    ),
    # -- the exporter itself -------------------------------------------------------------------
    _m(
        "fin_assets_exporter_collect_duration_seconds",
        "gauge",
        "",
        "how long the last reading of the instance and the quota store took",
    ),
    _m(
        "fin_assets_exporter_collect_errors_total",
        "counter",
        "part",
        "readings that failed, by part (instance, quota, definitions, ...); the rest is served",
    ),
)
SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in CATALOG}


def families(samples: Iterable[Sample]) -> list[Metric]:
    """The samples as metric families, in catalog order; every declared metric is present
    (a family without samples is still described), and an undeclared name or label set fails."""
    by_name: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        spec = SPECS.get(sample.name)
        if spec is None:
            raise ValueError(f"{sample.name} is not in the metrics catalog")
        if set(sample.labels) != set(spec.labels):
            raise ValueError(
                f"{sample.name}: labels {sorted(sample.labels)}, declared {list(spec.labels)}"
            )
        by_name[sample.name].append(sample)
    out: list[Metric] = []
    for spec in CATALOG:
        family: CounterMetricFamily | GaugeMetricFamily
        if spec.kind == "counter":
            family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        else:
            family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
        for sample in by_name.get(spec.name, ()):
            family.add_metric([sample.labels[label] for label in spec.labels], sample.value)
        out.append(family)
    return out
