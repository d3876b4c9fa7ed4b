"""Alert payloads, webhook delivery with retries, dedup across ticks, and the new-data window."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from fin_assets.lib.alerts import AlertCursor, freshness_alerts
from fin_assets.lib.sensors import closed_hours
from resources.notify.alert import Alert
from resources.notify.webhook import WebhookNotifier

ALERT = Alert("freshness:core/bars", "failure", "core/bars", "core/bars is stale", "late", 1.0)


def test_slack_and_plain_payloads() -> None:
    assert ALERT.payload("slack") == {
        "text": ":red_circle: fin-assets failure: core/bars is stale\nlate"
    }
    plain = ALERT.payload("plain")
    assert plain["key"] == "freshness:core/bars" and plain["kind"] == "failure"


def test_webhook_retries_with_backoff_then_delivers() -> None:
    calls: list[dict[str, object]] = []
    replies = iter([httpx.Response(500), httpx.ConnectError("down"), httpx.Response(200)])

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    slept: list[float] = []
    notifier = WebhookNotifier(
        "http://hook.test/x",
        transport=httpx.MockTransport(handler),
        attempts=3,
        backoff_s=0.5,
        sleep=slept.append,
    )
    assert notifier.send(ALERT) is True
    assert len(calls) == 3 and calls[0] == ALERT.payload("slack")
    assert len(slept) == 2 and 0 <= slept[0] <= 0.5 and 0 <= slept[1] <= 1.0


def test_webhook_that_stays_down_does_not_raise_and_reports_undelivered(caplog) -> None:
    notifier = WebhookNotifier(
        "http://hook.test/x",
        transport=httpx.MockTransport(lambda r: httpx.Response(503)),
        attempts=2,
        sleep=lambda s: None,
    )
    assert notifier.send(ALERT) is False
    assert any("kept for the next tick" in r.getMessage() for r in caplog.records)


def test_without_a_webhook_every_alert_is_logged(caplog) -> None:
    caplog.set_level("WARNING", logger="fin_assets.lib.alerts")
    assert WebhookNotifier(None).send(ALERT) is True
    assert any(
        "ALERT failure" in r.getMessage() and "core/bars is stale" in r.getMessage()
        for r in caplog.records
    )


def test_cursor_round_trip_keeps_open_problems_and_pending_alerts() -> None:
    cursor = AlertCursor(
        event_id=42, failing={"freshness:core/bars": "core/bars is stale"}, pending=[ALERT.__dict__]
    )
    again = AlertCursor.load(cursor.dump())
    assert again == cursor
    assert freshness_alerts([], again) == [] and again.event_id == 42


@pytest.mark.parametrize(
    ("latest", "cursor", "now", "expected"),
    [
        # 10:59 available: hours up to 11:00 are complete (but not past our own clock).
        (
            "2026-11-26T10:59",
            "2026-11-26T08:00",
            "2026-11-26T12:30",
            ("2026-11-26T08:00", "2026-11-26T11:00"),
        ),
        ("2026-11-26T10:58", "2026-11-26T10:00", "2026-11-26T12:30", None),
        ("2026-11-26T12:59", None, "2026-11-26T12:30", ("2026-11-24T12:00", "2026-11-26T12:00")),
    ],
)
def test_closed_hours_since_the_cursor(latest, cursor, now, expected) -> None:
    def ts(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    window = closed_hours(
        latest_bar=ts(latest), cursor=ts(cursor) if cursor else None, now=ts(now), lookback_hours=48
    )
    assert window == (tuple(ts(t) for t in expected) if expected else None)
