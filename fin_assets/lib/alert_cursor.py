"""The alert sensor's cursor: what it has read, what it said is failing, what it could not
deliver yet, and what it has delivered. Kept apart from ``fin_assets/lib/alerts.py`` (which binds
Dagster resources, and with them the API client) so the metrics exporter can read the counters
without loading the code location."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from resources.notify.alert import Alert, AlertKind

SENSOR_NAME = "health_alert_sensor"


@dataclass
class AlertCursor:
    event_id: int = 0  # last FRESHNESS_STATE_CHANGE storage id seen
    run_cursor: str | None = None  # fetch_run_status_changes cursor for RUN_FAILURE
    failing: dict[str, str] = field(default_factory=dict)  # alert key -> title
    pending: list[dict[str, object]] = field(default_factory=list)
    killed_at: dict[str, float] = field(default_factory=dict)  # killed run id -> when it failed
    # What was delivered, by alert kind, and deliveries the webhook refused (the exporter's
    # counters: they only grow, and a cursor started over starts them over).
    sent: dict[str, int] = field(default_factory=dict)
    delivery_failures: int = 0

    @classmethod
    def load(cls, raw: str | None) -> AlertCursor | None:
        return cls(**json.loads(raw)) if raw else None

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    # A problem is said once when it starts and once when it ends: ``failing`` is what was said.
    def opened(
        self,
        key: str,
        subject: str,
        title: str,
        detail: str,
        when: float,
        *,
        kind: AlertKind = "failure",
        facts: Mapping[str, str] | None = None,
    ) -> Alert:
        self.failing[key] = title
        return Alert(key, kind, subject, title, detail, when, dict(facts or {}))

    def recovered(self, key: str, subject: str, title: str, detail: str, when: float) -> Alert:
        del self.failing[key]
        return Alert(key, "recovery", subject, title, detail, when)
