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

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from fin_assets.dagster_internals.instance import (
    AssetCheckExecutionRecordStatus,
    FreshnessState,
    latest_check_executions,
    partitions_from_json,
    partitions_to_json,
    requested_backfills,
    sensor_cursors,
)
from fin_assets.dagster_internals.runs import classify_failure
from fin_assets.lib.alert_cursor import SENSOR_NAME, AlertCursor
from fin_assets.lib.assets.attempts import ATTEMPT_OUTCOME
from resources.logfields import log_fields
from resources.metrics.catalog import Sample, families
from resources.metrics.quota import Ceiling, QuotaStoreReader, endpoint_of
from resources.notify.alert import ALERT_KINDS
from resources.ratelimit.policy import QuotaPolicy

logger = logging.getLogger("fin_assets.tools.metrics")

DEFAULT_PORT = 9465
BATCH = 1000
FRESHNESS_STATES = ("pass", "warn", "fail", "unknown")
UNFINISHED = {
    "queued": dg.DagsterRunStatus.QUEUED,
    "starting": dg.DagsterRunStatus.STARTING,
    "started": dg.DagsterRunStatus.STARTED,
    "canceling": dg.DagsterRunStatus.CANCELING,
}
FAILURE_WINDOW_S = 3600.0


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
        return {(s.provider, s.base_url.rstrip("/")): s.ceiling for s in self.sources}

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
    from fin_assets.definitions import build_definitions
    from fin_assets.lib.catalog import sources_in_force
    from fin_assets.lib.resources import MarketApiResource
    from fin_assets.lib.settings import Settings

    settings = Settings.from_env(env)
    defs = build_definitions(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        graph = defs.get_repository_def().asset_graph
    sources = []
    for source in sources_in_force(env, settings):  # the same answer definitions.py builds
        api = (defs.resources or {}).get(source.resource_key("market_api"))
        if not isinstance(api, MarketApiResource):
            continue
        origin = "configured" if api.quota_requests or api.learn_quota else "documented"
        sources.append(
            SourceFacts(
                label=source.label,
                provider=api.provider,
                base_url=api.base_url,
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


# -- the pure parts --------------------------------------------------------------------------------
def lag_seconds(
    partitions: dg.TimeWindowPartitionsDefinition, newest: str | None, now: datetime
) -> float:
    """Seconds since the first closed window after ``newest`` (the newest partition landed)
    closed; 0 when the newest closed window has landed (or none has closed)."""
    with dg.partition_loading_context(effective_dt=now):
        last_closed = partitions.get_last_partition_key()
        if last_closed is None:
            return 0.0
        # Time partition keys ("2026-01-05-13:00", "2026-01-05") sort as their windows do.
        if newest is not None and newest >= last_closed:
            return 0.0
        first_missing = (
            partitions.get_next_partition_key(newest)
            if newest is not None
            else partitions.get_first_partition_key()
        )
        if first_missing is None:
            return 0.0
        closed = partitions.time_window_for_partition_key(first_missing).end
    return max(0.0, (now - closed).total_seconds())


def _number(metadata: Mapping[str, Any], name: str) -> float:
    value = metadata.get(name)
    value = getattr(value, "value", value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _text(metadata: Mapping[str, Any], name: str) -> str | None:
    value = metadata.get(name)
    value = getattr(value, "value", value)
    return str(value) if value is not None else None


@dataclass
class ApiTotals:
    requests: float = 0.0
    throttled: float = 0.0  # ClientStats.throttled: 429s, in-body throttles and bans
    banned: float = 0.0  # of which bans (418)
    retries: float = 0.0
    wait_s: float = 0.0
    bytes: float = 0.0

    def add(self, metadata: Mapping[str, Any]) -> None:
        self.requests += _number(metadata, "requests")
        self.throttled += _number(metadata, "throttled_429")
        self.banned += _number(metadata, "banned_418")
        self.retries += _number(metadata, "retries")
        self.wait_s += _number(metadata, "seconds_waited")
        self.bytes += _number(metadata, "bytes_received")


@dataclass
class EventTotals:
    """What the event log has said so far, summed (the counters), and the cursors."""

    materialization_cursor: int = 0
    observation_cursor: int = 0
    api: dict[tuple[str, str], ApiTotals] = field(default_factory=dict)  # (source, provider)
    attempts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    materializations: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Summed as floats (metadata figures are read by ``_number``): a Counter is typed for ints.
    rows: dict[tuple[str, str], float] = field(default_factory=dict)
    newest_partition: dict[dg.AssetKey, str] = field(default_factory=dict)
    last_materialized: dict[dg.AssetKey, float] = field(default_factory=dict)

    def materialized(self, record: dg.EventLogRecord) -> None:
        entry = record.event_log_entry
        materialization = entry.asset_materialization
        if materialization is None:
            return
        key, partition = materialization.asset_key, materialization.partition
        metadata = materialization.metadata
        source = _text(metadata, "source") or source_of(key)
        asset = key.to_user_string()
        self.materializations[source, asset] += 1
        self.last_materialized[key] = max(self.last_materialized.get(key, 0.0), entry.timestamp)
        if partition is not None and partition > self.newest_partition.get(key, ""):
            self.newest_partition[key] = partition
        # A range run records one set of figures for its whole step, on every partition: count
        # it once, on the step's last partition.
        last = _text(metadata, "last_partition")
        if last is not None and partition is not None and partition != last:
            return
        self.attempts[source, asset, "materialized"] += 1
        self.rows[source, asset] = self.rows.get((source, asset), 0.0) + _number(metadata, "rows")
        if "requests" in metadata:
            provider = _text(metadata, "provider") or "unknown"
            self.api.setdefault((source, provider), ApiTotals()).add(metadata)

    def observed(self, record: dg.EventLogRecord) -> None:
        observation = record.event_log_entry.asset_observation
        if observation is None:
            return
        metadata = observation.metadata
        outcome = _text(metadata, ATTEMPT_OUTCOME)
        if outcome is None:
            return  # not an attempt's spending
        key = observation.asset_key
        source = _text(metadata, "source") or source_of(key)
        self.attempts[source, key.to_user_string(), outcome] += 1
        provider = _text(metadata, "provider") or "unknown"
        self.api.setdefault((source, provider), ApiTotals()).add(metadata)

    def samples(self, location: CodeLocation) -> list[Sample]:
        out = []
        for (source, provider), api in sorted(self.api.items()):
            labels = {"source": source, "provider": provider}
            out += [
                Sample("fin_assets_api_requests_total", api.requests, labels),
                Sample(
                    "fin_assets_api_throttled_total",
                    api.throttled - api.banned,
                    {**labels, "reason": "rate_limited"},
                ),
                Sample(
                    "fin_assets_api_throttled_total", api.banned, {**labels, "reason": "banned"}
                ),
                Sample("fin_assets_api_retries_total", api.retries, labels),
                Sample("fin_assets_api_wait_seconds_total", api.wait_s, labels),
                Sample("fin_assets_api_received_bytes_total", api.bytes, labels),
            ]
        for (source, asset, outcome), count in sorted(self.attempts.items()):
            out.append(
                Sample(
                    "fin_assets_step_attempts_total",
                    count,
                    {"source": source, "asset": asset, "outcome": outcome},
                )
            )
        # Every asset of the code location has its counters from the start, at 0 if need be,
        # so that rate() and increase() see the first materialization.
        known = {(a.source, a.key.to_user_string()) for a in location.assets}
        for source, asset in sorted(known | set(self.materializations)):
            labels = {"source": source, "asset": asset}
            out += [
                Sample(
                    "fin_assets_asset_materializations_total",
                    self.materializations[source, asset],
                    labels,
                ),
                Sample("fin_assets_asset_rows_total", self.rows.get((source, asset), 0.0), labels),
            ]
        return out


# -- reading the instance ------------------------------------------------------------------------
class InstanceMetrics:
    """One reading of the instance, the quota store and the code location, as samples."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        location: CodeLocation | None = None,
        *,
        quota_store: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance = instance
        self.location = location or CodeLocation()
        self.quota = QuotaStoreReader(quota_store) if quota_store else None
        self._clock = clock
        self.started = clock()
        self.totals = EventTotals()
        self.errors: Counter[str] = Counter()
        self.last_duration_s = 0.0
        self._failures: dict[str, str] = {}  # run id -> failure reason (it never changes)
        self._check_values: dict[dg.AssetCheckKey, Sample] = {}  # last completed evaluation

    def close(self) -> None:
        if self.quota is not None:
            self.quota.close()

    def read(self) -> list[Sample]:
        began = time.perf_counter()
        now = self._clock()
        parts: dict[str, Callable[[float], list[Sample]]] = {
            "events": self._events,
            "assets": self._assets,
            "checks": self._checks,
            "runs": self._runs,
            "backfills": self._backfills,
            "daemons": self._daemons,
            "alerts": self._alerts,
            "quota": self._quota,
        }
        samples: list[Sample] = []
        for part, read in parts.items():
            try:
                samples += read(now)
            except Exception:
                # One part failing (a quota store that is down) leaves the others served.
                self.errors[part] += 1
                logger.exception("metrics: reading %s failed part=%s", part, part)
        samples += [
            Sample("fin_assets_exporter_collect_errors_total", count, {"part": part})
            for part, count in sorted(self.errors.items())
        ]
        self.last_duration_s = time.perf_counter() - began
        samples.append(Sample("fin_assets_exporter_collect_duration_seconds", self.last_duration_s))
        return samples

    # -- counters from the event log --------------------------------------------------------
    def _new_records(
        self, event_type: dg.DagsterEventType, after: int
    ) -> Iterator[dg.EventLogRecord]:
        while True:
            records = self.instance.event_log_storage.get_event_records(
                dg.EventRecordsFilter(event_type=event_type, after_cursor=after),
                limit=BATCH,
                ascending=True,
            )
            yield from records
            if len(records) < BATCH:
                return
            after = records[-1].storage_id

    def _events(self, now: float) -> list[Sample]:
        totals = self.totals
        for record in self._new_records(
            dg.DagsterEventType.ASSET_MATERIALIZATION, totals.materialization_cursor
        ):
            totals.materialized(record)
            totals.materialization_cursor = record.storage_id
        for record in self._new_records(
            dg.DagsterEventType.ASSET_OBSERVATION, totals.observation_cursor
        ):
            totals.observed(record)
            totals.observation_cursor = record.storage_id
        return totals.samples(self.location)

    # -- gauges ------------------------------------------------------------------------------
    def _assets(self, now: float) -> list[Sample]:
        out = []
        location, totals = self.location, self.totals
        for source in location.sources:
            out += [
                Sample(
                    "fin_assets_source_info",
                    1,
                    {
                        "source": source.label,
                        "provider": source.provider,
                        "endpoint": endpoint_of(source.base_url),
                    },
                ),
                Sample(
                    "fin_assets_source_stale_after_seconds",
                    source.stale_after_s,
                    {"source": source.label},
                ),
            ]
        for key, when in sorted(totals.last_materialized.items(), key=lambda kv: tuple(kv[0].path)):
            labels = {"source": source_of(key), "asset": key.to_user_string()}
            out += [
                Sample("fin_assets_asset_last_materialization_timestamp_seconds", when, labels),
                Sample(
                    "fin_assets_asset_last_materialization_age_seconds",
                    max(0.0, now - when),
                    labels,
                ),
            ]
        moment = datetime.fromtimestamp(now, UTC)
        for asset in location.assets:
            if asset.partitions is None:
                continue
            labels = {"source": asset.source, "asset": asset.key.to_user_string()}
            try:
                lag = lag_seconds(asset.partitions, totals.newest_partition.get(asset.key), moment)
            except Exception:  # a partition landed that the definitions no longer have
                logger.warning("metrics: no lag for %s", labels["asset"], exc_info=True)
                continue
            out.append(Sample("fin_assets_asset_lag_seconds", lag, labels))
        keys = [a.key for a in location.assets]
        if keys:
            states = self.instance.get_freshness_state_records(keys)
            for asset in location.assets:
                record = states.get(asset.key)
                state = record.freshness_state if record else FreshnessState.UNKNOWN
                if state == FreshnessState.NOT_APPLICABLE:
                    continue
                for name in FRESHNESS_STATES:
                    out.append(
                        Sample(
                            "fin_assets_asset_freshness_state",
                            1.0 if state.value.lower() == name else 0.0,
                            {
                                "source": asset.source,
                                "asset": asset.key.to_user_string(),
                                "state": name,
                            },
                        )
                    )
        return out

    def _checks(self, now: float) -> list[Sample]:
        keys = list(self.location.check_keys)
        if not keys:
            return []
        latest = latest_check_executions(self.instance, keys)
        for key in keys:
            record = latest.get(key)
            if record is None or record.status not in (
                AssetCheckExecutionRecordStatus.SUCCEEDED,
                AssetCheckExecutionRecordStatus.FAILED,
            ):
                continue  # never run, or running now: its last completed value stands
            evaluation = record.evaluation
            severity = evaluation.severity.value.lower() if evaluation else "error"
            self._check_values[key] = Sample(
                "fin_assets_check_failing",
                1.0 if record.status == AssetCheckExecutionRecordStatus.FAILED else 0.0,
                {
                    "source": source_of(key.asset_key),
                    "asset": key.asset_key.to_user_string(),
                    "check": key.name,
                    "severity": severity,
                },
            )
        return [self._check_values[key] for key in keys if key in self._check_values]

    def _runs(self, now: float) -> list[Sample]:
        instance = self.instance
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=list(UNFINISHED.values()))
        )
        counts = Counter(record.dagster_run.status for record in records)
        queued = [
            r.create_timestamp.timestamp()
            for r in records
            if r.dagster_run.status == dg.DagsterRunStatus.QUEUED
        ]
        out = [
            Sample("fin_assets_runs", counts[status], {"status": name})
            for name, status in UNFINISHED.items()
        ]
        out.append(
            Sample(
                "fin_assets_runs_queued_oldest_age_seconds",
                max(0.0, now - min(queued)) if queued else 0.0,
            )
        )
        failed = instance.get_run_records(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE],
                updated_after=datetime.fromtimestamp(now, UTC)
                - timedelta(seconds=FAILURE_WINDOW_S),
            )
        )
        reasons: Counter[str] = Counter()
        recent = set()
        for record in failed:
            run = record.dagster_run
            recent.add(run.run_id)
            if run.run_id not in self._failures:
                self._failures[run.run_id] = classify_failure(instance, run).reason
            reasons[self._failures[run.run_id]] += 1
        self._failures = {k: v for k, v in self._failures.items() if k in recent}
        for reason in ("killed", "step_failure", "timeout", "start_timeout", "other"):
            out.append(
                Sample("fin_assets_runs_failed_last_hour", reasons[reason], {"reason": reason})
            )
        return out

    def _backfills(self, now: float) -> list[Sample]:
        backfills = requested_backfills(self.instance)
        left = 0
        for backfill in backfills:
            data = backfill.asset_backfill_data
            if data is None:
                continue
            done = (
                data.materialized_subset.num_partitions_and_non_partitioned_assets
                + data.failed_and_downstream_subset.num_partitions_and_non_partitioned_assets
            )
            left += max(0, data.target_subset.num_partitions_and_non_partitioned_assets - done)
        return [
            Sample("fin_assets_backfills_in_progress", len(backfills)),
            Sample("fin_assets_backfill_partitions_left", left),
        ]

    def _daemons(self, now: float) -> list[Sample]:
        beats = self.instance.get_daemon_heartbeats()
        out = []
        for daemon in sorted(self.instance.get_required_daemon_types()):
            beat = beats.get(daemon)
            # Never seen: at least as long as this exporter has been looking.
            last = beat.timestamp if beat is not None else self.started
            out.append(
                Sample(
                    "fin_assets_daemon_heartbeat_age_seconds",
                    max(0.0, now - last),
                    {"daemon": daemon.lower()},
                )
            )
        return out

    def _alerts(self, now: float) -> list[Sample]:
        sent: Counter[str] = Counter()
        failures = pending = 0
        for text in sensor_cursors(self.instance, SENSOR_NAME):
            cursor = AlertCursor.load(text)
            if cursor is None:
                continue
            sent.update(cursor.sent)
            failures += cursor.delivery_failures
            pending += len(cursor.pending)
        return [
            *(
                Sample("fin_assets_alerts_sent_total", sent[kind], {"kind": kind})
                for kind in ALERT_KINDS
            ),
            Sample("fin_assets_alert_webhook_failures_total", failures),
            Sample("fin_assets_alerts_pending", pending),
        ]

    def _quota(self, now: float) -> list[Sample]:
        if self.quota is None:
            return []
        out = []
        for reading in self.quota.readings(self.location.ceilings()):
            out += reading.samples(now)
        return out


# -- serving ---------------------------------------------------------------------------------------
class CachedCollector(Collector):
    """Serves the latest reading; reads again when it is older than ``cache_s`` seconds."""

    def __init__(
        self,
        read: Callable[[], list[Sample]],
        *,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._families: list[Metric] | None = None
        self._at = 0.0

    def describe(self) -> list[Metric]:
        return families([])  # the names, without a reading (the registry asks at register)

    def collect(self) -> list[Metric]:
        with self._lock:  # concurrent scrapes share one reading
            if self._families is None or self._clock() - self._at >= self._cache_s:
                self._families = families(self._read())
                self._at = self._clock()
            return self._families


def serve(
    *,
    host: str,
    port: int,
    cache_s: float | None,
    env: Mapping[str, str],
    stop: threading.Event | None = None,
) -> int:
    """Read the instance named by DAGSTER_HOME and serve /metrics until SIGTERM or ``stop``;
    ``cache_s`` None: FIN_METRICS_CACHE_SECONDS."""
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    if not env.get("DAGSTER_HOME"):
        logger.error("fin-assets metrics: DAGSTER_HOME is not set: point it at the instance")
        return 2
    began = time.monotonic()
    location: CodeLocation | None = None
    try:
        location = describe_in_child(env)
    except Exception as exc:
        # A broken code location is no reason to stop reporting on the instance: the
        # daemon's heartbeat and the runs still page someone.
        logger.error("metrics: the definitions did not load (%s); serving the instance only", exc)
    instance = dg.DagsterInstance.get()
    metrics = InstanceMetrics(
        instance, location, quota_store=location.quota_store if location else None
    )
    if location is None:
        metrics.errors["definitions"] += 1
    if cache_s is None:
        cache_s = location.cache_s if location and location.cache_s is not None else 5.0
    collector = CachedCollector(metrics.read, cache_s=cache_s)
    collector.collect()  # the history is read once, before the first scrape
    logger.info(
        "metrics: definitions and event log read in %.2f s; serving http://%s:%d/metrics%s",
        time.monotonic() - began,
        host,
        port,
        log_fields(cache_s=float(cache_s)),
    )
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, ...
    server, thread = start_http_server(port, addr=host, registry=registry)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
        metrics.close()
        instance.dispose()
    return 0
