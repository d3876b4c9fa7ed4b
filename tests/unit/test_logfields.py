"""Wait, retry and throttle lines end with key=value fields a log query can filter on."""

from __future__ import annotations

import logging
import shlex
from datetime import UTC, datetime

import httpx
import pytest

from resources.http.client import MarketApiClient
from resources.logfields import log_context, log_fields, with_log_context
from resources.notify.alert import Alert
from resources.notify.webhook import WebhookNotifier
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import MemoryQuotaStore
from resources.simulator.adapter import SimulatorAdapter

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
END = datetime(2026, 1, 5, 0, 2, tzinfo=UTC)
PAGE = {
    "symbol": "AAPL",
    "interval": "1m",
    "window": {"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T00:02:00Z"},
    "bars": [{"t": "2026-01-05T00:00:00Z", "o": 1, "h": 2, "l": 1, "c": 2, "v": 1, "n": 1}],
    "next_cursor": None,
}


def fields_of(line: str) -> dict[str, str]:
    """What a logfmt parser (Loki's ``| logfmt``) reads from a line: every key=value token."""
    return dict(token.split("=", 1) for token in shlex.split(line) if "=" in token)


def client(
    *responses: httpx.Response, pacer: SharedPacer | None = None, clock: list[float] | None = None
) -> MarketApiClient:
    answers = iter(responses)
    clock = clock if clock is not None else [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    return MarketApiClient(
        SimulatorAdapter(),
        base_url="http://sim.test",
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=sleep,
        pacer=pacer,
    )


def wait_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [
        fields_of(r.getMessage()) for r in caplog.records if r.getMessage().startswith("waiting")
    ]


def test_a_throttle_wait_names_provider_source_symbol_reason_and_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fin_assets.client")
    api = client(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow down"}),
        httpx.Response(503, json={"error": "down"}),
        httpx.Response(200, json=PAGE),
    )
    with api, log_context(source="crypto"):
        pages = list(with_log_context(api.iter_pages("AAPL", start=START, end=END), symbol="AAPL"))
    assert len(pages) == 1
    throttled, retried = wait_lines(caplog)
    assert throttled == {
        "source": "crypto",
        "symbol": "AAPL",
        "provider": "simulator",
        "reason": "throttled",
        "wait_s": "2.000",
    }
    assert retried["reason"] == "retry" and retried["symbol"] == "AAPL"
    assert float(retried["wait_s"]) >= 0


def test_pacing_and_shared_pause_waits_say_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fin_assets.client")
    clock = [1000.0]
    store = MemoryQuotaStore()
    pacer = SharedPacer(
        store, "k", policy=QuotaPolicy(1, 1.0), clock=lambda: clock[0], adaptive=False
    )
    api = client(*[httpx.Response(200, json=PAGE)] * 3, pacer=pacer, clock=clock)
    with api:
        list(api.iter_pages("AAPL", start=START, end=END))
        list(api.iter_pages("AAPL", start=START, end=END))  # paced: 1 request a second
        pacer.pause_for(30, reason="a ban")
        list(api.iter_pages("AAPL", start=START, end=END))
    reasons = [line["reason"] for line in wait_lines(caplog)]
    assert reasons[0] == "pacing"
    assert "shared_pause" in reasons[1:]


def test_context_is_scoped_and_values_are_quoted() -> None:
    assert log_fields(wait_s=1.5) == " wait_s=1.500"
    with log_context(source="us_equities"):
        with log_context(symbol="BRK.B"):
            assert log_fields() == " source=us_equities symbol=BRK.B"
        assert log_fields(problem="HTTP 503") == ' source=us_equities problem="HTTP 503"'
    assert log_fields() == ""
    produced = with_log_context(iter([1, 2]), symbol="AAPL")
    next(produced)
    assert log_fields() == ""  # the generator's context does not leak into its consumer


def test_webhook_retry_lines_carry_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fin_assets.lib.alerts")
    notifier = WebhookNotifier(
        "http://hook.test/x",
        transport=httpx.MockTransport(lambda request: httpx.Response(500)),
        sleep=lambda s: None,
        attempts=2,
    )
    alert = Alert("freshness:raw/bars", "failure", "raw/bars", "stale", "detail", 0.0)
    assert notifier.send(alert) is False
    retry = next(r.getMessage() for r in caplog.records if "retrying in" in r.getMessage())
    assert fields_of(retry)["reason"] == "webhook"
    assert fields_of(retry)["problem"] == "HTTP 500"
