"""How the pacer learns the quota from the server: pure functions over a key's ``QuotaState``,
applied in one store transaction each, so every process sharing the store sees (and agrees on)
the same quota in force.

The configured or documented quota is a ceiling, not the truth. The quota in force is the lower
of that ceiling and what the server has shown (``QuotaState.learned``):

- **stated**: the server said it (an IETF policy, ``X-RateLimit-Limit`` over a window learned
  from two resets, Binance's used weight at its 429). It replaces any guess and is confirmed.
- **estimate**: a 429 that said nothing about the quota. The units the server accepted since
  the last reset, over the whole seconds until it takes more (``whole_seconds_within``), is
  the rate it allows us; when that does not explain the 429 (we were already below it), the
  quota in force is cut by ``DECREASE``.
  An estimate probes back up by ``PROBE_STEP`` after ``PROBE_WINDOWS`` windows without a 429
  (additive increase, never above the ceiling: one 429 per probe at most); a probe that draws
  a 429 goes back to where it came from, and the next one waits twice as long.

Until the quota in force is confirmed (stated, or a full window at its rate passed without a
429), a slow start holds every process of the key: one booking in flight at a time, a cap that
doubles each round without a 429, so N processes meeting a wrong quota earn one 429, not N.
A header-less 429 waits for the window: the known one, else a backoff that grows past the
longest plausible window (``LONGEST_PLAUSIBLE_WINDOW_S``).

Every answer also tells the store how late its request left its booked slot (``note_sent``):
the key's jitter margin (``gcra.jitter_s``, used by ``QuotaPolicy.paced``) follows what the
host actually does, instead of a constant that held on a quiet machine only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from resources.ratelimit.gcra import (
    Learning,
    QuotaState,
    Reservation,
    jitter_s,
    pause_state,
    reserve_state,
)
from resources.ratelimit.headers import RateLimitSignal
from resources.ratelimit.policy import MAX_JITTER_S, SAFETY_RATE, QuotaPolicy, lower_quota

STATED = "stated"
ESTIMATE = "estimate"
DECREASE = 0.8  # a 429 our own count does not explain: 20 % less
PROBE_WINDOWS = 5  # windows without a 429 before an estimate is raised ...
PROBE_STEP = 0.05  # ... by 5 % (at least one unit)
SLOW_START_ROUND_S = 1.0  # a slow-start round when no window is known
MAX_ROUND_S = 60.0
CAP_LIFT = 32  # a slow-start cap this high is no cap
CONFIRM_SHARE = 0.9  # a round at 90 % of the quota in force without a 429 confirms it
LEASE_S = 60.0  # a booking whose process vanished frees its slot after this long
POLL_MIN_S = 0.002
LONGEST_PLAUSIBLE_WINDOW_S = 60.0  # per-minute quotas are the longest common header-less ones
HEADERLESS_BACKOFF_S = 4.0  # first wait after a header-less 429 with no window known


@dataclass(frozen=True)
class Change:
    """What a learning step did, for the log line: the quota now in force and why."""

    learned: QuotaPolicy | None
    evidence: str


def in_force(state: QuotaState, ceiling: QuotaPolicy | None) -> QuotaPolicy | None:
    return lower_quota(ceiling, state.learned)


def _round_s(active: QuotaPolicy | None) -> float:
    return min(active.window_s, MAX_ROUND_S) if active else SLOW_START_ROUND_S


def _start(learning: Learning, now: float) -> None:
    if not learning.started:
        learning.started = True
        learning.cap = None if learning.confirmed else 1
        learning.cap_since = learning.count_since = now


def _confirm(learning: Learning) -> None:
    learning.confirmed = True
    learning.cap = None


def _set_learned(state: QuotaState, learning: Learning, policy: QuotaPolicy, kind: str) -> bool:
    learning.kind = kind
    if policy == state.learned:
        return False
    state.learned = policy
    return True


# -- before each request --------------------------------------------------------------------
def book(
    state: QuotaState,
    *,
    ceiling: QuotaPolicy | None,
    units: int,
    now: float,
    owner: str,
) -> Reservation:
    """Book ``units`` for ``owner`` (one pacer): its previous booking is done (a client sends
    one request at a time), the slow start may make it wait for a slot in flight, an
    estimate may probe up, and then GCRA books under the quota in force."""
    learning = state.learning
    _start(learning, now)
    learning.leases = [
        lease for lease in learning.leases if lease[0] != owner and lease[1] > now - LEASE_S
    ]
    _probe_up(state, learning, ceiling, now)
    active = in_force(state, ceiling)
    round_s = _round_s(active)
    if active is not None and now - learning.count_since >= active.window_s:
        learning.count_since, learning.count_units = now, 0.0  # a window passed: count anew
    if learning.cap is not None and now - learning.cap_since >= round_s:
        if learning.last_throttle < learning.cap_since:
            full = active is not None and learning.round_units >= (
                CONFIRM_SHARE * active.rate * (now - learning.cap_since)
            )
            learning.cap = None if full or 2 * learning.cap >= CAP_LIFT else 2 * learning.cap
            learning.confirmed = full
        learning.cap_since, learning.round_units = now, 0.0
    if learning.cap is not None and len(learning.leases) >= learning.cap:
        first = min(lease[1] for lease in learning.leases)
        wait = max(POLL_MIN_S, first + learning.rtt_s - now)
        return Reservation(
            wait,
            f"slow start: {len(learning.leases)} request(s) in flight of {learning.cap} "
            "allowed until the quota is confirmed",
            booked=False,
        )
    booking = reserve_state(state, weight=units, now=now, policy=active)
    if active is None:
        learning.unpaced_units += units
    learning.leases.append([owner, now + booking.wait_s])
    learning.count_units += units
    learning.round_units += units
    return booking


def _probe_up(
    state: QuotaState, learning: Learning, ceiling: QuotaPolicy | None, now: float
) -> None:
    learned = state.learned
    if learning.kind != ESTIMATE or learned is None:
        return
    quiet_since = max(learning.last_throttle, learning.last_probe)
    if now - quiet_since < (learning.probe_windows or PROBE_WINDOWS) * learned.window_s:
        return
    learning.last_probe = now
    if learning.probe_from:
        learning.probe_windows = 0  # the last probe held: back to the usual pace
    learning.probe_from = [learned.limit, learned.window_s]
    raised = QuotaPolicy(
        learned.limit + max(1.0, PROBE_STEP * learned.limit),
        learned.window_s,
        1,
        f"probing up from {learned.limit:g}/{learned.window_s:g}s",
    )
    stated = _stated(learning)
    top = lower_quota(ceiling, stated)
    if top is not None and raised.rate >= top.rate:
        # Back at the ceiling (or the server's own word): the estimate has served its turn.
        state.learned, learning.kind = stated, STATED if stated else ""
        return
    state.learned = raised


def _stated(learning: Learning) -> QuotaPolicy | None:
    if not learning.stated:
        return None
    limit, window_s = learning.stated
    return QuotaPolicy(limit, window_s, 1, "stated by the server")


def settle(state: QuotaState, *, owner: str, rtt_s: float | None) -> None:
    """``owner``'s request is answered: its slot in flight is free."""
    learning = state.learning
    learning.leases = [lease for lease in learning.leases if lease[0] != owner]
    if rtt_s is not None and rtt_s >= 0:
        learning.rtt_s = rtt_s if not learning.rtt_s else 0.8 * learning.rtt_s + 0.2 * rtt_s


