"""Exchange calendars' sessions in the simulator's units: epoch minutes and epoch days.

A symbol on an exchange calendar (``calendar="XNYS"``, from ``exchange_calendars``) trades in
the calendar's session minutes (open <= t < close; early closes, holidays, breaks and DST as
the calendar has them). ``data.py`` pages bars through them and ``actions.py`` dates corporate
actions on them.
"""

from __future__ import annotations

import bisect
import difflib
import threading
import warnings
from collections.abc import Sequence

__all__ = ["Sessions", "check_calendar", "sessions"]

# exchange_calendars builds a calendar for a date range; ours is the supported data range,
# narrowed to the calendar's own bounds (some only know their holidays from, or to, a year).
# Outside those bounds the symbol has no sessions, hence no bars.
_CALENDAR_FIRST_DAY = "1970-01-01"
_CALENDAR_LAST_DAY = "2099-12-31"  # the last day before walk.MAX_MINUTE
_NANOS_PER_MINUTE = 60_000_000_000


class Sessions:
    """The sessions of one exchange calendar.

    ``starts``/``ends``: the trading intervals ``[start, end)`` in epoch minutes, ascending; a
    session with a break (Hong Kong, Tokyo) is two intervals. ``days``/``opens``/``closes``:
    per session, its label (the trading date, in days since 1970-01-01; an Asian session may
    open the evening before its date in UTC) and its first and last-plus-one minute.

    Built once per calendar (about 0.1 s for 130 years of XNYS) and then only bisected: paging
    stays as fast as 24/7.
    """

    def __init__(self, name: str) -> None:
        # Imported here: exchange_calendars pulls in pandas, and only a simulator serving a
        # calendar symbol should pay for that.
        import exchange_calendars as xcals

        with warnings.catch_warnings():
            # exchange_calendars 4.13 still uses pandas APIs that pandas 3.1 deprecates
            # (Series.values, DatetimeIndex.weekday, ...): not ours to fix, and nothing a user
            # of the simulator can act on. Only the calendar's construction runs in here.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                default = xcals.get_calendar(name)
            except xcals.errors.InvalidCalendarName:
                known = xcals.get_calendar_names()
                raise ValueError(_unknown_calendar_message(name, known)) from None
            kind = type(default)
            first, last = _CALENDAR_FIRST_DAY, _CALENDAR_LAST_DAY
            if (bound := kind.bound_min()) is not None:
                first = max(first, bound.strftime("%Y-%m-%d"))
            if (bound := kind.bound_max()) is not None:
                last = min(last, bound.strftime("%Y-%m-%d"))
            cal = xcals.get_calendar(name, start=first, end=last)
            days = cal.sessions.values.astype("datetime64[D]").astype("int64").tolist()
        # The calendar's own int64 nanosecond arrays (UTC). A session without a break has NaT
        # (the smallest int64) there, which the bounds test below tells apart.
        starts: list[int] = []
        ends: list[int] = []
        opens = (cal.opens_nanos // _NANOS_PER_MINUTE).tolist()
        closes = (cal.closes_nanos // _NANOS_PER_MINUTE).tolist()
        intervals = zip(
            opens,
            (cal.break_starts_nanos // _NANOS_PER_MINUTE).tolist(),
            (cal.break_ends_nanos // _NANOS_PER_MINUTE).tolist(),
            closes,
            strict=True,
        )
        for open_, break_start, break_end, close in intervals:
            if open_ < break_start < break_end < close:
                starts += [open_, break_end]
                ends += [break_start, close]
            else:
                starts.append(open_)
                ends.append(close)
        self.name = name
        self.starts: Sequence[int] = starts
        self.ends: Sequence[int] = ends
        self.days: Sequence[int] = days
        self.opens: Sequence[int] = opens
        self.closes: Sequence[int] = closes

    def first_on_or_after(self, day: int) -> int | None:
        """The index of the first session dated ``day`` or later; None past the last one."""
        i = bisect.bisect_left(self.days, day)
        return i if i < len(self.days) else None

    def last_before(self, day: int) -> int | None:
        """The index of the last session dated before ``day``; None before the first one."""
        i = bisect.bisect_left(self.days, day) - 1
        return i if i >= 0 else None


def _unknown_calendar_message(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name.upper(), known, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (
        f"unknown exchange calendar {name!r}: {hint}use a name exchange_calendars knows, "
        f"e.g. XNYS, XNAS or XLON ({len(known)} in all: exchange_calendars.get_calendar_names())"
    )


_sessions_lock = threading.Lock()
_sessions_by_name: dict[str, Sessions] = {}


def sessions(name: str) -> Sessions:
    """The sessions of exchange calendar ``name``, built once per process."""
    # Under a lock: two first requests must not both spend 0.1 s building the same calendar.
    with _sessions_lock:
        found = _sessions_by_name.get(name)
        if found is None:
            found = _sessions_by_name[name] = Sessions(name)
        return found


def check_calendar(name: str) -> None:
    """Load exchange calendar ``name`` (cached); ``ValueError`` naming it if it is unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"exchange calendar must be a non-empty name, not {name!r}")
    sessions(name)
