"""``health_alert_sensor``: the part of alerting Dagster's open-source edition leaves out.

Every tick reads, after its cursor (an event-log storage id, kept by Dagster across ticks and
restarts), the freshness state changes the daemon recorded, asset check evaluations and failed
runs. It remembers what is failing, so each problem is reported once when it starts and once
when it recovers; alerts it could not deliver stay in the cursor and go out on the next tick.

A run whose worker (or a step process) was killed — SIGKILL, the kernel's OOM killer, run
monitoring's "worker died" — is a ``killed`` alert, not a failure: it names the run, its
partitions, the signal and, where readable, the memory limit and the cgroup's OOM kills
(``fin_assets/dagster_internals/runs.py`` reads them). Its recovery is sent once every partition
the run was
filling has landed (the automatic retry, or anyone's run). The cursor also counts what was
sent and what the webhook refused, for the metrics exporter (``fin_assets/tools/metrics/``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict

import dagster as dg

from fin_assets.dagster_internals.instance import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
    FreshnessState,
    latest_check_executions,
)
from fin_assets.dagster_internals.runs import (
    RunFailure,
    classify_failure,
    reap_dead_runs,
    run_partitions,
)
from fin_assets.lib.alert_cursor import SENSOR_NAME, AlertCursor
from fin_assets.lib.assets.common import partition_label
from fin_assets.lib.resources import AlertingResource
from resources.notify.alert import Alert

BATCH = 500
MAX_PENDING = 200
MAX_KILLED_OPEN = 100  # killed runs waiting for their partitions to land, at most


# Each source is read the way every event-log storage supports it (the embedded SQLite one is
# sharded per run, so a plain storage-id cursor only works for events kept in its index shard).
def _freshness_changes(instance: dg.DagsterInstance, after: int) -> list[dg.EventLogRecord]:
    return list(
        instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(
                event_type=dg.DagsterEventType.FRESHNESS_STATE_CHANGE, after_cursor=after
            ),
            limit=BATCH,
            ascending=True,
        )
    )


def _latest_freshness_id(instance: dg.DagsterInstance) -> int:
    records = instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.FRESHNESS_STATE_CHANGE),
        limit=1,
        ascending=False,
    )
    return max([0, *(r.storage_id for r in records)])


def freshness_alerts(records: Iterable[dg.EventLogRecord], cursor: AlertCursor) -> list[Alert]:
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


def killed_alert(
    run: dg.DagsterRun, failure: RunFailure, cursor: AlertCursor, when: float
) -> Alert:
    """One ``killed`` alert per run: run, partitions, signal, memory limit, OOM kills."""
    death = failure.death
    assert death is not None
    partitions = run_partitions(run)
    label = partition_label(partitions) if partitions else "no partition"
    cursor.killed_at[run.run_id] = when
    signal_text = death.signal or "signal unknown"
    facts = {
        "run_id": run.run_id,
        "job": run.job_name,
        "partitions": "...".join(partitions),
        "signal": death.signal or "",
    }
    if death.memory_max is not None:
        facts["memory_max_bytes"] = str(death.memory_max)
    if death.oom_kills is not None:
        facts["oom_kill"] = str(death.oom_kills)
        facts["oom_kill_at_start"] = str(death.oom_kills_at_start)
    return cursor.opened(
        f"killed:{run.run_id}",
        run.job_name,
        f"run {run.run_id[:8]} of {run.job_name} was killed: {signal_text}, {label}",
        f"Run {run.run_id} of {run.job_name} ({label}) was killed: {death.describe()}. "
        f"{death.evidence} A recovery follows once these partitions have landed.",
        when,
        kind="killed",
        facts=facts,
    )


def run_failure_alerts(instance: dg.DagsterInstance, cursor: AlertCursor) -> list[Alert]:
    result = instance.fetch_run_status_changes(
        dg.DagsterEventType.RUN_FAILURE, limit=BATCH, cursor=cursor.run_cursor, ascending=True
    )
    cursor.run_cursor = result.cursor
    alerts = []
    for record in result.records:
        entry = record.event_log_entry
        run = instance.get_run_by_id(entry.run_id)
        failure = classify_failure(instance, run) if run is not None else None
        if run is not None and failure is not None and failure.death is not None:
            if f"killed:{run.run_id}" not in cursor.failing:  # one alert per run
                alerts.append(killed_alert(run, failure, cursor, entry.timestamp))
            continue
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


def planned_partitions(instance: dg.DagsterInstance, run_id: str) -> dict[dg.AssetKey, set[str]]:
    """What the run was going to materialize: asset -> partitions (empty: unpartitioned)."""
    planned: dict[dg.AssetKey, set[str]] = defaultdict(set)
    for entry in instance.all_logs(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if data is None:
            continue
        keys = planned[data.asset_key]  # type: ignore[union-attr]
        if data.partition:  # type: ignore[union-attr]
            keys.add(data.partition)  # type: ignore[union-attr]
        elif data.partitions_subset is not None:  # type: ignore[union-attr]
            keys.update(data.partitions_subset.get_partition_keys())  # type: ignore[union-attr]
    return planned


def landed_since(
    instance: dg.DagsterInstance, planned: Mapping[dg.AssetKey, set[str]], after: float
) -> bool:
    """Whether every planned asset partition has materialized after ``after`` (a timestamp:
    storage ids of different shards do not compare)."""
    for key, partitions in planned.items():
        missing = set(partitions)
        records_filter = dg.AssetRecordsFilter(
            asset_key=key, asset_partitions=sorted(partitions) or None, after_timestamp=after
        )
        cursor = None
        while True:
            result = instance.fetch_materializations(
                records_filter,
                limit=BATCH,
                cursor=cursor,
            )
            if not partitions:
                if not result.records:
                    return False
                break
            missing -= {r.partition_key for r in result.records}
            if not missing:
                break
            if not result.has_more:
                return False
            cursor = result.cursor
    return bool(planned)


def killed_recoveries(instance: dg.DagsterInstance, cursor: AlertCursor) -> list[Alert]:
    """A recovery for each killed run whose partitions have all landed since it was killed."""
    alerts = []
    for run_id, killed_at in sorted(cursor.killed_at.items(), key=lambda kv: kv[1]):
        key = f"killed:{run_id}"
        if key not in cursor.failing:
            del cursor.killed_at[run_id]
            continue
        planned = planned_partitions(instance, run_id)
        if not landed_since(instance, planned, killed_at):
            continue
        run = instance.get_run_by_id(run_id)
        partitions = run_partitions(run) if run else ()
        label = partition_label(partitions) if partitions else "its assets"
        del cursor.killed_at[run_id]
        alerts.append(
            cursor.recovered(
                key,
                run.job_name if run else "run",
                f"{label} of killed run {run_id[:8]} landed",
                f"Everything run {run_id} was materializing when it was killed ({label}: "
                f"{', '.join(sorted(k.to_user_string() for k in planned))}) has landed since.",
                time.time(),
            )
        )
    # A flood of killed runs that never land: keep following the newest ones only.
    for run_id, _ in sorted(cursor.killed_at.items(), key=lambda kv: kv[1])[:-MAX_KILLED_OPEN]:
        del cursor.killed_at[run_id]
        cursor.failing.pop(f"killed:{run_id}", None)
    return alerts


def build_health_alert_sensor(*, minimum_interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
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
                latest_check_executions(instance, check_keys),
                cursor,
            ),
            *run_failure_alerts(instance, cursor),
            *killed_recoveries(instance, cursor),
        ]
        queue = [Alert(**a) for a in cursor.pending] + new  # type: ignore[arg-type]
        notifier = alerting.notifier()
        undelivered = []
        try:
            for alert in queue:
                if notifier.send(alert):
                    cursor.sent[alert.kind] = cursor.sent.get(alert.kind, 0) + 1
                else:
                    undelivered.append(alert)
                    cursor.delivery_failures += 1
        finally:
            notifier.close()
        cursor.pending = [asdict(a) for a in undelivered][-MAX_PENDING:]
        context.update_cursor(cursor.dump())
        return dg.SkipReason(
            f"{len(queue) - len(undelivered)} alert(s) sent, {len(undelivered)} kept for retry, "
            f"{len(cursor.failing)} problem(s) open"
        )

    return health_alert_sensor
