"""The IETF rate-limit drafts' own example headers, read as the draft text says.

Each case quotes its draft, section and URL; the expected values are what the draft says the
example means, not what our parser happened to return. Sources:

- D03: https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-03
- D07: https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-07
- D08: https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-08
- D10: https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-10
"""

from __future__ import annotations

import pytest

from resources.ratelimit.headers import (
    PolicyItem,
    RateLimitSignal,
    ServiceLimit,
    parse_rate_limit_headers,
)
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import MemoryQuotaStore

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, start: float = NOW) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def parse(headers: dict[str, str]) -> RateLimitSignal:
    signal = parse_rate_limit_headers(headers, now_epoch=NOW)
    assert signal is not None
    return signal


def windows(signal: RateLimitSignal) -> list[tuple[str | None, float, float | None]]:
    return [(p.name, p.quota, p.window_s) for p in signal.policies]


# -- 1. Draft 03: quota policies after the expiring limit in RateLimit-Limit ---------------------
# D03 section 5.1 "RateLimit-Limit": "The first member is named `expiring-limit` and its syntax
# is `service-limit`, while the syntax of the other optional members is `quota-policy`"; "The
# `expiring-limit` value MUST be set to the `service-limit` that is closer to reach its limit."
def test_d03_a_time_window_associated_to_the_expiring_limit() -> None:
    # D03 section 5.1: "A `time-window` associated to `expiring-limit` can be communicated via an
    # optional `quota-policy` value": `RateLimit-Limit: 100, 100;w=10`.
    signal = parse({"RateLimit-Limit": "100, 100;w=10"})
    assert signal.limit == 100
    assert signal.policies == (PolicyItem(None, 100, 10),)
    assert signal.policy == QuotaPolicy(100, 10, 1, "RateLimit-Limit")


def test_d03_multiple_quota_limits_the_lowest_rate_within_an_hour_sets_the_pace() -> None:
    # D03 section 5.1: "Policies using multiple quota limits MAY be returned using multiple
    # `quota-policy` items": `RateLimit-Limit: 10, 10;w=1, 50;w=60, 1000;w=3600, 5000;w=86400`.
    signal = parse({"RateLimit-Limit": "10, 10;w=1, 50;w=60, 1000;w=3600, 5000;w=86400"})
    assert signal.limit == 10  # the expiring limit, not a policy's quota
    assert windows(signal) == [
        (None, 10, 1),
        (None, 50, 60),
        (None, 1000, 3600),
        (None, 5000, 86400),
    ]
    # 1000 an hour is the lowest rate of those up to an hour (the daily one is counted, not paced).
    assert signal.policy == QuotaPolicy(1000, 3600, 1, "RateLimit-Limit")


def test_d03_custom_parameters_are_comments() -> None:
    # D03 section 5.1: `RateLimit-Limit: 10, 10;w=1;burst=1000, 1000;w=3600`; section 2.3
    # "Quota policy": "Other parameters are allowed and can be regarded as comments."
    signal = parse({"RateLimit-Limit": "10, 10;w=1;burst=1000, 1000;w=3600"})
    assert signal.limit == 10
    assert windows(signal) == [(None, 10, 1), (None, 1000, 3600)]
    assert signal.policy == QuotaPolicy(1000, 3600, 1, "RateLimit-Limit")  # burst 1, not 1000


def test_d03_faq_the_key_value_is_the_expiring_limit() -> None:
    # D03 appendix "FAQ", item 9: for `RateLimit-Limit: 100, 100;w=60;burst=1000;comment=
    # "sliding window", 5000;w=3600;burst=0;comment="fixed window"` "the key value is the one
    # referencing the lowest limit: `100`"; the quota-policies "are informative".
    signal = parse(
        {
            "RateLimit-Limit": '100, 100;w=60;burst=1000;comment="sliding window", '
            '5000;w=3600;burst=0;comment="fixed window"'
        }
    )
    assert signal.limit == 100
    assert windows(signal) == [(None, 100, 60), (None, 5000, 3600)]
    assert signal.policy == QuotaPolicy(5000, 3600, 1, "RateLimit-Limit")  # 1.39/s < 1.67/s


