"""When to try again: the server's ``Retry-After``, read as RFC 9110 §10.2.3 defines it.

``Retry-After = HTTP-date / delay-seconds`` and ``delay-seconds = 1*DIGIT``: ASCII digits only.
``-1``, ``+1``, ``1.0``, ``1e3`` and non-ASCII digits (``١``, which ``float()`` accepts) are not
delay-seconds, and the reference clients agree (urllib3's ``Retry.parse_retry_after`` matches
``^\\s*[0-9]+\\s*$``; httpx-retries likewise refuses anything else): they are invalid, like any
other garbage. A date is the IMF-fixdate or one of the two obsolete forms RFC 9110 still makes
recipients accept (rfc850, asctime), all of which ``email.utils`` reads.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime

# ASCII digits, explicitly: \d would also match other scripts' digits.
_DELAY_SECONDS = re.compile(r"[0-9]+")
# A delay longer than this is not a delay a server means (and would overflow a datetime).
_MAX_DELAY_S = 10 * 365 * 86400


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After``: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    None if absent or invalid. A date in the past gives 0.0; callers treat 0 like no value
    (RFC 9110 does not make "0" mean "now, hammer me": it is no usable hint, so back off)."""
    if value is None:
        return None
    value = value.strip(" \t")
    if _DELAY_SECONDS.fullmatch(value):
        return float(min(int(value), _MAX_DELAY_S))
    if not value or not value[0].isalpha() or not value.isascii():
        return None  # every HTTP-date form starts with a day name
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # asctime carries no zone; HTTP-dates are GMT
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, min(seconds, float(_MAX_DELAY_S)))


def usable_wait(seconds: float | None) -> float | None:
    """A server-given wait worth obeying: positive. Zero (or a date already past) is no hint,
    and a 429 answered with no wait is retried after backoff or the quota window, never at
    once."""
    return seconds if seconds is not None and seconds > 0 else None