PUBLISHED_READ_EVERY_S = 3600.0  # published limits are read again after this long


def claim_published_read(learning: Learning, *, now: float, release: bool) -> bool:
    """One process of the instance reads the provider's published limits (Binance's
    ``exchangeInfo``, weight 20) and states them for every process; the others would only
    spend quota to learn the same. The claim holds ``PUBLISHED_READ_EVERY_S`` (a provider
    may change its limits), and a read that failed gives it back (``release``)."""
    if release:
        learning.published_read_at = 0.0
        return False
    if learning.published_read_at and now - learning.published_read_at < PUBLISHED_READ_EVERY_S:
        return False
    learning.published_read_at = now
    return True


LATE_RISE = 0.3  # a later send moves the estimate this share of the way up at once ...
LATE_DECAY = 0.99  # ... and each send on time lets it fall by 1 % (half in ~70 sends)


def note_sent(learning: Learning, *, late_s: float) -> None:
    """A request left ``late_s`` after its booked slot: the host's share of the arrival jitter.

    ``Learning.late_s`` follows a high quantile of that, for every process of the key: up fast
    (``LATE_RISE`` of the gap to a later send), down slowly (``LATE_DECAY`` per send), so one
    descheduled process raises the margin at once and a quiet host wins it back over about a
    hundred requests. On a quiet host sends are a millisecond late and the margin is the
    least allowance; with two CPU hogs beside 8 processes, tens of milliseconds (measured in
    benchmarks/README.md). The pacer spaces units by it (``QuotaPolicy.paced``)."""
    late = min(MAX_JITTER_S, max(0.0, late_s))
    if late > learning.late_s:
        learning.late_s += LATE_RISE * (late - learning.late_s)
    else:
        learning.late_s *= LATE_DECAY


