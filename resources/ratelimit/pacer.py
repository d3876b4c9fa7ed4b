"""Pacers: what the client asks before each request and tells after each answer.
``SharedPacer`` books in a quota store shared by every process, learns the quota in force from
the server (``resources/ratelimit/learning.py``) and pauses every process on a 429 or a ban."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from resources.ratelimit import learning
from resources.ratelimit.gcra import QuotaState, Reservation, jitter_s, pause_state
from resources.ratelimit.headers import RateLimitSignal
from resources.ratelimit.policy import ARRIVAL_JITTER_S, QuotaPolicy, lower_quota
from resources.ratelimit.stores import QuotaStore

# A child of the client's logger: Dagster captures it into the run's event log with the waits.
logger = logging.getLogger("fin_assets.client.quota")


# -- what the client talks to ---------------------------------------------------------------
class Pacer(Protocol):
    def reserve(self, weight: int = 1) -> float:
        """Claim ``weight`` units of quota; return how many seconds to wait before sending.
        When ``booked()`` is False afterwards, nothing was claimed: wait, then ask again."""
        ...

    def booked(self) -> bool: ...

    def sending(self) -> None:
        """The request booked last goes out now (called just before it is written): a slot
        left later than the arrival-jitter allowance moves the shared schedule on."""
        ...

    def settle(self, *, rtt_s: float | None = None) -> None:
        """The request booked last has its answer (or failed): its slot in flight is free."""
        ...

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        """Nobody sends for ``seconds`` (a ban, a server that said so)."""
        ...

    def throttled(
        self,
        *,
        server_wait_s: float | None,
        signal: RateLimitSignal | None,
        weight: int,
        attempt: int,
        ban: bool,
        reason: str,
    ) -> float:
        """The server said no: learn from it, pause everyone sharing the quota, and return
        how long to wait (the server's word, else the window, else a growing backoff)."""
        ...

    def observe(
        self, signal: RateLimitSignal | None, *, weight: int = 1, rtt_s: float | None = None
    ) -> None:
        """Learn from what an answer (not a throttle) said about the quota; the request's
        slot in flight is free afterwards (``settle``)."""
        ...

    def describe_last_wait(self) -> str: ...

    def pause_remaining(self) -> tuple[float, str]:
        """Seconds of a shared pause still to run (set after our slot was booked), and why."""
        ...

    def claim_published_read(self, *, release: bool = False) -> bool:
        """Whether this client is the one to read the provider's published limits now (one
        read per instance, not per process); ``release=True`` gives the claim back after a
        read that failed."""
        ...


class NoPacer:
    """No quota at all; a throttle still waits what the server said, or backs off."""

    def reserve(self, weight: int = 1) -> float:
        return 0.0

    def booked(self) -> bool:
        return True

    def sending(self) -> None:
        return None

    def settle(self, *, rtt_s: float | None = None) -> None:
        return None

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        return None

    def throttled(
        self,
        *,
        server_wait_s: float | None,
        signal: RateLimitSignal | None,
        weight: int,
        attempt: int,
        ban: bool,
        reason: str,
    ) -> float:
        state = QuotaState()
        wait, _ = learning.throttled(
            state,
            ceiling=None,
            signal=signal,
            server_wait_s=server_wait_s,
            units=weight,
            booked_at=None,
            attempt=attempt,
            ban=True,  # nothing to lower: only the wait is wanted
            reason=reason,
            now=0.0,
        )
        return wait

    def observe(
        self, signal: RateLimitSignal | None, *, weight: int = 1, rtt_s: float | None = None
    ) -> None:
        return None

    def describe_last_wait(self) -> str:
        return "no pacing"

    def pause_remaining(self) -> tuple[float, str]:
        return 0.0, ""

    def claim_published_read(self, *, release: bool = False) -> bool:
        return False  # nothing to pace by


class SharedPacer:
    """Pacing for one quota key over a ``QuotaStore``: ``policy`` is the configured or
    documented quota, a ceiling (None: learn it all from the server).

    With ``adaptive=False`` it is plain GCRA under ``policy`` (and whatever a header states):
    no slow start and no quota lowered by 429s. Only tools that own their quota outright (a
    test's private token bucket) want that."""

    def __init__(
        self,
        store: QuotaStore,
        key: str,
        *,
        policy: QuotaPolicy | None = None,
        clock: Callable[[], float] = time.time,
        adaptive: bool = True,
    ) -> None:
        self.store = store
        self.key = key
        self.policy = policy
        self.adaptive = adaptive
        self._clock = clock
        self._last_reason = ""
        self._booked = True
        self._booked_at: float | None = None
        self._send_at: float | None = None  # when the booking in hand was to be sent
        self._late: float | None = None  # how late it left (told to the store with its answer)
        self._booking: Reservation | None = None  # the booking in hand
        self._units = 1
        self._jitter = ARRIVAL_JITTER_S  # the key's jitter margin, as of our last answer
        # Names this pacer's booking in flight in the shared state (one client, one request
        # at a time): its next booking, or its answer, frees the slot.
        self._owner = secrets.token_hex(6)

    def reserve(self, weight: int = 1) -> float:
        now = self._clock()
        if self.adaptive:
            booking = self.store.apply(
                self.key,
                now,
                lambda s: learning.book(
                    s, ceiling=self.policy, units=weight, now=now, owner=self._owner
                ),
            )
        else:
            booking = self.store.reserve(self.key, weight=weight, now=now, policy=self.policy)
        self._last_reason = booking.reason
        self._booked = booking.booked
        if booking.booked:
            self._booked_at = now
            self._send_at = now + booking.wait_s
            self._booking, self._units = booking, weight
        return booking.wait_s

    def booked(self) -> bool:
        return self._booked

    def sending(self) -> None:
        send_at, self._send_at = self._send_at, None
        if send_at is None:
            return
        now = self._clock()
        late = now - send_at
        self._late = max(0.0, late)
        if self._booking is None:
            return
        shift = learning.late_shift(
            self._booking, units=self._units, slot=send_at, sent=now, jitter_s=self._jitter
        )
        if shift <= 0:
            return  # the server's schedule is where ours is
        # The provider part of the key only: the rest holds the base URL (which may carry a
        # password).
        provider = self.key.split("|")[0]
        logger.debug(
            "quota %s: sent %.3f s after its slot: the schedule moves on %.3f s",
            provider,
            late,
            shift,
        )
        self.store.apply(self.key, now, lambda s: learning.sent_late(s, late_s=shift))

    def settle(self, *, rtt_s: float | None = None) -> None:
        if self.adaptive:
            self.store.apply(
                self.key,
                self._clock(),
                lambda s: learning.settle(s, owner=self._owner, rtt_s=rtt_s),
            )

    def describe_last_wait(self) -> str:
        return self._last_reason

    def pause_remaining(self) -> tuple[float, str]:
        until, reason = self.store.paused_until(self.key)
        return max(0.0, until - self._clock()), reason

    def claim_published_read(self, *, release: bool = False) -> bool:
        now = self._clock()
        return self.store.apply(
            self.key,
            now,
            lambda s: learning.claim_published_read(s.learning, now=now, release=release),
        )

    def close(self) -> None:
        try:
            self.settle()
        except Exception:  # closing must not fail over a store that went away
            logger.debug("quota %s: could not free the slot in flight", self.key, exc_info=True)
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def pause_for(self, seconds: float, *, reason: str = "") -> None:
        self.store.pause(
            self.key,
            until=self._clock() + seconds,
            reason=reason or "server asked to wait",
            policy=self.active_policy(),
        )

    def active_policy(self) -> QuotaPolicy | None:
        """The quota in force: the lower of the ceiling and what the server has shown."""
        return lower_quota(self.policy, self.store.learned(self.key))

    def throttled(
        self,
        *,
        server_wait_s: float | None,
        signal: RateLimitSignal | None,
        weight: int,
        attempt: int,
        ban: bool,
        reason: str,
    ) -> float:
        now = self._clock()
        booked_at = self._booked_at
        self._late = None

        def change(state: QuotaState) -> tuple[float, learning.Change | None]:
            return learning.throttled(
                state,
                ceiling=self.policy,
                signal=signal,
                server_wait_s=server_wait_s,
                units=weight,
                booked_at=booked_at,
                attempt=attempt,
                ban=ban or not self.adaptive,
                reason=reason,
                now=now,
                owner=self._owner,
            )

        wait, learned = self.store.apply(self.key, now, change)
        if learned is not None:
            self._log_change(learned)
        return wait

    def observe(
        self, signal: RateLimitSignal | None, *, weight: int = 1, rtt_s: float | None = None
    ) -> None:
        now = self._clock()
        if not self.adaptive:
            if signal is not None:
                self._observe_plain(signal, now)
            return
        late, self._late = self._late, None

        def change(state: QuotaState) -> tuple[learning.Change | None, float]:
            found = learning.observe(
                state,
                ceiling=self.policy,
                signal=signal,
                units=weight,
                now=now,
                owner=self._owner,
                rtt_s=rtt_s,
                late_s=late,
            )
            return found, jitter_s(state)

        learned, self._jitter = self.store.apply(self.key, now, change)
        if learned is not None:
            self._log_change(learned)

    def _observe_plain(self, signal: RateLimitSignal, now: float) -> None:
        def change(state: QuotaState) -> None:
            if signal.policy is not None and signal.policy != state.learned:
                state.learned = signal.policy
            active = lower_quota(self.policy, state.learned)
            spent = signal.remaining is not None and signal.remaining <= 0
            if spent and signal.reset_s and signal.policy is None:
                pause_state(
                    state,
                    until=now + signal.reset_s,
                    reason=f"quota spent ({signal.source})",
                    policy=active,
                )
            # A spent service limit that is not the one paced by stops everyone too.
            waits = signal.spent_waits(include_binding=False)
            if waits:
                name, wait = max(waits, key=lambda w: w[1])
                pause_state(state, until=now + wait, reason=f"quota spent ({name})", policy=active)
            learning.cap_by_remaining(state, signal, active, now=now)

        self.store.apply(self.key, now, change)

    def _log_change(self, change: learning.Change) -> None:
        quota = change.learned.describe() if change.learned else "the ceiling"
        ceiling = self.policy.describe() if self.policy else "none"
        logger.warning(
            "quota in force for %s: %s; evidence: %s; ceiling: %s",
            self.key.split("|")[0],
            quota,
            change.evidence,
            ceiling,
        )