@pytest.mark.parametrize(
    ("headers", "limit", "remaining", "reset_s", "policy"),
    [
        # D03 appendix B.2.1 "Throttling window specified via parameter": "The client has 99
        # `quota-units` left for the next 50 seconds. The `time-window` is communicated by the
        # `w` parameter, so we know the throughput is 100 `quota-units` per minute."
        (
            {
                "RateLimit-Limit": "100, 100;w=60",
                "Ratelimit-Remaining": "99",
                "Ratelimit-Reset": "50",
            },
            100,
            99,
            50,
            (100, 60),
        ),
        # D03 appendix B.2.2 "Dynamic limits with parameterized windows": "the server
        # artificially lowers the actual limits ... `RateLimit-Remaining` then advertises only 9
        # quota-units for the next 50 seconds".
        (
            {
                "RateLimit-Limit": "10, 100;w=60",
                "Ratelimit-Remaining": "9",
                "Ratelimit-Reset": "50",
            },
            10,
            9,
            50,
            (10, 60),  # the lowered limit wins at once, over the policy's window
        ),
        # D03 appendix B.3 "Dynamic limits for pushing back with Retry-After and slow down".
        (
            {
                "RateLimit-Limit": "15, 100;w=60",
                "Ratelimit-Remaining": "15",
                "Ratelimit-Reset": "40",
            },
            15,
            15,
            40,
            (15, 60),
        ),
        # D03 appendix B.3.2 "Use with multiple windows": "it has only 100 quota-units left;
        # the window will reset in 10 hours; the `expiring-limit` is 5000."
        (
            {
                "RateLimit-Limit": "5000, 1000;w=3600, 5000;w=86400",
                "RateLimit-Remaining": "100",
                "RateLimit-Reset": "36000",
            },
            5000,
            100,
            36000,
            (1000, 3600),
        ),
        # D03 appendix "RateLimit fields currently used on the web": a sliding window,
        # `RateLimit-Remaining: 6 ; using 50% of throughput, that is 6 units/s`.
        (
            {"RateLimit-Limit": "12, 12;w=1", "RateLimit-Remaining": "6", "RateLimit-Reset": "1"},
            12,
            6,
            1,
            (12, 1),
        ),
    ],
    ids=["B.2.1", "B.2.2", "B.3", "B.3.2", "sliding"],
)
def test_d03_example_responses(
    headers: dict[str, str],
    limit: float,
    remaining: float,
    reset_s: float,
    policy: tuple[float, float],
) -> None:
    signal = parse(headers)
    assert (signal.limit, signal.remaining, signal.reset_s) == (limit, remaining, reset_s)
    assert signal.policy == QuotaPolicy(*policy, 1, "RateLimit-Limit")


def test_d03_a_large_window_policy_states_its_average_rate() -> None:
    # D03 section 6.5 "Resource exhaustion": `RateLimit-Limit: 10000, 10000;w=1000`,
    # `RateLimit-Remaining: 10000`, `RateLimit-Reset: 10`: "`RateLimit-Limit` conveys a
    # quota-policy with an average of 10 quota-units per second".
    signal = parse(
        {
            "RateLimit-Limit": "10000, 10000;w=1000",
            "RateLimit-Remaining": "10000",
            "RateLimit-Reset": "10",
        }
    )
    assert signal.policy is not None and signal.policy.rate == pytest.approx(10.0)
    assert (signal.limit, signal.remaining, signal.reset_s) == (10000, 10000, 10)


def test_d03_pushing_back_the_spent_expiring_limit_stops_every_process_until_the_reset() -> None:
    # D03 appendix B.2.3 "Dynamic limits for pushing back and slowing down": "the server
    # rejects and pushes back, advertising `RateLimit-Remaining: 0` for the next 20 seconds",
    # then "a smaller window with a lower limit to slow down the client" (15 per 20 s).
    headers = {"RateLimit-Limit": "0, 15;w=20", "Ratelimit-Remaining": "0", "Ratelimit-Reset": "20"}
    signal = parse(headers)
    assert (signal.limit, signal.remaining, signal.reset_s) == (0, 0, 20)
    assert signal.policy == QuotaPolicy(15, 20, 1, "RateLimit-Limit")
    # Pacing by 15/20 s must not let the next request out before the 20 s push-back is over.
    clock, store = Clock(), MemoryQuotaStore()
    a = SharedPacer(store, "k", clock=clock)
    b = SharedPacer(store, "k", clock=clock)
    a.reserve()
    a.observe(signal)
    assert b.reserve() == pytest.approx(20.0, abs=1e-3)