def late_shift(
    booking: Reservation, *, units: int, slot: float, sent: float, jitter_s: float
) -> float:
    """How far a request booked for ``slot`` and sent at ``sent`` (a busy host kept its
    process off the CPU; the server counts from the arrival) moves the server's schedule past
    ours.

    - A token bucket (paced burst over 1): the server's TAT before the request was where
      ours was, ``booking.tat`` less the request's units; after it, the later of that and the
      arrival, plus its units. Only what the arrival pushes past ``booking.tat`` moves it:
      nothing in a saturated schedule, where the bucket had units queued ahead (a request up
      to ``burst - 1`` intervals late), and all of the lateness after an idle bucket, where
      the rest of a burst sent on our schedule would reach the server early by as much.
    - A window (burst 1): a unit late would arrive next to the following one; the schedule
      moves on by the lateness.

    Up to ``jitter_s`` is absorbed by the margin every booking keeps (``QuotaPolicy.paced``)."""
    late = sent - slot
    if booking.interval is None or late <= 0:
        return 0.0
    shift = sent + units * booking.interval - booking.tat if booking.burst > 1 else late
    return shift if shift > jitter_s else 0.0  # the margin every booking keeps absorbs less


def sent_late(state: QuotaState, *, late_s: float) -> None:
    """The shared schedule moves on by ``late_s`` (``late_shift``): every process's next slot
    is where the server's clock has it."""
    if late_s > 0 and state.tat:
        state.tat += late_s


# -- after each answer ----------------------------------------------------------------------
def observe(
    state: QuotaState,
    *,
    ceiling: QuotaPolicy | None,
    signal: RateLimitSignal | None,
    units: int,
    now: float,
    owner: str,
    rtt_s: float | None,
    late_s: float | None = None,
) -> Change | None:
    """Learn from an answer that was not a throttle, then free ``owner``'s slot in flight
    (in that order, in one transaction: a pause the answer calls for is in place before
    anyone else may send). Returns what changed in the quota in force (None: nothing); pauses
    every process when the server says the quota is spent. ``late_s``: how late the request
    left its slot (``note_sent``)."""
    learning = state.learning
    _start(learning, now)
    if late_s is not None:
        note_sent(learning, late_s=late_s)
    change = None
    if signal is not None:
        change = _observe(state, learning, ceiling, signal, units, now)
    counted_by(state, in_force(state, ceiling), units=units, now=now)
    settle(state, owner=owner, rtt_s=rtt_s)
    return change


def counted_by(state: QuotaState, active: QuotaPolicy | None, *, units: int, now: float) -> None:
    """An answer proves its request was counted by ``now`` at the latest, and a busy server
    (or network) may have counted it that late: 35 ms after it was sent was measured here on
    a loaded machine, 200 ms once. Where the schedule had gone idle meanwhile (a first request,
    a lull), the server's schedule then restarts at that arrival, later than ours, and a burst
    on ours reaches it early. So the schedule is never behind where booking the request on an
    idle schedule at ``now`` would have put it (``gcra_book``: its units, or the burst when it
    weighs more), less the arrival-jitter allowance. A busy schedule (other processes'
    bookings) is already ahead of that: this costs nothing then, nor on a quiet machine."""
    if active is None:
        return
    jitter = jitter_s(state)
    interval, burst = active.paced(jitter)
    state.tat = max(state.tat, now + min(units, burst) * interval - jitter)


