"""One reading of the instance and the quota store: every sample the exporter serves
(``resources/metrics/catalog.py`` declares them)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg

from fin_assets.dagster_internals.instance import (
    AssetCheckExecutionRecordStatus,
    FreshnessState,
    latest_check_executions,
    requested_backfills,
    sensor_cursors,
)
from fin_assets.dagster_internals.runs import classify_failure
from fin_assets.lib.alert_cursor import SENSOR_NAME, AlertCursor
from fin_assets.tools.metrics.events import EventTotals, lag_seconds
from fin_assets.tools.metrics.location import CodeLocation, source_of
from resources.endpoints import endpoint_of
from resources.metrics.catalog import Sample
from resources.metrics.quota import QuotaStoreReader
from resources.notify.alert import ALERT_KINDS

logger = logging.getLogger("fin_assets.tools.metrics")

logger = logging.getLogger("fin_assets.tools.metrics")

BATCH = 1000
FRESHNESS_STATES = ("pass", "warn", "fail", "unknown")
UNFINISHED = {
    "queued": dg.DagsterRunStatus.QUEUED,
    "starting": dg.DagsterRunStatus.STARTING,
    "started": dg.DagsterRunStatus.STARTED,
    "canceling": dg.DagsterRunStatus.CANCELING,
}
FAILURE_WINDOW_S = 3600.0


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