def test_d03_without_a_quota_policy_nothing_changes() -> None:
    # D03 appendix B.3.1 "Missing Remaining information": `RateLimit-Limit: 10`,
    # `Ratelimit-Reset: 1`: the window is "inferred by the value of `RateLimit-Reset`"
    # (section 5.1), so no policy is stated.
    signal = parse({"RateLimit-Limit": "10", "Ratelimit-Reset": "1"})
    assert (signal.limit, signal.remaining, signal.reset_s) == (10, None, 1)
    assert signal.policy is None and signal.policies == () and signal.limits == ()


# -- 2. Drafts 08-10: a policy with q and no w ----------------------------------------------------
# D10 section 3.1 "Quota Policy Item": "The REQUIRED "q" parameter indicates the quota
# allocated by this policy measured in quota units" and "The OPTIONAL "w" parameter value
# conveys a time window" (the same in D08 section 3.1).
def test_d10_a_quota_without_a_window_is_the_limit_but_no_pace() -> None:
    # D10 appendix B.3.1 "Missing Remaining information", second response:
    # `RateLimit-Policy: quota;q=10`, `RateLimit: quota;t=1`: "It communicates to the client
    # the limit of 10 quota units".
    signal = parse({"RateLimit-Policy": "quota;q=10", "RateLimit": "quota;t=1"})
    assert windows(signal) == [("quota", 10, None)]
    assert signal.limit == 10
    assert signal.policy is None  # no window stated: no rate to pace by
    assert signal.binding is None


def test_d10_the_same_example_with_a_window_paces() -> None:
    # D10 appendix B.3.1, first response: `RateLimit-Policy: quota;q=100;w=1`,
    # `RateLimit: quota;t=1`.
    signal = parse({"RateLimit-Policy": "quota;q=100;w=1", "RateLimit": "quota;t=1"})
    assert windows(signal) == [("quota", 100, 1)]
    assert signal.limit == 100
    assert signal.policy == QuotaPolicy(100, 1, 1, "RateLimit-Policy")


# -- 3. A reset without remaining -----------------------------------------------------------------
def test_d07_a_dictionary_without_remaining_keeps_its_reset() -> None:
    # D07 section 3.1 "RateLimit": "The OPTIONAL "remaining" key value conveys the remaining
    # quota units" and "The REQUIRED "reset" key value conveys the time window reset time".
    # D07 appendix B.3.1 "Missing Remaining information": `RateLimit: limit=10, reset=1`:
    # "the limit of 10 quota units per second always returning the limit and reset".
    signal = parse({"RateLimit": "limit=10, reset=1"})
    assert (signal.limit, signal.remaining, signal.reset_s) == (10, None, 1)
    assert signal.limits == (ServiceLimit(None, None, 1),)
    assert signal.spent_waits(include_binding=True) == []  # not said to be spent


def test_d10_a_service_limit_without_r_is_ignored() -> None:
    # D10 section 4.1 "Service Limit Item": "r: This REQUIRED parameter value conveys the
    # remaining quota units for the identified policy"; section 7 "Client Behavior": "Malformed
    # RateLimit header fields MUST be ignored". So `RateLimit: quota;t=1` (D08 and D10 appendix
    # B.3.1, a non-normative example) carries no reset we trust. D09 marks r REQUIRED too;
    # D08 only marks t OPTIONAL.
    signal = parse({"RateLimit-Policy": "quota;q=100;w=1", "RateLimit": "quota;t=1"})
    assert signal.limits == ()
    assert (signal.remaining, signal.reset_s) == (None, None)


def test_d07_the_full_dictionary_is_unchanged() -> None:
    # D07 section 3.5 "RateLimit-Policy": `RateLimit-Policy: 100;w=10` with
    # `RateLimit: limit=100, remaining=50, reset=5`.
    signal = parse(
        {"RateLimit-Policy": "100;w=10", "RateLimit": "limit=100, remaining=50, reset=5"}
    )
    assert (signal.limit, signal.remaining, signal.reset_s) == (100, 50, 5)
    assert signal.policy == QuotaPolicy(100, 10, 1, "RateLimit-Policy")
    assert signal.limits == (ServiceLimit(None, 50, 5),)


# -- 4. A limit the server lowers wins at once (drafts 06, 07) -----------------------------------
# D06 appendix B "Dynamic limits with parameterized windows": "To avoid resource exhaustion, the
# server artificially lowers the actual limits returned in the throttling headers." D07 gives
# the same three responses as `RateLimit: limit=.., remaining=.., reset=..` dictionaries.
D06 = "https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-06"