def _observe(
    state: QuotaState,
    learning: Learning,
    ceiling: QuotaPolicy | None,
    signal: RateLimitSignal,
    units: int,
    now: float,
) -> Change | None:
    unpaced = in_force(state, ceiling) is None
    change = _learn_stated(state, learning, signal, now)
    active = in_force(state, ceiling)
    if unpaced and active is not None:
        _charge_unpaced(state, learning, active, now)
    # The quota is spent (someone else may share it: another tool on the same IP or key):
    # wait for the server's reset instead of collecting a 429.
    waits = signal.spent_waits(include_binding=False)
    remaining = signal.remaining
    if signal.used is not None and active is not None and signal.window_s:
        # A used-units header (Binance): what is left of the quota in force, in this window.
        remaining = active.rate * signal.window_s - signal.used
    if signal.policy is None and remaining is not None and remaining < units and signal.reset_s:
        waits.append((signal.source or "headers", signal.reset_s))
    cap_by_remaining(state, signal, active, now=now, remaining=remaining)
    if waits:
        name, wait = max(waits, key=lambda w: w[1])
        pause_state(
            state, until=now + wait, reason=f"quota spent ({name}) until the reset", policy=active
        )
        # What was sent so far belongs to a window that is over when the pause ends.
        learning.count_since, learning.count_units = now + wait, 0.0
        learning.unpaced_units = 0.0
    return change


def cap_by_remaining(
    state: QuotaState,
    signal: RateLimitSignal,
    active: QuotaPolicy | None,
    *,
    now: float,
    remaining: float | None = None,
) -> None:
    """Every remaining/reset pair the server gave is a budget: ``r`` more units until ``t``
    seconds from now (draft 10 appendix B "Dynamic limits with parameterized windows":
    `q=100;w=60` with `r=9;t=50` "advertises only 9 quota units for the next 50 seconds to
    slow down the client"). Where a pair allows fewer units than the pace would send by its
    reset, those go at the pace and the next waits for the reset; the tightest pair counts, the
    newest answer replaces an older one's, ``r=0`` is a pause (``_observe``). A pair that
    allows what the pace sends anyway changes nothing: a fixed window's own remaining and
    reset never slow a client that paces right.

    ``t`` is whole seconds, rounded up (an Integer in every draft, and in the X-RateLimit
    dialects): more quota may come up to a second sooner. A pair slows the pace only where the
    pace would send more than ``r`` before that earliest reset. So ``t=1`` alone never does:
    a token bucket says ``r=1;t=1`` to a client sending at its rate (draft 10: ``t`` is "the
    number of seconds until additional quota ... is made available"), and reading it as one
    unit a second would cost 95 % of a 20/s quota.
    Units booked to go before the reset and not answered yet are not counted in ``r``: they
    are taken off it."""
    learning = state.learning
    if active is None:
        return
    pairs = [(item.remaining, item.reset_s, item.policy) for item in signal.limits]
    pairs.append((signal.remaining if remaining is None else remaining, signal.reset_s, None))
    tightest: tuple[float, float, str] | None = None
    for left, reset_s, name in pairs:
        if left is None or left <= 0 or not reset_s or reset_s <= 0:
            continue
        if left >= active.rate * SAFETY_RATE * max(0.0, reset_s - 1.0):
            continue  # the pace sends no more than that by the earliest reset
        if (
            tightest is None
            or left - active.rate * reset_s < tightest[0] - active.rate * tightest[1]
        ):
            label = f'"{name}" ' if name else ""
            tightest = (left, reset_s, f"{label}{left:g} left for {reset_s:g} s")
    if tightest is None:
        learning.budget_left, learning.budget_until, learning.budget_reason = 0.0, 0.0, ""
        return
    left, reset_s, reason = tightest
    # The answer's own booking is one of the leases (it is settled after this).
    in_flight = max(0, sum(1 for lease in learning.leases if lease[1] < now + reset_s) - 1)
    learning.budget_left = max(0.0, left - in_flight)
    learning.budget_until, learning.budget_reason = now + reset_s, reason


def _charge_unpaced(state: QuotaState, learning: Learning, active: QuotaPolicy, now: float) -> None:
    """The first quota known: what was sent before it (the first request of learn mode) is
    booked under it now, so a fixed window does not see that request plus a full window."""
    interval, _ = active.paced(jitter_s(state))
    state.tat = max(state.tat, now) + learning.unpaced_units * interval
    learning.unpaced_units = 0.0


