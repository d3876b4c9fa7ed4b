"""What servers say about their quota, read into a ``RateLimitSignal``.

Three dialects share this module (a provider with its own header, such as Binance's used
weight, builds its signal in its adapter):

- the IETF draft ``RateLimit-Policy`` / ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers),
  drafts 07 to 10. ``RateLimit-Policy`` is a List of policies: draft 07 writes each as its quota
  with a window (``100;w=60, 1000;w=3600``), drafts 08-10 as a named item with parameters
  (``"burst";q=100;w=60, "daily";q=1000;w=86400``; ``qu`` the quota unit, default "requests";
  ``w`` OPTIONAL, and with none the quota has no time window: it is still the limit, but no
  rate to pace by). ``RateLimit`` is a List of service limits, each naming its policy
  (``"daily";r=0;t=3000``: r remaining units, REQUIRED; t seconds until more are made
  available); draft 07 wrote it as a Dictionary (``limit=100, remaining=50, reset=30``,
  remaining OPTIONAL). Every policy is kept; the one that binds (the lowest request
  rate over a window of at most an hour) is the quota to pace by, and a spent one of any
  window stops every process until its reset; a quota counted in another unit (content-bytes,
  concurrent-requests) is never read as a request quota; unknown parameters (``burst=``,
  ``acme-burst=``) are comments, not promises, and are ignored. Malformed fields are ignored
  as a whole (the draft's "MUST be ignored").
- the de-facto ``X-RateLimit-Limit/-Remaining/-Reset`` family (GitHub and many others), and
  the IETF drafts' own early ``RateLimit-Limit/-Remaining/-Reset`` fields (drafts 00-06).
  Reset is seconds-from-now for some servers and an epoch time for others (GitHub: "the time
  at which the current rate limit window resets in UTC epoch seconds"); the window itself is
  never stated, so the pacer learns it from consecutive resets. Drafts 01-03 may state it:
  ``RateLimit-Limit`` is a List whose first member is the expiring limit (the limit that
  remaining and reset count down) and whose other members are quota policies
  (``RateLimit-Limit: 10, 10;w=1, 1000;w=3600``); with no ``RateLimit-Policy`` those
  policies are kept and the binding one is paced by, as above (drafts 04-06 moved them to
  ``RateLimit-Policy``, read above).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.structured import (
    Item,
    StructuredFieldError,
    parse_dictionary,
    parse_list,
)

EPOCH_THRESHOLD = 1_000_000_000  # a "reset" above this is a Unix time, not seconds-from-now
REQUEST_UNITS = frozenset({"requests", "request"})  # draft 08-09 spell it one way, 10 the other
SOURCE_POLICY = "RateLimit-Policy"
SOURCE_LIMIT = "RateLimit-Limit"  # drafts 01-03 stated their quota policies there
PACED_WINDOW_MAX_S = 3600.0  # policies over longer windows are counted, not paced


@dataclass(frozen=True)
class PolicyItem:
    """One quota policy from ``RateLimit-Policy`` (or a drafts 01-03 ``RateLimit-Limit``):
    ``quota`` units per ``window_s`` (None: a quota with no time window), counted in
    ``unit``."""

    name: str | None
    quota: float
    window_s: float | None
    unit: str = "requests"

    @property
    def counts_requests(self) -> bool:
        return self.unit in REQUEST_UNITS


@dataclass(frozen=True)
class ServiceLimit:
    """One item of ``RateLimit``: ``remaining`` units of the named policy, more of them made
    available in ``reset_s`` seconds (either None: not said; draft 07 made remaining
    OPTIONAL)."""

    policy: str | None
    remaining: float | None
    reset_s: float | None


@dataclass(frozen=True)
class RateLimitSignal:
    """What one response said about the quota. Every field may be unknown.

    ``limit``/``remaining``/``reset_s`` describe the quota that binds (the one to pace by;
    in the drafts 01-03 form, the expiring limit, which the server picks as the one "closer
    to reach its limit"); ``policy`` is the quota to pace by when the server stated it with
    its window; ``used`` and ``window_s`` come from a used-units header (Binance's used
    weight), whose limit the client must know or learn; ``reset_at`` is the epoch of the
    reset when the server gave one (the window is learned from two of them); ``policies`` and
    ``limits`` are every IETF policy and service limit, so a spent policy that does not bind
    still stops the client.
    """

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None  # seconds from now until the quota is replenished
    policy: QuotaPolicy | None = None
    source: str = ""
    used: float | None = None
    window_s: float | None = None
    reset_at: float | None = None
    policies: tuple[PolicyItem, ...] = ()
    limits: tuple[ServiceLimit, ...] = ()
    binding: str | None = None  # the name of the policy ``policy`` came from

    def spent_waits(self, *, include_binding: bool) -> list[tuple[str, float]]:
        """(policy, seconds) for each service limit with nothing left and a reset given;
        ``include_binding=False`` leaves out the policy we pace by (under a token bucket a
        paced client sees r=0 all the time, and its pacing already waits for the next unit)."""
        spent = []
        for item in self.limits:
            if item.remaining is None or item.remaining > 0 or not item.reset_s:
                continue
            if not include_binding and self.binding is not None and item.policy == self.binding:
                continue
            spent.append((f'"{item.policy}"' if item.policy else "RateLimit", item.reset_s))
        return spent


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _first_number(value: str | None) -> float | None:
    """``RateLimit-Limit: 100, 100;w=60`` (drafts 03-06): the first member's number."""
    if value is None:
        return None
    return _number(value.split(",")[0].split(";")[0])


def reset_to_seconds(value: float, *, now_epoch: float) -> float:
    """``X-RateLimit-Reset`` is seconds-from-now for some providers, a Unix time (s or ms) for
    others: a value past 2001-09-09 cannot be a sensible delay, so it is read as an epoch."""
    epoch = reset_epoch(value)
    return max(0.0, (epoch - now_epoch) if epoch is not None else value)


def reset_epoch(value: float) -> float | None:
    """The Unix time a reset value names, or None when it is a delay."""
    if value >= EPOCH_THRESHOLD * 1000:
        return value / 1000.0  # epoch milliseconds
    return value if value >= EPOCH_THRESHOLD else None


def _positive(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 else None


def _non_negative(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


def parse_policies(value: str) -> tuple[PolicyItem, ...]:
    """Every quota policy of a ``RateLimit-Policy`` value (drafts 07-10); () if malformed."""
    try:
        members = parse_list(value)
    except StructuredFieldError:
        return ()
    policies = []
    for member in members:
        policy = _policy_item(member)
        if policy is not None:
            policies.append(policy)
    return tuple(policies)


def _policy_item(member: Item) -> PolicyItem | None:
    params = member.params
    unit = params.get("qu", "requests")
    if not isinstance(unit, str):
        return None
    window = _positive(params.get("w")) if "w" in params else None
    if "w" in params and window is None:
        return None  # a window that is not a positive number: malformed, not "no window"
    if isinstance(member.value, int | float) and not isinstance(member.value, bool):
        # Draft 07: the item is the quota itself and w is REQUIRED.
        quota = _non_negative(member.value)
        if quota is None or window is None:
            return None
        return PolicyItem(None, quota, window, unit)
    if isinstance(member.value, str):
        # Drafts 08-10: a named policy; q is REQUIRED, w OPTIONAL (no window: none applies).
        quota = _non_negative(params.get("q"))
        if quota is None:
            return None
        return PolicyItem(str(member.value), quota, window, unit)
    return None


def parse_limit_policies(value: str) -> tuple[PolicyItem, ...]:
    """The quota policies after the expiring limit in a drafts 01-03 ``RateLimit-Limit``
    (``100, 100;w=10``); () if the field is malformed or has none. Draft 03, section 5.1
    (https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-03): "The
    first member is named `expiring-limit` and its syntax is `service-limit`, while the
    syntax of the other optional members is `quota-policy`"; section 2.3: "The REQUIRED "w"
    parameter specifies a time window" (an item without one is malformed and dropped) and
    "Other parameters are allowed and can be regarded as comments" (there is no quota unit
    parameter before draft 08: every unit is a request)."""
    try:
        members = parse_list(value)
    except StructuredFieldError:
        return ()
    policies = []
    for member in members[1:]:
        quota = None if isinstance(member.value, bool) else _non_negative(member.value)
        window = _positive(member.params.get("w"))
        if quota is not None and window is not None:  # else malformed: that item is ignored
            policies.append(PolicyItem(None, quota, window))
    return tuple(policies)


def parse_service_limits(value: str) -> tuple[tuple[ServiceLimit, ...], float | None]:
    """The service limits of a ``RateLimit`` value, and draft 07's ``limit`` if it used that
    form. Drafts 08-10: a List of items naming a policy; draft 07: a Dictionary."""
    try:
        items = parse_list(value)
    except StructuredFieldError:
        items = None
    if items is not None:
        limits = []
        for item in items:
            if not isinstance(item.value, str):
                continue
            remaining = _non_negative(item.params.get("r"))
            if remaining is None:
                # Draft 10, section 4.1 (Service Limit Item): "r: This REQUIRED parameter
                # value conveys the remaining quota units for the identified policy", and
                # section 7 (Client Behavior): "Malformed RateLimit header fields MUST be
                # ignored" (draft 09 says the same; https://datatracker.ietf.org/doc/html/
                # draft-ietf-httpapi-ratelimit-headers-10). Its example `RateLimit: quota;t=1`
                # (appendix B.3.1) is not normative: a `t` alone is no service limit.
                continue
            reset = _non_negative(item.params.get("t")) if "t" in item.params else None
            limits.append(ServiceLimit(str(item.value), remaining, reset))
        return tuple(limits), None
    try:
        members = parse_dictionary(value)
    except StructuredFieldError:
        return (), None
    limit = _non_negative(members["limit"].value) if "limit" in members else None
    remaining = _non_negative(members["remaining"].value) if "remaining" in members else None
    reset = _non_negative(members["reset"].value) if "reset" in members else None
    if remaining is None and reset is None:
        return (), limit
    # Draft 07, section 3.1 (https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-
    # ratelimit-headers-07): "The OPTIONAL "remaining" key value conveys the remaining quota
    # units" and "The REQUIRED "reset" key value conveys the time window reset time": its
    # `limit=10, reset=1` (appendix B.3.1) still says when more quota comes.
    return (ServiceLimit(None, remaining, reset),), limit


def binding_policy(policies: tuple[PolicyItem, ...]) -> PolicyItem | None:
    """The request policy to pace by: of those with a window of at most an hour, the one that
    allows the lowest rate (paced by it, a client stays inside every other short one too, see
    ``QuotaPolicy.paced``). A longer one (a daily quota) is spent as needed, not spread over
    its day: its service limit's ``r=0;t=`` stops every process until it resets. Only when
    every policy is that long does the lowest rate among them set the pace."""
    paced = [p for p in policies if p.counts_requests and p.window_s and p.quota > 0]
    short = [p for p in paced if (p.window_s or 0) <= PACED_WINDOW_MAX_S] or paced
    return min(short, key=lambda p: p.quota / (p.window_s or 1.0), default=None)


def windowless_quota(policies: tuple[PolicyItem, ...]) -> PolicyItem | None:
    """The request policy stated without a window (drafts 08-10: "The OPTIONAL "w" parameter
    value conveys a time window"), the smallest if several: it is the limit when no windowed
    policy binds, but states no rate, so nothing is paced by it (the learner may still infer
    a window from consecutive resets, as the draft's own `quota;q=10` with `quota;t=1`
    example reads "10 quota units per second")."""
    unbounded = [p for p in policies if p.counts_requests and p.window_s is None]
    return min(unbounded, key=lambda p: p.quota, default=None)


def parse_rate_limit_headers(
    headers: Mapping[str, str], *, now_epoch: float | None = None
) -> RateLimitSignal | None:
    """Read the IETF draft fields and the ``X-RateLimit-*`` family (see the module docstring).

    Headers are matched case-insensitively; anything unparseable is ignored, never trusted."""
    h = {k.lower(): v for k, v in headers.items()}
    now_epoch = time.time() if now_epoch is None else now_epoch
    sources: list[str] = []
    policies: tuple[PolicyItem, ...] = ()
    limits: tuple[ServiceLimit, ...] = ()
    policy = binding = named = None
    limit = remaining = reset_s = reset_at = None
    if "ratelimit-policy" in h:
        policies = parse_policies(h["ratelimit-policy"])
        bind = binding_policy(policies)
        if bind is not None and bind.window_s:
            policy = QuotaPolicy(bind.quota, bind.window_s, 1, SOURCE_POLICY)
            binding, limit = bind.name, bind.quota
        elif (unbounded := windowless_quota(policies)) is not None:
            # Not ``binding``, which names the policy paced by (pacing already waits out its
            # r=0): nothing is paced by this one, so its r=0 must still stop every process.
            named, limit = unbounded.name, unbounded.quota
        if policies:
            sources.append(SOURCE_POLICY)
    # A malformed RateLimit-Policy is ignored as a whole: as good as absent.
    limit_policies = not policies and "ratelimit-limit" in h
    if limit_policies:
        policies = parse_limit_policies(h["ratelimit-limit"])
        bind = binding_policy(policies)
        if bind is not None and bind.window_s:
            policy = QuotaPolicy(bind.quota, bind.window_s, 1, SOURCE_LIMIT)
        if policies:
            sources.append(SOURCE_LIMIT)
    # The expiring limit the server states beside its policies (drafts 01-03: RateLimit-Limit's
    # first member; 04-06: RateLimit-Limit; 07: RateLimit's limit=): "the server artificially
    # lowers the actual limits".
    stated = _first_number(h.get("ratelimit-limit")) if policies else None
    if "ratelimit" in h:
        limits, dict_limit = parse_service_limits(h["ratelimit"])
        stated = dict_limit if dict_limit is not None else stated
        limit = limit if limit is not None else dict_limit
        named = binding if binding is not None else named
        mine = [s for s in limits if named is not None and s.policy == named]
        current = mine[0] if mine else (limits[0] if len(limits) == 1 else None)
        if current is not None:
            remaining, reset_s = current.remaining, current.reset_s
            by_name = {p.name: p for p in policies if p.name}
            reported = by_name.get(current.policy) if current.policy else None
            if not mine and reported is not None:
                # It reports another policy than the one paced by: limit, remaining and reset
                # are all that policy's, never one policy's limit with another's remaining.
                limit = reported.quota
        if limits:
            sources.append("RateLimit")
    if stated is not None:
        limit = stated
    if (
        policy is not None
        and stated is not None
        and 0 < stated < policy.limit
        and all(p.quota != stated for p in policies)
    ):
        # A limit below every policy's quota is the server lowering it (not another policy's
        # expiring limit): it wins at once, over the policy's window.
        policy = QuotaPolicy(stated, policy.window_s, 1, policy.source)
    for prefix in ("x-ratelimit-", "ratelimit-"):
        if limit is None:
            limit = _first_number(h.get(prefix + "limit"))
        if remaining is None and (value := _number(h.get(prefix + "remaining"))) is not None:
            remaining = value
            sources.append(prefix + "remaining")
        if reset_s is None and (value := _number(h.get(prefix + "reset"))) is not None:
            reset_at = reset_epoch(value)
            reset_s = reset_to_seconds(value, now_epoch=now_epoch)
    if limit_policies and policy is not None and remaining is not None and not limits:
        # RateLimit-Remaining/-Reset count the expiring limit, not the policy paced by: kept
        # as its service limit (as draft 07's `RateLimit: limit=..` is) so that a spent one
        # still stops every process until its reset.
        limits = (ServiceLimit(None, remaining, reset_s),)
    if policy is None and not policies and limit is None and remaining is None and reset_s is None:
        return None
    return RateLimitSignal(
        limit=limit,
        remaining=remaining,
        reset_s=reset_s,
        policy=policy,
        source="+".join(sources) or "headers",
        reset_at=reset_at,
        policies=policies,
        limits=limits,
        binding=binding,
    )
