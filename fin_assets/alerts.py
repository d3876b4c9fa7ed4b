"""``health_alert_sensor``: the part of alerting Dagster's open-source edition leaves out.

Every tick reads, after its cursor (an event-log storage id, kept by Dagster across ticks and
restarts), the freshness state changes the daemon recorded, asset check evaluations and failed
runs. It remembers what is failing, so each problem is reported once when it starts and once
when it recovers; alerts it could not deliver stay in the cursor and go out on the next tick.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.event_api import EventLogRecord, EventRecordsFilter
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from fin_assets.runs import reap_dead_runs
from resources.dagster_resources import AlertingResource
from resources.notify.alert import Alert

BATCH = 500
MAX_PENDING = 200


@dataclass
class AlertCursor:
    event_id: int = 0  # last FRESHNESS_STATE_CHANGE storage id seen
    run_cursor: str | None = None  # fetch_run_status_changes cursor for RUN_FAILURE
    failing: dict[str, str] = field(default_factory=dict)  # alert key -> title
    pending: list[dict[str, object]] = field(default_factory=list)

    @classmethod
    def load(cls, raw: str | None) -> AlertCursor | None:
        return cls(**json.loads(raw)) if raw else None

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    # A problem is said once when it starts and once when it ends: ``failing`` is what was said.
    def opened(self, key: str, subject: str, title: str, detail: str, when: float) -> Alert:
        self.failing[key] = title
        return Alert(key, "failure", subject, title, detail, when)

    def recovered(self, key: str, subject: str, title: str, detail: str, when: float) -> Alert:
        del self.failing[key]
        return Alert(key, "recovery", subject, title, detail, when)


# Each source is read the way every event-log storage supports it (the embedded SQLite one is
# sharded per run, so a plain storage-id cursor only works for events kept in its index shard).
def _freshness_changes(instance: dg.DagsterInstance, after: int) -> list[EventLogRecord]:
    return list(
        instance.event_log_storage.get_event_records(
            EventRecordsFilter(
                event_type=dg.DagsterEventType.FRESHNESS_STATE_CHANGE, after_cursor=after
            ),
            limit=BATCH,
            ascending=True,
        )
    )


def _latest_freshness_id(instance: dg.DagsterInstance) -> int:
    records = instance.event_log_storage.get_event_records(
        EventRecordsFilter(event_type=dg.DagsterEventType.FRESHNESS_STATE_CHANGE),
        limit=1,
        ascending=False,
    )
    return max([0, *(r.storage_id for r in records)])


def freshness_alerts(records: Iterable[EventLogRecord], cursor: AlertCursor) -> list[Alert]:
    alerts = []
    for record in records:
        cursor.event_id = max(cursor.event_id, record.storage_id)
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        change = event.event_specific_data
        asset = change.key.to_user_string()  # type: ignore[union-attr]
        key = f"freshness:{asset}"
        state = change.new_state  # type: ignore[union-attr]
        when = record.event_log_entry.timestamp
        if state == FreshnessState.FAIL and key not in cursor.failing:
            alerts.append(
                cursor.opened(
                    key,
                    asset,
                    f"{asset} is stale",
                    f"No materialization of {asset} within its freshness policy "
                    f"(was {change.previous_state.value}).",  # type: ignore[union-attr]
                    when,
                )
            )
        elif state == FreshnessState.PASS and key in cursor.failing:
            alerts.append(
                cursor.recovered(
                    key,
                    asset,
                    f"{asset} is fresh again",
                    f"{asset} materialized within its freshness policy.",
                    when,
                )
            )
    return alerts


def check_alerts(
    latest: Mapping[dg.AssetCheckKey, AssetCheckExecutionRecord], cursor: AlertCursor
) -> list[Alert]:
    """Compare each check's latest completed evaluation with what we said last time."""
    alerts = []
    for check_key, record in sorted(latest.items(), key=lambda kv: kv[0].to_user_string()):
        asset, check = check_key.asset_key.to_user_string(), check_key.name
        key = f"check:{asset}:{check}"
        evaluation = record.evaluation
        if record.status == AssetCheckExecutionRecordStatus.FAILED and key not in cursor.failing:
            severity = evaluation.severity.value if evaluation else "ERROR"
            facts = (
                "; ".join(
                    f"{name}: {value.value}" for name, value in (evaluation.metadata or {}).items()
                )
                if evaluation
                else ""
            )
            alerts.append(
                cursor.opened(
                    key,
                    asset,
                    f"check {check} on {asset} failed ({severity})",
                    facts or "no details",
                    record.create_timestamp,
                )
            )
        elif record.status == AssetCheckExecutionRecordStatus.SUCCEEDED and key in cursor.failing:
            alerts.append(
                cursor.recovered(
                    key,
                    asset,
                    f"check {check} on {asset} passes",
                    "The latest evaluation passed.",
                    record.create_timestamp,
                )
            )
    return alerts


def run_failure_alerts(instance: dg.DagsterInstance, cursor: AlertCursor) -> list[Alert]:
    result = instance.fetch_run_status_changes(
        dg.DagsterEventType.RUN_FAILURE, limit=BATCH, cursor=cursor.run_cursor, ascending=True
    )
    cursor.run_cursor = result.cursor
    alerts = []
    for record in result.records:
        entry = record.event_log_entry
        job = entry.job_name or "run"
        message = (entry.dagster_event.message if entry.dagster_event else None) or "run failed"
        alerts.append(
            Alert(
                f"run:{entry.run_id}",
                "failure",
                job,
                f"run {entry.run_id[:8]} of {job} failed",
                message.splitlines()[0],
                entry.timestamp,
            )
        )
    return alerts


def build_health_alert_sensor(*, minimum_interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="health_alert_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reports the pipeline's health to a human: stale assets, failed checks and "
        "failed runs, posted to FIN_ALERT_WEBHOOK_URL once when they start and once when they "
        "recover.",
    )
    def health_alert_sensor(
        context: dg.SensorEvaluationContext, alerting: AlertingResource
    ) -> dg.SkipReason:
        instance = context.instance
        # A run whose worker died (SIGKILL, OOM) is failed here within a tick, daemon or not,
        # and its failure is then reported below like any other.
        reap_dead_runs(instance)
        cursor = AlertCursor.load(context.cursor)
        if cursor is None:
            # First tick ever: start at the present instead of replaying the whole history.
            cursor = AlertCursor(event_id=_latest_freshness_id(instance))
            cursor.run_cursor = instance.fetch_run_status_changes(
                dg.DagsterEventType.RUN_FAILURE, limit=1, ascending=False
            ).cursor
        check_keys = list(context.repository_def.asset_graph.asset_check_keys)  # type: ignore[union-attr]
        new = [
            *freshness_alerts(_freshness_changes(instance, cursor.event_id), cursor),
            *check_alerts(
                instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys),
                cursor,
            ),
            *run_failure_alerts(instance, cursor),
        ]
        queue = [Alert(**a) for a in cursor.pending] + new  # type: ignore[arg-type]
        notifier = alerting.notifier()
        try:
            undelivered = [alert for alert in queue if not notifier.send(alert)]
        finally:
            notifier.close()
        cursor.pending = [asdict(a) for a in undelivered][-MAX_PENDING:]
        context.update_cursor(cursor.dump())
        return dg.SkipReason(
            f"{len(queue) - len(undelivered)} alert(s) sent, {len(undelivered)} kept for retry, "
            f"{len(cursor.failing)} problem(s) open"
        )

    return health_alert_sensor