def _learn_stated(
    state: QuotaState, learning: Learning, signal: RateLimitSignal, now: float
) -> Change | None:
    """A quota the server stated replaces a guess (an estimate below it stays until it has
    probed back up: the server's policy does not count what others spend)."""
    stated: QuotaPolicy | None = signal.policy
    if stated is None and signal.limit and signal.reset_s is not None:
        stated = _window_from_resets(learning, signal, now)
    if stated is None:
        return None
    learning.stated = [stated.limit, stated.window_s]
    if not learning.confirmed:
        _confirm(learning)
    current = state.learned
    if learning.kind == ESTIMATE and current is not None and current.rate < stated.rate:
        return None
    if _set_learned(state, learning, stated, STATED):
        return Change(stated, f"the server states {stated.describe()}")
    return None


def _window_from_resets(
    learning: Learning, signal: RateLimitSignal, now: float
) -> QuotaPolicy | None:
    """``X-RateLimit-Limit`` says how many; the window is never stated. Two epoch resets
    (GitHub's form) are a window apart: the shortest gap seen is the window. A reset in
    seconds-from-now is seen whole by the first request of a window: the longest one seen.
    Either way it is one value per key, agreed through the store, never a guess per process."""
    assert signal.limit and signal.reset_s is not None
    if signal.reset_at is not None:
        if learning.reset_at and signal.reset_at > learning.reset_at + 0.5:
            gap = signal.reset_at - learning.reset_at
            learning.window_seen = min(learning.window_seen or gap, gap)
        learning.reset_at = max(learning.reset_at, signal.reset_at)
        window = learning.window_seen
        source = "X-RateLimit-Limit per the window between two resets"
    else:
        learning.reset_span = max(learning.reset_span, signal.reset_s)
        jumped = learning.reset_at and now + signal.reset_s > learning.reset_at + 0.5
        learning.reset_at = max(learning.reset_at, now + signal.reset_s)
        window = learning.reset_span if jumped else 0.0
        source = "X-RateLimit-Limit per the longest reset seen"
    if not window:
        return None  # not known yet: the remaining count holds us until the reset
    return QuotaPolicy(signal.limit, window, 1, source)


# -- after a throttle -----------------------------------------------------------------------
def whole_seconds_within(span: float) -> float:
    """The window a header-less 429 shows: the whole seconds in ``span``.

    ``span`` runs from the first unit counted to when the server takes more at the latest
    (the pause's end: ``Retry-After``, itself rounded up to whole seconds, or our own wait), so
    the window is no longer than ``span``; it also holds the time the first units took to
    send. Every quota a provider documents is a whole number of seconds (per second, minute,
    hour, day), so the window is at most ``floor(span)``: the same bound, without the
    rounding and the sending time, which cost up to a second of every window (5.16 s learned
    for 5, utilization 0.95; 3.21 s for a rolling 3 s, 0.91). Under a second it is ``span``."""
    whole = math.floor(span + 1e-6)
    return float(whole) if whole >= 1 else span


def throttled(
    state: QuotaState,
    *,
    ceiling: QuotaPolicy | None,
    signal: RateLimitSignal | None,
    server_wait_s: float | None,
    units: int,
    booked_at: float | None,
    attempt: int,
    ban: bool,
    reason: str,
    now: float,
    owner: str = "",
) -> tuple[float, Change | None]:
    """The server said no. Decide how long every process waits, lower the quota in force from
    the evidence, and pause them all. Returns (the wait, what changed)."""
    learning = state.learning
    _start(learning, now)
    change = _learn_stated(state, learning, signal, now) if signal is not None else None
    active = in_force(state, ceiling)
    wait, why = _throttle_wait(active, signal, server_wait_s, attempt)
    # This request's slot is freed only now, with the pause below in the same transaction:
    # no other process can send in between and arrive inside the server's Retry-After.
    learning.leases = [lease for lease in learning.leases if lease[0] != owner]
    if not ban:
        lowered = _lower_from_throttle(state, learning, active, signal, units, booked_at, now, wait)
        change = lowered or change
    until = now + wait
    pause_state(state, until=until, reason=f"{reason}; {why}", policy=in_force(state, ceiling))
    learning.last_throttle = now
    learning.count_since, learning.count_units = until, 0.0
    learning.unpaced_units = 0.0
    if not (change is not None and change.evidence.startswith("the server")):
        learning.confirmed = False
        learning.cap, learning.cap_since, learning.round_units = 1, until, 0.0
    return wait, change


