"""The rate-limit engine: header forms, learning, shared pauses and shared state, exact waits."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from resources.http.client import MarketApiClient
from resources.http.retry import parse_retry_after
from resources.ratelimit.headers import RateLimitSignal, parse_rate_limit_headers, reset_to_seconds
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import ARRIVAL_JITTER_S, SAFETY_RATE, QuotaPolicy
from resources.ratelimit.stores import MemoryQuotaStore, SQLiteQuotaStore, quota_key
from resources.simulator.adapter import SimulatorAdapter

NOW = 1_800_000_000.0  # a fixed epoch for header parsing
J = ARRIVAL_JITTER_S  # the pacer's burst is this much shorter: every slot comes J later
BASE_URL = "http://provider.test"


def window_interval(limit: int, window_s: float = 1.0) -> float:
    """The pace of a window (a burst-1 policy): 99.8 % of its rate, and ``limit`` units more
    than ``window_s`` + J apart, so one unit arriving J late still leaves the window whole."""
    return max(window_s / (limit * SAFETY_RATE), (window_s + J) / limit)


class Clock:
    def __init__(self, start: float = NOW) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


# -- header forms ------------------------------------------------------------------------
def test_retry_after_delta_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    later = email.utils.format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(later, now=now) == 42.0
    assert parse_retry_after("soon") is None


def test_ietf_ratelimit_policy_draft_08_structured_form() -> None:
    signal = parse_rate_limit_headers(
        {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=50;t=30'},
        now_epoch=NOW,
    )
    assert signal is not None
    assert signal.policy == QuotaPolicy(100, 60, 1, "RateLimit-Policy")
    assert (signal.limit, signal.remaining, signal.reset_s) == (100, 50, 30)


def test_ietf_ratelimit_draft_07_forms() -> None:
    signal = parse_rate_limit_headers(
        {"ratelimit-policy": "10;w=1, 1000;w=3600", "ratelimit": "limit=10, remaining=4, reset=1"},
        now_epoch=NOW,
    )
    assert signal is not None
    # Every policy is kept; the one that allows the lowest rate is the one to pace by.
    assert [(p.quota, p.window_s) for p in signal.policies] == [(10, 1), (1000, 3600)]
    assert signal.policy == QuotaPolicy(1000, 3600, 1, "RateLimit-Policy")
    # limit=10 is the 10/s policy's expiring limit: limit, remaining and reset are all that
    # policy's (D07 section 3.1), never the hourly's limit beside the 1-second remaining.
    assert (signal.limit, signal.remaining, signal.reset_s) == (10, 4, 1)


@pytest.mark.parametrize(
    ("reset", "seconds"),
    [("12", 12.0), (str(int(NOW) + 45), 45.0), (str(int(NOW * 1000) + 2500), 2.5), ("0", 0.0)],
    ids=["delta-seconds", "epoch-seconds", "epoch-ms", "zero"],
)
def test_x_ratelimit_reset_as_delta_or_epoch(reset: str, seconds: float) -> None:
    signal = parse_rate_limit_headers(
        {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
        now_epoch=NOW,
    )
    assert signal is not None
    assert signal.limit == 60 and signal.remaining == 0
    assert signal.reset_s == pytest.approx(seconds)


def test_reset_in_the_past_is_zero_and_garbage_is_ignored() -> None:
    assert reset_to_seconds(NOW - 10, now_epoch=NOW) == 0.0
    assert parse_rate_limit_headers({"X-RateLimit-Remaining": "lots"}, now_epoch=NOW) is None
    assert parse_rate_limit_headers({"Content-Type": "application/json"}) is None


# -- pacing and learning -----------------------------------------------------------------
def test_configured_quota_paces_at_the_safety_rate_after_its_burst() -> None:
    clock = Clock()
    pacer = SharedPacer(MemoryQuotaStore(), "k", policy=QuotaPolicy(20, 1, 5), clock=clock)
    waits = [pacer.reserve() for _ in range(7)]
    interval = 1 / (20 * SAFETY_RATE)
    # burst 5 -> 4 back to back and the 5th J later, then one every interval (99.8 % of the
    # rate): requests bunched up on the way by up to J still fit the server's burst.
    assert waits == pytest.approx([0, 0, 0, 0, J, interval + J, 2 * interval + J], abs=1e-6)


@pytest.mark.parametrize("late", [J / 2, 0.08], ids=["within the allowance", "80 ms late"])
def test_a_slot_sent_late_moves_every_later_slot_on_by_as_much(late: float) -> None:
    """Two processes book the burst of an idle quota; the first one's request leaves ``late``
    after its slot (its process was off the CPU). The server starts counting at that arrival,
    so the slots after the burst move on by the lateness past the allowance J, not before."""
    clock = Clock()
    store = MemoryQuotaStore()
    policy = QuotaPolicy(20, 1, 5)
    # Plain GCRA (no slow start): a quota known to be right.
    first, other = (
        SharedPacer(store, "k", policy=policy, clock=clock, adaptive=False) for _ in range(2)
    )
    assert first.reserve() == 0
    waits = [other.reserve() for _ in range(4)]
    clock.now += late
    first.sending()
    after_burst = other.reserve()
    interval = 1 / (20 * SAFETY_RATE)
    assert waits == pytest.approx([0, 0, 0, J], abs=1e-6)
    moved = late if late > J else 0.0
    assert after_burst == pytest.approx(interval + J + moved - late, abs=1e-6)


def test_a_late_slot_in_a_saturated_schedule_moves_nothing() -> None:
    """Eight processes keep the bucket busy: every unit is booked behind others, so the
    server's TAT is ahead of any arrival up to ``burst - 1`` intervals late. A request 80 ms
    late (the CPU hogs of ``make bench-rate-limit HOGS=2``) then costs the server nothing,
    and moving the shared schedule on by it would throw 80 ms of quota away each time."""
    clock = Clock()
    store = MemoryQuotaStore()
    policy = QuotaPolicy(20, 1, 5)
    pacers = [SharedPacer(store, "k", policy=policy, clock=clock, adaptive=False) for _ in range(8)]
    waits = [pacer.reserve() for pacer in pacers]  # the burst, then three queued
    late = pacers[5]
    clock.now += waits[5] + 0.080
    late.sending()
    after = pacers[0].reserve()
    interval = 1 / (20 * SAFETY_RATE)
    # The 9th unit: four intervals after the burst, as if the 6th had left on time.
    assert after + 0.080 + waits[5] == pytest.approx(4 * interval + J, abs=1e-6)


@pytest.mark.parametrize("rtt", [0.002, 0.035], ids=["quiet: answered in 2 ms", "busy: 35 ms"])
def test_a_slow_answer_on_an_idle_schedule_moves_the_burst_after_it_on(rtt: float) -> None:
    """The first request of an idle quota is answered ``rtt`` later: the server may have
    counted it that late (35 ms was measured on a loaded machine) and starts its bucket
    there. The burst booked after the answer fits the server's bucket from that moment on:
    its slots move on by the part of the round trip past the allowance J, and not at all on a
    quiet machine."""
    clock = Clock()
    store = MemoryQuotaStore()
    policy = QuotaPolicy(20, 1, 5)
    first, other = (SharedPacer(store, "k", policy=policy, clock=clock) for _ in range(2))
    assert first.reserve() == 0
    clock.now += rtt
    first.observe(None, rtt_s=rtt)
    slots = [clock.now + other.reserve() - NOW for _ in range(5)]
    interval = 1 / (20 * SAFETY_RATE)
    moved = max(0.0, rtt - J)
    # Four more fill the server's burst of five, the next comes one interval after the first.
    assert slots[:4] == pytest.approx([rtt, rtt, rtt, max(rtt, J + moved)], abs=1e-6)
    assert slots[4] == pytest.approx(moved + interval + J, abs=1e-6)


def test_weights_cost_several_units() -> None:
    clock = Clock()
    pacer = SharedPacer(MemoryQuotaStore(), "k", policy=QuotaPolicy(10, 1, 1), clock=clock)
    interval = window_interval(10)
    assert pacer.reserve(weight=5) == pytest.approx(4 * interval + J)
    assert pacer.reserve(weight=1) == pytest.approx(5 * interval + J)


def test_learns_the_quota_from_ratelimit_policy_then_paces() -> None:
    clock = Clock()
    store = MemoryQuotaStore()
    pacer = SharedPacer(store, "k", clock=clock)
    assert [pacer.reserve() for _ in range(3)] == [0, 0, 0]  # nothing known: no pacing
    pacer.observe(parse_rate_limit_headers({"RateLimit-Policy": "20;w=1"}, now_epoch=NOW))
    assert store.learned("k") == QuotaPolicy(20, 1, 1, "RateLimit-Policy")
    interval = window_interval(20)
    # The three units sent before the quota was known are booked under it first: a fixed
    # window must not see them plus a full window.
    assert [pacer.reserve() for _ in range(3)] == pytest.approx(
        [3 * interval + J, 4 * interval + J, 5 * interval + J], abs=1e-6
    )
    # A second process (another pacer on the same store) uses what the first one learned:
    # a stated quota is confirmed, so no slow start holds it back.
    other = SharedPacer(store, "k", clock=clock)
    assert other.reserve() == pytest.approx(6 * interval + J, abs=1e-6)


def test_counters_only_quota_spent_waits_for_the_reset() -> None:
    clock = Clock()
    pacer = SharedPacer(MemoryQuotaStore(), "k", clock=clock)
    pacer.observe(
        parse_rate_limit_headers(
            {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3"},
            now_epoch=NOW,
        )
    )
    assert pacer.reserve() == pytest.approx(3.0)
    assert "quota spent" in pacer.describe_last_wait()


def test_counters_only_learn_the_window_from_the_longest_reset_once_it_moved() -> None:
    clock = Clock()
    store = MemoryQuotaStore()
    pacer = SharedPacer(store, "k", clock=clock)
    # The first answer comes mid-window: 40 s to the reset is no window length yet.
    pacer.observe(RateLimitSignal(limit=60, remaining=59, reset_s=40, source="x-ratelimit"))
    assert store.learned("k") is None
    clock.now += 45  # the reset passed: the first answer of the next window sees all of it
    pacer.observe(RateLimitSignal(limit=60, remaining=59, reset_s=60, source="x-ratelimit"))
    learned = store.learned("k")
    assert learned is not None and learned.rate == 1.0 and learned.burst == 1


def test_a_pause_holds_everyone_then_resumes_at_the_paced_rate() -> None:
    clock = Clock()
    store = MemoryQuotaStore()
    policy = QuotaPolicy(10, 1, 3)
    # Plain GCRA (no slow start): two processes whose quota is known to be right.
    a = SharedPacer(store, "k", policy=policy, clock=clock, adaptive=False)
    b = SharedPacer(store, "k", policy=policy, clock=clock, adaptive=False)
    a.pause_for(2.5, reason="Retry-After from simulator")
    assert b.reserve() == pytest.approx(2.5)
    assert "shared pause: Retry-After from simulator" in b.describe_last_wait()
    interval = 1 / (10 * SAFETY_RATE)
    assert a.reserve() == pytest.approx(2.5 + interval)


def test_provider_hook_reads_a_custom_used_weight_header() -> None:
    class UsedWeightAdapter(SimulatorAdapter):
        def rate_limit_signal(
            self, headers: Mapping[str, str], *, now: datetime | None = None
        ) -> RateLimitSignal | None:
            used = headers.get("x-used-weight-1m")
            if used is None:
                return None
            return RateLimitSignal(
                limit=1200,
                remaining=1200 - float(used),
                reset_s=60,
                policy=QuotaPolicy(1200, 60, 1, "x-used-weight"),
                source="x-used-weight",
            )

    signal = UsedWeightAdapter().rate_limit_signal({"x-used-weight-1m": "1150"})
    assert signal is not None and signal.remaining == 50 and signal.policy.rate == 20


# -- the client with the engine ----------------------------------------------------------
def page() -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "window": {"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T00:01:00Z"},
            "bars": [],
            "next_cursor": None,
        },
    )


def test_a_429_in_one_client_pauses_another_sharing_the_store() -> None:
    clock = Clock()
    store = MemoryQuotaStore()
    sleeps: list[float] = []
    responses = iter([httpx.Response(429, headers={"Retry-After": "4"}), page()])

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    key = quota_key("simulator", BASE_URL, None)
    first = MarketApiClient(
        SimulatorAdapter(),
        base_url=BASE_URL,
        sleep=sleep,
        rng=random.Random(0),
        pacer=SharedPacer(store, key, clock=clock),
        transport=httpx.MockTransport(lambda request: next(responses)),
    )
    second_pacer = SharedPacer(store, key, clock=lambda: NOW)
    first.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    assert sleeps == [4.0]
    # The other process asks at the moment of the 429: it must hold for the whole Retry-After.
    assert second_pacer.reserve() == pytest.approx(4.0)
    first.close()


def test_learning_client_paces_after_the_first_response(caplog) -> None:
    clock = Clock()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        response = page()
        response.headers["RateLimit-Policy"] = '"default";q=5;w=1'
        return response

    client = MarketApiClient(
        SimulatorAdapter(),
        base_url=BASE_URL,
        sleep=sleep,
        pacer=SharedPacer(MemoryQuotaStore(), "k", clock=clock),
        transport=httpx.MockTransport(handler),
    )
    caplog.set_level("INFO", logger="fin_assets.client")
    for _ in range(3):
        client.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    interval = window_interval(5)
    # 1st: nothing known, sent at once; the policy learned from its answer books it, so the
    # 2nd waits one interval (plus J), the 3rd one more.
    assert sleeps == pytest.approx([interval + J, interval], abs=1e-6)
    assert any(
        "pacing to quota 5/1s burst 1 (RateLimit-Policy) for simulator" in r.getMessage()
        for r in caplog.records
    )
    client.close()


# -- SQLite shared state -----------------------------------------------------------------
def test_sqlite_store_shares_bookings_pauses_and_learned_quotas(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite"
    one, two = SQLiteQuotaStore(path), SQLiteQuotaStore(path)  # two "processes"
    policy = QuotaPolicy(10, 1, 1)
    interval = window_interval(10)
    waits = [
        store.reserve("k", weight=1, now=NOW, policy=policy).wait_s
        for store in (one, two, one, two)
    ]
    assert waits == pytest.approx([J, interval + J, 2 * interval + J, 3 * interval + J])
    one.pause("k", until=NOW + 30, reason="HTTP 418 ban", policy=policy)
    booking = two.reserve("k", weight=1, now=NOW + 1, policy=policy)
    assert booking.wait_s == pytest.approx(29.0)
    assert "HTTP 418 ban" in booking.reason
    one.learn("other", QuotaPolicy(5, 1, 2, "RateLimit-Policy"))
    assert two.learned("other") == QuotaPolicy(5, 1, 2, "RateLimit-Policy")
    one.close()
    two.close()


def test_quota_key_never_contains_the_api_key() -> None:
    key = quota_key("simulator", "http://x:1/", "sk-secret-value")
    assert "sk-secret-value" not in key
    assert key.startswith("simulator|http://x:1|")
    assert quota_key("simulator", "http://x:1", None).endswith("|anonymous")


def _client_with(responses: list[httpx.Response], clock: Clock, sleeps: list[float]):
    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    replies = iter(responses)
    return MarketApiClient(
        SimulatorAdapter(),
        base_url=BASE_URL,
        sleep=sleep,
        rng=random.Random(0),
        now=lambda: datetime.fromtimestamp(clock.now, UTC),
        pacer=SharedPacer(MemoryQuotaStore(), "k", clock=clock),
        transport=httpx.MockTransport(lambda request: next(replies)),
    )


def test_client_waits_exactly_until_an_http_date_retry_after() -> None:
    clock, sleeps = Clock(), []
    when = email.utils.formatdate(NOW + 17, usegmt=True)
    client = _client_with(
        [httpx.Response(429, headers={"Retry-After": when}), page()], clock, sleeps
    )
    client.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    assert sleeps == [17.0]
    client.close()


def test_client_waits_until_an_epoch_reset_when_the_quota_is_spent() -> None:
    clock, sleeps = Clock(), []
    spent = page()
    spent.headers.update(
        {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(NOW) + 9),
        }
    )
    client = _client_with([spent, page()], clock, sleeps)
    client.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    client.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    assert sleeps == [pytest.approx(9.0)]
    client.close()


def test_client_obeys_a_throttle_message_in_a_200_body_exactly() -> None:
    clock, sleeps = Clock(), []
    throttled = httpx.Response(
        200, json={"status": "error", "code": "THROTTLED", "message": "slow down", "retry_after": 3}
    )
    client = _client_with([throttled, page()], clock, sleeps)
    client.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    assert sleeps == [3.0]
    assert client.stats.throttled == 1
    client.close()


def test_slots_booked_before_a_pause_are_booked_again_after_it_not_fired_together() -> None:
    """Processes sleeping for their slots when another one gets a 429 must not all send the
    instant the pause ends (that herd draws the next 429)."""
    clock, store = Clock(start=0.0), MemoryQuotaStore()
    policy = QuotaPolicy(10, 1, 1)
    interval = window_interval(10)
    others = [SharedPacer(store, "k", policy=policy, clock=clock) for _ in range(3)]
    for other in others:
        other.reserve()  # three slots booked ahead of us: 0, 1 and 2 intervals
    sent_at: list[float] = []
    paused = []

    def sleep(seconds: float) -> None:
        if not paused:  # while we sleep for our slot, another process is told Retry-After: 2
            others[0].pause_for(2.0, reason="Retry-After from simulator")
            paused.append(True)
        clock.now += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(clock.now)
        return page()

    client = MarketApiClient(
        SimulatorAdapter(),
        base_url=BASE_URL,
        sleep=sleep,
        pacer=SharedPacer(store, "k", policy=policy, clock=clock),
        transport=httpx.MockTransport(handler),
    )
    client.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    assert sent_at == [pytest.approx(2.0 + J)]
    # A second process that had booked before the pause gets the next slot, not the same one.
    assert others[1].reserve() == pytest.approx(interval)
    client.close()


# -- the IETF draft in full (drafts 07 to 10) ------------------------------------------------------
def test_every_policy_is_kept_and_the_lowest_rate_binds() -> None:
    signal = parse_rate_limit_headers(
        {
            "RateLimit-Policy": '"burst";q=100;w=60, "sustained";q=600;w=600',
            "RateLimit": '"burst";r=99;t=59, "sustained";r=10;t=300',
        },
        now_epoch=NOW,
    )
    assert signal is not None
    assert [(p.name, p.quota, p.window_s) for p in signal.policies] == [
        ("burst", 100, 60),
        ("sustained", 600, 600),
    ]
    assert signal.policy == QuotaPolicy(600, 600, 1, "RateLimit-Policy")
    assert signal.binding == "sustained"
    # limit/remaining/reset are the binding policy's, from the item that names it.
    assert (signal.limit, signal.remaining, signal.reset_s) == (600, 10, 300)


def test_a_daily_quota_is_spent_as_needed_not_spread_over_the_day() -> None:
    # Draft 10's own example: a per-minute and a daily policy. Pacing at 1000 a day would
    # make an hour's backfill last a day: the minute one sets the pace, the daily one stops
    # everybody once it is spent (see the next tests).
    signal = parse_rate_limit_headers(
        {"RateLimit-Policy": '"burst";q=100;w=60,"daily";q=1000;w=86400'}, now_epoch=NOW
    )
    assert signal is not None and signal.binding == "burst"
    assert signal.policy == QuotaPolicy(100, 60, 1, "RateLimit-Policy")
    assert len(signal.policies) == 2


def test_draft_09_tokens_and_policies_split_over_field_lines() -> None:
    # Draft 09 allowed a Token as the policy name; a List may span several field lines,
    # which an HTTP library joins with ", ".
    signal = parse_rate_limit_headers(
        {"RateLimit-Policy": "permin;q=50;w=60, perhr;q=1000;w=3600"}, now_epoch=NOW
    )
    assert signal is not None and signal.policy == QuotaPolicy(1000, 3600, 1, "RateLimit-Policy")


def test_unknown_parameters_are_comments_not_promises() -> None:
    signal = parse_rate_limit_headers(
        {"RateLimit-Policy": '"default";q=10;w=1;burst=1000;acme-burst=50;comment="leaky"'},
        now_epoch=NOW,
    )
    assert signal is not None
    assert signal.policy == QuotaPolicy(10, 1, 1, "RateLimit-Policy")  # burst 1, not 1000


def test_a_quota_counted_in_bytes_is_not_a_request_quota() -> None:
    bytes_only = parse_rate_limit_headers(
        {"RateLimit-Policy": '"peruser";q=65535;qu="content-bytes";w=10;pk=:c2RmakxKVU9VSA==:'},
        now_epoch=NOW,
    )
    assert bytes_only is not None and bytes_only.policy is None
    assert bytes_only.policies[0].unit == "content-bytes"
    both = parse_rate_limit_headers(
        {
            "RateLimit-Policy": '"bytes";q=1000;qu="content-bytes";w=1, '
            '"calls";q=20;w=1, "conc";q=2;qu="concurrent-requests"'
        },
        now_epoch=NOW,
    )
    assert both is not None and both.policy == QuotaPolicy(20, 1, 1, "RateLimit-Policy")


def test_a_policy_without_w_has_no_window_and_is_kept_not_dropped() -> None:
    # Drafts 08-10: w is OPTIONAL and has no default: a quota with no time window.
    signal = parse_rate_limit_headers(
        {"RateLimit-Policy": '"trial";q=10', "RateLimit": '"trial";r=0;t=40'}, now_epoch=NOW
    )
    assert signal is not None
    assert [(p.name, p.quota, p.window_s) for p in signal.policies] == [("trial", 10, None)]
    assert signal.policy is None  # nothing to pace by ...
    assert signal.spent_waits(include_binding=False) == [('"trial"', 40)]  # ... but spent


@pytest.mark.parametrize(
    "value",
    [
        '"a";q=10;w=',  # a parameter without a value
        '"a;q=10;w=1',  # an unterminated string
        '"a";q=10;w=1,',  # a trailing comma
        '"a";q=10;w=1 "b";q=5;w=1',  # no comma between members
        "\u00e4;q=1;w=1",  # not ASCII
    ],
)
def test_a_malformed_policy_field_is_ignored_as_a_whole(value: str) -> None:
    assert parse_rate_limit_headers({"RateLimit-Policy": value}, now_epoch=NOW) is None


def test_a_spent_policy_that_does_not_bind_stops_every_process_until_its_reset() -> None:
    clock, store = Clock(), MemoryQuotaStore()
    a = SharedPacer(store, "k", clock=clock)
    b = SharedPacer(store, "k", clock=clock)
    a.reserve()
    a.observe(
        parse_rate_limit_headers(
            {
                "RateLimit-Policy": '"hourly";q=100;w=3600, "daily";q=1000;w=86400',
                # The hourly quota sets the pace and has room; the daily one is spent (say by
                # another client of the same key): the draft's r=0 on the *other* item.
                "RateLimit": '"hourly";r=50;t=1800, "daily";r=0;t=3000',
            },
            now_epoch=NOW,
        )
    )
    assert b.reserve() == pytest.approx(3000.0, abs=1e-3)
    assert 'quota spent ("daily")' in b.describe_last_wait()


def test_a_429_with_r0_and_no_retry_after_waits_until_t() -> None:
    clock, sleeps = Clock(), []
    throttled = httpx.Response(
        429,
        headers={"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=0;t=20'},
    )
    client = _client_with([throttled, page()], clock, sleeps)
    client.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    assert [s for s in sleeps if s >= 1] == [20.0]  # not a sub-second backoff
    client.close()


def test_retry_after_takes_precedence_over_the_reset_parameter() -> None:
    clock, sleeps = Clock(), []
    throttled = httpx.Response(
        429,
        headers={"Retry-After": "30", "RateLimit": '"default";r=0;t=20'},
    )
    client = _client_with([throttled, page()], clock, sleeps)
    client.get(SimulatorAdapter().latest_request("AAPL"), what="t")
    assert [s for s in sleeps if s >= 1] == [30.0]
    client.close()