@pytest.mark.parametrize(
    ("headers", "limit", "remaining", "reset_s", "policy"),
    [
        # D06 B "Dynamic limits with parameterized windows" (a 200).
        (
            {
                "RateLimit-Limit": "10",
                "RateLimit-Policy": "100;w=60",
                "Ratelimit-Remaining": "9",
                "Ratelimit-Reset": "50",
            },
            10,
            9,
            50,
            (10, 60),
        ),
        # D06 B "Dynamic limits for pushing back and slowing down" (a 429): "a smaller window
        # with a lower limit", after RateLimit-Remaining 0 "for the next 20 seconds".
        (
            {
                "RateLimit-Limit": "0",
                "RateLimit-Policy": "15;w=20",
                "Ratelimit-Remaining": "0",
                "Ratelimit-Reset": "20",
            },
            0,
            0,
            20,
            (15, 20),
        ),
        # D06 B "Dynamic limits for pushing back with Retry-After and slow down" (a 429).
        (
            {
                "Retry-After": "20",
                "RateLimit-Limit": "15",
                "RateLimit-Policy": "100;w=60",
                "Ratelimit-Remaining": "15",
                "Ratelimit-Reset": "40",
            },
            15,
            15,
            40,
            (15, 60),
        ),
        # D07 B, the same three.
        (
            {"RateLimit": "limit=10, remaining=9, reset=50", "RateLimit-Policy": "100;w=60"},
            10,
            9,
            50,
            (10, 60),
        ),
        (
            {"RateLimit": "limit=0, remaining=0, reset=20", "RateLimit-Policy": "15;w=20"},
            0,
            0,
            20,
            (15, 20),
        ),
        (
            {
                "Retry-After": "20",
                "RateLimit": "limit=15, remaining=15, reset=40",
                "RateLimit-Policy": "100;w=60",
            },
            15,
            15,
            40,
            (15, 60),
        ),
    ],
    ids=[
        "d06-lowered",
        "d06-push-back",
        "d06-retry-after",
        "d07-lowered",
        "d07-push-back",
        "d07-retry-after",
    ],
)
def test_a_lowered_limit_is_the_limit_and_the_pace_at_once(
    headers: dict[str, str],
    limit: float,
    remaining: float,
    reset_s: float,
    policy: tuple[float, float],
) -> None:
    signal = parse(headers)
    assert (signal.limit, signal.remaining, signal.reset_s) == (limit, remaining, reset_s)
    assert signal.policy is not None
    assert (signal.policy.limit, signal.policy.window_s) == policy


def test_a_lowered_limit_paces_every_process_at_once() -> None:
    # D06 B: a ceiling of 100/60 s configured, the server says 10 for this window: the next
    # units go at 10 per 60 s, in every process sharing the quota.
    clock, store = Clock(), MemoryQuotaStore()
    ceiling = QuotaPolicy(100, 60)
    a = SharedPacer(store, "k", policy=ceiling, clock=clock)
    b = SharedPacer(store, "k", policy=ceiling, clock=clock)
    a.reserve()
    a.observe(parse({"RateLimit-Limit": "10", "RateLimit-Policy": "100;w=60"}))
    assert a.active_policy() == QuotaPolicy(10, 60, 1, "RateLimit-Policy")
    gaps = []
    for pacer in (b, a, b):
        wait = pacer.reserve()
        clock.now += wait
        gaps.append(wait)
        pacer.observe(None)
    assert all(gap >= 6.0 for gap in gaps[1:]), gaps  # 60 s / 10, not 0.6 s


# -- 5. Remaining and reset cap the pace (draft 10) -----------------------------------------------
def sends_before(pacer: SharedPacer, clock: Clock, deadline: float, *, most: int = 200) -> int:
    """How many requests the pacer lets out before ``deadline`` (each answered at once, with
    no rate-limit fields)."""
    sent = 0
    for _ in range(most):
        clock.now += pacer.reserve()
        if clock.now >= deadline:
            break
        sent += 1
        pacer.observe(None)
    return sent


def test_d10_dynamic_slow_down_nine_left_for_fifty_seconds() -> None:
    # D10 appendix B "Dynamic limits with parameterized windows": `RateLimit-Policy:
    # "dynamic";q=100;w=60`, `RateLimit: "dynamic";r=9;t=50`: the server "advertises only 9
    # quota units for the next 50 seconds to slow down the client".
    clock, store = Clock(), MemoryQuotaStore()
    pacer = SharedPacer(store, "k", clock=clock)
    pacer.reserve()
    pacer.observe(
        parse({"RateLimit-Policy": '"dynamic";q=100;w=60', "RateLimit": '"dynamic";r=9;t=50'})
    )
    assert sends_before(pacer, clock, NOW + 50) == 9  # at 100/60 s it would have sent 83
    assert clock.now == pytest.approx(NOW + 50, abs=1e-6)  # the 10th goes at the reset