def _throttle_wait(
    active: QuotaPolicy | None,
    signal: RateLimitSignal | None,
    server_wait_s: float | None,
    attempt: int,
) -> tuple[float, str]:
    if server_wait_s:
        return server_wait_s, f"the server asked for {server_wait_s:g} s"
    if signal is not None:
        spent = signal.spent_waits(include_binding=True)
        if spent:
            name, wait = max(spent, key=lambda w: w[1])
            return wait, f"{name} has r=0 for {wait:g} s"
        if signal.used is not None and signal.reset_s:
            return signal.reset_s, f"the {signal.source} window resets in {signal.reset_s:.1f} s"
    if active is not None:
        return active.window_s, f"no wait given: the whole {active.window_s:g} s window"
    wait = min(LONGEST_PLAUSIBLE_WINDOW_S, HEADERLESS_BACKOFF_S * 2 ** max(0, attempt - 1))
    return wait, (
        f"no wait given and no window known: {wait:g} s, growing past the longest "
        f"plausible window ({LONGEST_PLAUSIBLE_WINDOW_S:g} s)"
    )


def _lower_from_throttle(
    state: QuotaState,
    learning: Learning,
    active: QuotaPolicy | None,
    signal: RateLimitSignal | None,
    units: int,
    booked_at: float | None,
    now: float,
    wait: float,
) -> Change | None:
    if signal is not None and signal.used is not None and signal.window_s:
        # Binance's used weight at its own 429 is the limit, whoever spent it (it is per IP).
        limit = max(float(units), signal.used)
        stated = QuotaPolicy(limit, signal.window_s, 1, f"{signal.source} at HTTP 429")
        if active is None or stated.rate < active.rate:
            learning.stated = [stated.limit, stated.window_s]
            _confirm(learning)
            _set_learned(state, learning, stated, STATED)
            return Change(stated, f"the server's count at its 429: {stated.describe()}")
        return None
    if signal is not None and (
        signal.policy is not None or signal.limit is not None or signal.remaining is not None
    ):
        # The server states its quota: that is the truth (it replaced any guess), and a 429
        # under it is someone else's use or a bad moment, which the pause answers.
        return None
    if learning.probe_from and learning.kind == ESTIMATE:
        # The last probe up was one step too far: back to what held, and probe less often.
        limit, window_s = learning.probe_from
        learning.probe_from = None
        learning.probe_windows = min(
            8 * PROBE_WINDOWS, 2 * (learning.probe_windows or PROBE_WINDOWS)
        )
        learning.last_probe = now
        held = QuotaPolicy(
            limit, window_s, 1, f"429 after probing up: back to {limit:g}/{window_s:g}s"
        )
        _set_learned(state, learning, held, ESTIMATE)
        return Change(held, held.source)
    counted = booked_at is None or booked_at >= learning.count_since
    accepted = learning.count_units - (units if counted else 0)
    span = now + wait - learning.count_since
    if accepted < 1 or span <= 0:
        # Nothing of ours was accepted since the last reset: the 429 says nothing about the
        # rate we may send at (someone else spent the quota, or the server had a bad moment).
        return None
    window = whole_seconds_within(span)
    estimate = QuotaPolicy(
        math.floor(accepted),
        window,
        1,
        f"429: {accepted:g} units accepted in the {span:.2f} s before the server takes more "
        f"({window:g} s window)",
    )
    if active is None or estimate.rate < active.rate:
        lowered = estimate
    else:
        # We were below what our own count allows and still got a 429: cut multiplicatively.
        lowered = QuotaPolicy(
            max(1.0, math.floor(active.limit * DECREASE)),
            active.window_s,
            1,
            f"429 at {active.describe()}: {1 - DECREASE:.0%} less",
        )
    learning.last_probe = now
    learning.probe_from = None
    _set_learned(state, learning, lowered, ESTIMATE)
    return Change(lowered, lowered.source)
