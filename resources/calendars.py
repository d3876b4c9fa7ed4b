"""Exchange sessions: which UTC minutes and hours can hold bars, per calendar.

A calendar is ``24/7`` (crypto: every minute) or an exchange code of ``exchange_calendars``
(``XNYS``, ``XNAS``, ``XLON``, ...): sessions with their real opens and closes, so holidays,
early closes (2026-11-27 closes at 13:00 New York) and DST changes are what the exchange says.

``exchange_calendars`` costs about a second to import (pandas), and every process that loads
the definitions (code server, each run worker, the daemon) needs the sessions: so the sessions
of a calendar are computed once, written to a small JSON file in a cache directory, and read
from there afterwards. The file's name carries the library's version and the range, so a new
release (new holidays) or a new year computes them again.
"""

from __future__ import annotations

import bisect
import json
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path

from resources.errors import InvalidInputError
from resources.storage.atomic import atomic_write_bytes

TWENTY_FOUR_SEVEN = "24/7"
_LOADED: dict[Path, Sessions] = {}  # per process: the cache file read once
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_CALENDAR_NAME = re.compile(r"^[A-Z0-9]{3,6}$")


@dataclass(frozen=True)
class Sessions:
    """The sessions of one calendar over ``[first, last]`` (dates), as UTC open/close pairs.
    ``24/7`` has none: it is always open."""

    name: str
    first: date
    last: date
    opens: tuple[datetime, ...] = ()
    closes: tuple[datetime, ...] = ()

    @property
    def always_open(self) -> bool:
        return self.name == TWENTY_FOUR_SEVEN

    def intervals(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The open parts of ``[start, end)``."""
        if self.always_open:
            return [(start, end)] if start < end else []
        # Sessions are sorted and disjoint: the first that may overlap closes after start.
        index = bisect.bisect_right(self.closes, start)
        found = []
        while index < len(self.opens) and self.opens[index] < end:
            lo, hi = max(start, self.opens[index]), min(end, self.closes[index])
            if lo < hi:
                found.append((lo, hi))
            index += 1
        return found

    def open_minutes(self, start: datetime, end: datetime) -> int:
        return sum((hi - lo) // timedelta(minutes=1) for lo, hi in self.intervals(start, end))

    def is_open_during(self, start: datetime, end: datetime) -> bool:
        return bool(self.intervals(start, end))

    def longest_closure(self) -> timedelta:
        """The longest time between a close and the next open (a long weekend)."""
        if self.always_open or len(self.opens) < 2:
            return timedelta(0)
        return max(o - c for c, o in zip(self.closes, self.opens[1:], strict=False))

    # -- Dagster partitions, as exclusions (cron strings for the regular closed hours and days,
    # datetimes for the rest: holidays, early closes, the hour DST moves) --------------------
    def hourly_exclusions(self) -> list[str | datetime]:
        if self.always_open:
            return []
        hours = _range(datetime.combine(self.first, datetime.min.time(), UTC), self._end(), _HOUR)
        return _exclusions(hours, self._open_slots(_HOUR), hourly=True)

    def daily_exclusions(self) -> list[str | datetime]:
        if self.always_open:
            return []
        days = _range(datetime.combine(self.first, datetime.min.time(), UTC), self._end(), _DAY)
        return _exclusions(days, self._open_slots(_DAY), hourly=False)

    def _open_slots(self, step: timedelta) -> set[datetime]:
        """The starts of the hours (or days) that hold some session time, session by session."""
        slots = set()
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        for opened, closed in zip(self.opens, self.closes, strict=True):
            slot = epoch + ((opened - epoch) // step) * step
            while slot < closed:
                slots.add(slot)
                slot += step
        return slots

    def _end(self) -> datetime:
        return datetime.combine(self.last, datetime.min.time(), UTC) + _DAY

    # -- the cache file --------------------------------------------------------------------
    def to_json(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "first": self.first.isoformat(),
                "last": self.last.isoformat(),
                "sessions": [
                    [o.isoformat(), c.isoformat()]
                    for o, c in zip(self.opens, self.closes, strict=True)
                ],
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Sessions:
        raw = json.loads(data)
        pairs = [(datetime.fromisoformat(o), datetime.fromisoformat(c)) for o, c in raw["sessions"]]
        return cls(
            raw["name"],
            date.fromisoformat(raw["first"]),
            date.fromisoformat(raw["last"]),
            tuple(o for o, _ in pairs),
            tuple(c for _, c in pairs),
        )


def _range(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    out = []
    while start < end:
        out.append(start)
        start += step
    return out


def _exclusions(
    slots: list[datetime], open_slots: set[datetime], *, hourly: bool
) -> list[str | datetime]:
    """Cron strings for the hours of the day and the weekdays that are never open, then each
    remaining closed slot as a datetime."""
    never_hours = sorted({s.hour for s in slots} - {s.hour for s in open_slots}) if hourly else []
    never_days = sorted({s.weekday() for s in slots} - {s.weekday() for s in open_slots})
    crons: list[str | datetime] = []
    if never_hours:
        crons.append(f"0 {','.join(map(str, never_hours))} * * *")
    if never_days:
        # cron counts days from Sunday = 0; Python's weekday() from Monday = 0.
        dows = ",".join(str((d + 1) % 7) for d in never_days)
        crons.append(f"0 {'*' if hourly else '0'} * * {dows}")
    rest = [
        s
        for s in slots
        if s not in open_slots and s.hour not in never_hours and s.weekday() not in never_days
    ]
    return [*crons, *rest]


def calendar_version() -> str:
    try:
        return metadata.version("exchange_calendars")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency of the project
        return "unknown"


def load_sessions(name: str, *, first: date, last: date, cache_dir: Path) -> Sessions:
    """The sessions of calendar ``name`` over ``[first, last]``: from the cache when it has
    them, else computed with exchange_calendars (and cached)."""
    if name == TWENTY_FOUR_SEVEN:
        return Sessions(name, first, last)
    validate_calendar_name(name)
    path = cache_dir / f"{name}-{calendar_version()}-{first.isoformat()}-{last.isoformat()}.json"
    # Sources on one calendar share one read (ten XNYS sources load it once per process).
    sessions = _LOADED.get(path)
    if sessions is not None:
        return sessions
    try:
        sessions = Sessions.from_json(path.read_bytes())
    except (FileNotFoundError, ValueError, KeyError):
        sessions = compute_sessions(name, first=first, last=last)
        atomic_write_bytes(path, sessions.to_json())
    _LOADED[path] = sessions
    return sessions


def validate_calendar_name(name: str) -> str:
    if name != TWENTY_FOUR_SEVEN and not _CALENDAR_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid calendar {name!r}: expected '24/7' or an exchange code such as XNYS"
        )
    return name


def compute_sessions(name: str, *, first: date, last: date) -> Sessions:
    """From exchange_calendars (imported here: it costs about a second)."""
    with warnings.catch_warnings():
        # exchange_calendars 4.13 on pandas 3 warns of pandas 4 deprecations: not our code.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return _compute_sessions(name, first=first, last=last)


def _compute_sessions(name: str, *, first: date, last: date) -> Sessions:
    import exchange_calendars

    try:
        calendar = exchange_calendars.get_calendar(
            name, start=first.isoformat(), end=last.isoformat()
        )
    except exchange_calendars.errors.InvalidCalendarName:
        known = ", ".join(sorted(exchange_calendars.get_calendar_names(include_aliases=False))[:12])
        raise InvalidInputError(
            f"unknown calendar {name!r}: use '24/7' or an exchange code ({known}, ...)"
        ) from None
    schedule = calendar.schedule
    opens = tuple(ts.to_pydatetime().astimezone(UTC) for ts in schedule["open"])
    closes = tuple(ts.to_pydatetime().astimezone(UTC) for ts in schedule["close"])
    for o, c in zip(opens, closes, strict=True):
        if o.date() != (c - timedelta(microseconds=1)).date():
            raise InvalidInputError(
                f"calendar {name}: the session of {o:%Y-%m-%d} crosses midnight UTC "
                f"({o:%H:%M}..{c:%H:%M} UTC); daily partitions are UTC days, so such calendars "
                "are not supported yet"
            )
    return Sessions(name, first, last, opens, closes)