def test_d10_a_remaining_the_pace_does_not_reach_changes_nothing() -> None:
    # D10 section 4.2 "RateLimit Field Examples": `RateLimit: "default";r=50;t=30`, "a
    # remaining quota of 50 units and a time window reset in 30 seconds", under D08's
    # `RateLimit-Policy: "default";q=100;w=60`: the pace sends 50 in 30 s anyway.
    counts = []
    for headers in (
        {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=50;t=30'},
        {"RateLimit-Policy": '"default";q=100;w=60'},  # the policy alone
    ):
        clock, store = Clock(), MemoryQuotaStore()
        pacer = SharedPacer(store, "k", clock=clock)
        pacer.reserve()
        pacer.observe(parse(headers))
        counts.append(sends_before(pacer, clock, NOW + 60))
    assert counts[0] == counts[1]


# -- 6. One policy's fields, never two policies' mixed (draft 10 FAQ) -----------------------------
def test_d10_faq_the_policy_reported_is_the_one_named() -> None:
    # D10 appendix "FAQ", item 8: `RateLimit-Policy: "sliding";q=100;w=60;burst=1000`,
    # `RateLimit-Policy: "fixed";q=5000;w=3600;burst=0` (two field lines: one list),
    # `RateLimit: "sliding";r=50;t=44`: "the value "sliding" identifies the policy being
    # reported".
    signal = parse(
        {
            "RateLimit-Policy": '"sliding";q=100;w=60;burst=1000, "fixed";q=5000;w=3600;burst=0',
            "RateLimit": '"sliding";r=50;t=44',
        }
    )
    # The pace is the lowest rate (5000/h < 100/min); the fields reported are all "sliding"'s.
    assert signal.policy == QuotaPolicy(5000, 3600, 1, "RateLimit-Policy")
    assert (signal.limit, signal.remaining, signal.reset_s) == (100, 50, 44)
    assert signal.limits == (ServiceLimit("sliding", 50, 44),)
    # And "sliding" says 50 in 44 s, fewer than the hourly pace would send (61): a budget.
    clock, store = Clock(), MemoryQuotaStore()
    pacer = SharedPacer(store, "k", clock=clock)
    pacer.reserve()
    pacer.observe(signal)
    assert sends_before(pacer, clock, NOW + 44) == 50


def test_d10_a_token_buckets_few_left_for_one_second_do_not_slow_the_pace() -> None:
    # D10 section 4.1.2: `t` is "the number of seconds until additional quota associated with
    # the quota policy is made available", a non-negative Integer. A token bucket of 20/s,
    # burst 2, answers clients sending at its rate with `r=1;t=1` (the simulator's strict
    # bucket, resources/simulator/quota.py, is the server here). Read as one unit for the next
    # second, the pair would cost 80 % of the quota (39 accepted of 200); more comes every 50 ms.
    from resources.simulator.quota import ServerQuota

    clock, store = Clock(), MemoryQuotaStore()
    server = ServerQuota(requests=20, window_s=1, burst=2, clock=clock)
    pacers = [SharedPacer(store, "k", clock=clock) for _ in range(4)]
    # Four processes, each holding its next booking while the others' answers come in.
    due = {i: NOW + pacer.reserve() for i, pacer in enumerate(pacers)}
    accepted = rejected = 0
    pairs = set()
    while clock.now < NOW + 10:
        i = min(due, key=lambda k: due[k])
        pacer = pacers[i]
        clock.now = max(clock.now, due[i])
        if pacer.booked():
            decision = server.check("key", consume=True)
            signal = parse(decision.headers)
            pairs.add(decision.headers["RateLimit"])
            if decision.allowed:
                accepted += 1
                pacer.observe(signal)
            else:
                rejected += 1
                pacer.throttled(
                    server_wait_s=float(decision.headers["Retry-After"]),
                    signal=signal,
                    weight=1,
                    attempt=1,
                    ban=False,
                    reason="429",
                )
        due[i] = clock.now + pacer.reserve()
    assert pairs == {'"default";r=1;t=1'}
    assert rejected == 0
    # The policy learned is a window (burst 1): 20 units per 1 s + the 20 ms jitter margin,
    # 196 of the 200 the bucket's rate allows in 10 s (39 when the pair was a budget).
    assert accepted >= 195
