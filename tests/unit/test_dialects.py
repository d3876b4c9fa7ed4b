"""The benchmark's server dialects say what their providers' docs say they say."""

from __future__ import annotations

import json

from resources.simulator.dialects import (
    DialectConfig,
    DialectSimulator,
    dialect_adapter,
    parse_policies,
)

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make(dialect: str, policies: str, **kwargs: object) -> tuple[DialectSimulator, Clock]:
    clock = Clock()
    config = DialectConfig(dialect, parse_policies(policies), clock=clock, **kwargs)  # type: ignore[arg-type]
    return DialectSimulator(config), clock


def get(sim: DialectSimulator) -> tuple[int, dict[str, str]]:
    answer = sim.answer("GET", "/v1/latest?symbol=AAPL")
    return answer.status, answer.headers


def test_binance_reports_used_weight_and_bans_a_client_that_does_not_back_off() -> None:
    sim, clock = make("binance", "weight=6/60", request_weight=2, ban_s=120)
    assert [get(sim)[1]["X-MBX-USED-WEIGHT-1M"] for _ in range(3)] == ["2", "4", "6"]
    status, headers = get(sim)
    assert status == 429 and headers == {"X-MBX-USED-WEIGHT-1M": "6", "Retry-After": "60"}
    clock.now += 1  # inside the Retry-After: banned
    status, headers = get(sim)
    assert status == 418 and headers["Retry-After"] == "120"
    clock.now += 120
    assert get(sim)[0] == 200  # the ban is over, and so is the minute


def test_ietf_states_every_policy_and_a_429_says_r0_with_no_retry_after() -> None:
    sim, clock = make("ietf", "burst=2/1,sustained=3/10")
    status, headers = get(sim)
    assert headers["RateLimit-Policy"] == '"burst";q=2;w=1, "sustained";q=3;w=10'
    assert headers["RateLimit"] == '"burst";r=1;t=1, "sustained";r=2;t=10'
    get(sim)
    clock.now += 1
    get(sim)
    status, headers = get(sim)
    assert status == 429 and "Retry-After" not in headers
    assert '"sustained";r=0;t=9' in headers["RateLimit"]
    body = json.loads(sim.answer("GET", "/v1/latest").body)
    assert body["violated-policies"] == ["sustained"]


def test_xratelimit_counts_requests_and_resets_at_an_epoch() -> None:
    sim, clock = make("xratelimit", "core=2/60")
    clock.now += 0.4
    _, headers = get(sim)
    assert headers["x-ratelimit-reset"] == str(int(T0) + 60)
    assert (headers["x-ratelimit-remaining"], headers["x-ratelimit-used"]) == ("1", "1")
    get(sim)
    status, headers = get(sim)
    assert status == 429 and headers["x-ratelimit-remaining"] == "0"
    assert "Retry-After" not in headers
    assert dialect_adapter("xratelimit").quota_unit == "requests"


def test_no_headers_but_retry_after_and_headerless_without_anything() -> None:
    sim, _ = make("none", "fixed=1/10")
    assert get(sim) == (200, {})
    assert get(sim) == (429, {"Retry-After": "10"})
    sim, _ = make("headerless", "calls=1/60")
    assert get(sim) == (200, {})
    assert get(sim) == (429, {})  # Polygon's free plan: no Retry-After, no rate-limit header
