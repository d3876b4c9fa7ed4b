"""GCRA, the "virtual scheduling" form of a token bucket: the pure booking arithmetic every quota
store shares, so memory, SQLite and PostgreSQL compute exactly the same schedule."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from resources.ratelimit.policy import ARRIVAL_JITTER_S, MAX_JITTER_S, QuotaPolicy


# -- the shared state -----------------------------------------------------------------------
@dataclass(frozen=True)
class Reservation:
    wait_s: float
    reason: str
    # False: nothing was booked, the wait is only until it is worth asking again (a slot in
    # flight may be free by then: see resources/ratelimit/learning.py).
    booked: bool = True
    # The key's TAT after this booking, and the pace it was booked at (seconds per unit, burst
    # in units; None: no quota known): where the server's schedule is once it arrives on time.
    tat: float = 0.0
    interval: float | None = None
    burst: float = 1.0


def gcra_book(
    *,
    tat: float,
    paused_until: float,
    now: float,
    weight: int,
    interval: float | None,
    burst: float,
) -> tuple[float, float]:
    """Book ``weight`` units: (when they may be sent, the new TAT). Pure, so every store
    (memory, SQLite, PostgreSQL) computes exactly the same schedule."""
    if interval is None:  # no quota known yet: only a pause holds us back
        return max(now, paused_until), tat
    # Standard GCRA: the booking moves the TAT by weight intervals from max(TAT, now), and may
    # be sent once that TAT is no more than `burst` intervals ahead of the send time.
    new_tat = max(tat, now) + weight * interval
    send_at = new_tat - burst * interval
    if now < paused_until and send_at < paused_until:  # as if it arrived when the pause ends
        new_tat += paused_until - send_at
        send_at = paused_until
    return max(now, send_at), new_tat


@dataclass
class Learning:
    """What a key has learned beyond its GCRA schedule (resources/ratelimit/learning.py says
    how); stored with the key's state as JSON."""

    started: bool = False
    kind: str = ""  # "stated" (the server said it), "estimate" (from 429s) or "" (nothing)
    stated: list[float] | None = None  # the server's own quota [limit, window_s], if it said
    confirmed: bool = False  # the quota in force is known to hold
    cap: int | None = None  # bookings in flight allowed (slow start); None: no cap
    cap_since: float = 0.0
    round_units: float = 0.0  # units booked since cap_since
    leases: list[list[Any]] = field(default_factory=list)  # [owner, send_at] in flight
    count_since: float = 0.0  # units booked since this moment (the last reset we know of)
    count_units: float = 0.0
    last_throttle: float = 0.0
    last_probe: float = 0.0
    reset_at: float = 0.0  # the last epoch reset a server gave (X-RateLimit-Reset)
    window_seen: float = 0.0  # the shortest gap between two such resets: the window
    reset_span: float = 0.0  # the longest seconds-from-now reset seen
    rtt_s: float = 0.0  # round trips, smoothed
    unpaced_units: float = 0.0  # units sent while no quota was known (charged once one is)
    probe_from: list[float] | None = None  # [limit, window_s] an estimate last probed up from
    probe_windows: int = 0  # quiet windows before the next probe (0: the default)
    # The server said only budget_left more units until budget_until (a remaining/reset pair
    # below what the pace would send by then: resources/ratelimit/learning.py:cap_by_remaining).
    budget_left: float = 0.0
    budget_until: float = 0.0
    budget_reason: str = ""
    # How late this key's requests leave their booked slots, a high quantile of what every
    # process measured (resources/ratelimit/learning.py:note_sent): the pacer's jitter margin.
    late_s: float = 0.0
    published_read_at: float = 0.0  # when a process of the key claimed the published limits

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Learning:
        """Fields this version does not know are dropped: the state is a cache."""
        if not data:
            return cls()
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class QuotaState:
    tat: float = 0.0
    paused_until: float = 0.0
    pause_reason: str = ""
    learned: QuotaPolicy | None = None
    learning: Learning = field(default_factory=Learning)


def jitter_s(state: QuotaState) -> float:
    """How far apart requests sent on schedule may reach the server, for this key: the least
    allowance plus how late its requests have been leaving (``Learning.late_s``)."""
    return min(MAX_JITTER_S, ARRIVAL_JITTER_S + state.learning.late_s)


def reserve_state(
    state: QuotaState, *, weight: int, now: float, policy: QuotaPolicy | None
) -> Reservation:
    active = policy or state.learned
    interval, burst = active.paced(jitter_s(state)) if active else (None, 1)
    send_at, state.tat = gcra_book(
        tat=state.tat,
        paused_until=state.paused_until,
        now=now,
        weight=weight,
        interval=interval,
        burst=burst,
    )
    learning, capped = state.learning, False
    if learning.budget_until > now:
        if learning.budget_left >= weight:
            learning.budget_left -= weight
        elif send_at < learning.budget_until:
            # The server's remaining is spent: the rest waits for its reset, then the pace.
            state.tat += learning.budget_until - send_at
            send_at, capped = learning.budget_until, True
    wait = send_at - now
    # The first slot after a pause (the pause's end, plus the arrival-jitter allowance).
    if state.paused_until > now and send_at <= state.paused_until + (interval or 0.0) + 1e-9:
        reason = f"shared pause: {state.pause_reason}"
    elif capped:
        reason = f"the server's remaining is spent: {learning.budget_reason}"
    elif active is not None:
        reason = f"pacing to quota {active.describe()}"
    else:
        reason = "no quota known yet"
    return Reservation(max(0.0, wait), reason, tat=state.tat, interval=interval, burst=burst)


def pause_state(
    state: QuotaState, *, until: float, reason: str, policy: QuotaPolicy | None
) -> None:
    if until > state.paused_until:
        state.paused_until, state.pause_reason = until, reason
    active = policy or state.learned
    if active is not None:
        # After the pause, one request at its end and then the paced rate, not a full burst:
        # the server's bucket is only known to hold one unit when Retry-After runs out.
        interval, burst = active.paced(jitter_s(state))
        state.tat = max(state.tat, until + (burst - 1) * interval)
