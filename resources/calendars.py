"""Exchange sessions: which UTC minutes and hours can hold bars, per calendar.

A calendar is ``24/7`` (crypto: every minute) or a calendar of ``exchange_calendars``
(``XNYS``, ``XNAS``, ``XLON``, ``24/5`` ...; ``SUPPORTED_CALENDARS``): sessions with their real
opens and closes, so holidays, early closes (2026-11-27 closes at 13:00 New York) and DST changes
are what the exchange says.

Sessions are computed from the start of a source's partitions through ``sessions_horizon``: a
fixed date (``SESSIONS_THROUGH``), not one that moves with the year the code location loads in,
so every load until then builds the same partitions and reads the same cache file. Dagster's
time-window partitions end at "now" by themselves; the sessions only have to reach past now
for as long as a process may live, and a far horizon is not free (every datetime exclusion
slows Dagster's partition lookups), hence a fixed date a few years out rather than decades.
From the year of that date on, the horizon is the end of the following year instead, so a code
location loaded in 2030 or 2040 is still right (only no longer the same every year).

``exchange_calendars`` costs about a second to import (pandas), and every process that loads
the definitions (code server, each run worker, the daemon) needs the sessions: so the sessions
of a calendar are computed once, written to a small JSON file in a cache directory (under
``DAGSTER_HOME`` or ``FIN_DATA_DIR``, never in the checkout, which may be read-only), and read
from there afterwards. The file's name carries the library's version and the range, so a new
release (new holidays) computes them again. A cache that cannot be written costs that second
in every process, never the load.
"""

from __future__ import annotations

import bisect
import json
import logging
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path

from resources.errors import InvalidInputError
from resources.storage.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

TWENTY_FOUR_SEVEN = "24/7"
# The horizon of every calendar's sessions (sessions_horizon): about five years past the
# exchange_calendars release pinned in pyproject.toml (4.13, 2026). Raise it with that pin.
SESSIONS_THROUGH = date(2030, 12, 31)
# The calendars a source may name: those of exchange_calendars (its aliases too, e.g. XNAS and
# NYSE for XNYS) whose sessions it computes from SUPPORTED_FROM through SESSIONS_THROUGH with no
# session crossing midnight UTC, checked against exchange_calendars SUPPORTED_VERSION (on
# pandas 3.1) by tests/unit/test_calendars.py. Left out, and why (the load says why, naming
# the calendar):
# - sessions crossing midnight UTC (daily partitions are UTC days): XASX/ASX, XNZE, CMES/CME/
#   CBOT/COMEX/NYMEX, us_futures;
# - holidays recorded only until before SESSIONS_THROUGH: XBOM/BSE, XSES, XSHG/SSE (2026),
#   XSAU (2029);
# - the library fails to build them on pandas 3: ASEX, XBEL, XBSE/BVB, XCYS (Orthodox Easter),
#   XTAE/TASE (a special close on a day that is not a session).
# A constant rather than asked of the library: the schema `dg check yaml` validates against
# lists them (fin_assets/lib/components.py), and importing the library costs a second.
_EXCHANGE_CALENDARS = """
    24/5 AIXK ARCX BATS BMF BVMF CFE FWB HKEX ICE ICEUS IEPA JKT JPX LSE LUXSE NASDAQ NYFE NYSE
    OOTC OSE SIX TSX XAMS XASE XBDA XBKK XBOG XBRA XBRU XBUD XBUE XCBF XCSE XDUB XDUS XEEE XETR
    XEUR XFRA XHAM XHEL XHKG XICE XIDX XIST XJSE XKAR XKLS XKRX XLIM XLIS XLIT XLJU XLON XLUX
    XMAD XMEX XMIL XMOS XNAS XNYS XOSL XPAR XPHS XPRA XRIS XSGO XSTO XSTU XSWX XTAI XTAL XTKS
    XTSE XTSX XWAR XWBO XZAG
"""
SUPPORTED_CALENDARS: tuple[str, ...] = (TWENTY_FOUR_SEVEN, *_EXCHANGE_CALENDARS.split())
SUPPORTED_FROM = date(2026, 1, 1)  # the default start of a source's partitions
SUPPORTED_VERSION = "4.13.2"  # the exchange_calendars SUPPORTED_CALENDARS was checked against
_SUPPORTED = frozenset(SUPPORTED_CALENDARS)
# Per process: each calendar and range read (or computed) once per cache directory.
_LOADED: dict[tuple[str, date, date, Path | None], Sessions] = {}
_UNCACHED: set[Path] = set()  # cache directories already reported as unwritable
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


def sessions_horizon(today: date) -> date:
    """The last day of the sessions of a code location loaded on ``today``:
    ``SESSIONS_THROUGH`` for every load before its year (nothing depends on the year), the end
    of the following year from then on, so a process always has a year of sessions ahead."""
    return max(SESSIONS_THROUGH, date(today.year + 1, 12, 31))


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
    """Cron strings for what is closed every time over the whole range, then each remaining
    closed slot as a datetime.

    Cron strings: the weekdays never open; for hourly partitions also the hours of the day
    never open, and the hours never open in some months (13:00 UTC is closed in winter at
    XNYS, 20:00 in summer: the DST hours). Every datetime exclusion costs Dagster time on each
    partition lookup (it scans and sorts them), so the month crons, which take about two
    thirds of XNYS's datetimes away, are what lets the horizon be years ahead."""
    never_days = sorted({s.weekday() for s in slots} - {s.weekday() for s in open_slots})
    crons: list[str | datetime] = []
    closed_months: dict[int, tuple[int, ...]] = {}  # hour of day -> months it is never open
    if hourly:
        seen = {(s.hour, s.month) for s in slots}
        opened = {(s.hour, s.month) for s in open_slots}
        by_hour: dict[int, list[int]] = {}
        for hour, month in sorted(seen - opened):
            by_hour.setdefault(hour, []).append(month)
        every_month = tuple(sorted({s.month for s in slots}))
        # Hours closed in the same months share a cron: XNYS has "0 0,1,...,12,21,22,23 * * *"
        # (never open), "0 13 * 1,2,12 *" and "0 20 * 4,5,6,7,8,9,10 *".
        by_months: dict[tuple[int, ...], list[int]] = {}
        for hour, closed in by_hour.items():
            closed_months[hour] = tuple(closed)
            by_months.setdefault(tuple(closed), []).append(hour)
        for months, hours in sorted(by_months.items(), key=lambda item: item[0] != every_month):
            month_field = "*" if months == every_month else ",".join(map(str, months))
            crons.append(f"0 {','.join(map(str, hours))} * {month_field} *")
    if never_days:
        # cron counts days from Sunday = 0; Python's weekday() from Monday = 0.
        dows = ",".join(str((d + 1) % 7) for d in never_days)
        crons.append(f"0 {'*' if hourly else '0'} * * {dows}")
    rest = [  # the crons' tests first: they are cheaper than hashing an aware datetime
        s
        for s in slots
        if s.weekday() not in never_days
        and s.month not in closed_months.get(s.hour, ())
        and s not in open_slots
    ]
    return [*crons, *rest]


def calendar_version() -> str:
    try:
        return metadata.version("exchange_calendars")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency of the project
        return "unknown"


def load_sessions(name: str, *, first: date, last: date, cache_dir: Path | None) -> Sessions:
    """The sessions of calendar ``name`` over ``[first, last]``: from the cache file in
    ``cache_dir`` when it has them, else computed with exchange_calendars and written there.
    ``cache_dir`` None, or a directory that cannot be written (a read-only file system, no
    permission): computed in this process and kept in memory, logged once per directory."""
    if name == TWENTY_FOUR_SEVEN:
        return Sessions(name, first, last)
    validate_calendar_name(name)
    # Sources on one calendar share one read (ten XNYS sources load it once per process).
    sessions = _LOADED.get((name, first, last, cache_dir))
    if sessions is not None:
        return sessions
    # "24/5" has a slash, which a file name cannot.
    file_name = f"{name.replace('/', '_')}-{calendar_version()}-{first}-{last}.json"
    path = cache_dir / file_name if cache_dir is not None else None
    try:
        if path is None:
            raise FileNotFoundError
        sessions = Sessions.from_json(path.read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        sessions = compute_sessions(name, first=first, last=last)
        if path is not None:
            _write_cache(path, sessions)
    _LOADED[(name, first, last, cache_dir)] = sessions
    return sessions


def _write_cache(path: Path, sessions: Sessions) -> None:
    try:
        atomic_write_bytes(path, sessions.to_json())
    except OSError as exc:
        if path.parent not in _UNCACHED:
            _UNCACHED.add(path.parent)
            log.warning(
                "calendar sessions not cached: cannot write %s (%s); every process computes "
                "them again (about a second each): point DAGSTER_HOME or FIN_DATA_DIR at a "
                "writable directory",
                path.parent,
                exc.strerror or exc,
            )


def validate_calendar_name(name: str) -> str:
    """``name`` if a source may use it (``SUPPORTED_CALENDARS``), else an InvalidInputError
    saying why not (asking exchange_calendars, so only on this error path)."""
    if name in _SUPPORTED:
        return name
    examples = "'24/7', XNYS, XNAS, XLON, XTKS, ... (SUPPORTED_CALENDARS in resources/calendars.py)"
    reason = unsupported_reason(name) if isinstance(name, str) else None
    if reason is None:
        raise InvalidInputError(f"unknown calendar {name!r}: use {examples}")
    raise InvalidInputError(f"calendar {name!r} is not supported: {reason}; use {examples}")


def unsupported_reason(name: str) -> str | None:
    """Why exchange_calendars' calendar ``name`` is not in ``SUPPORTED_CALENDARS``; None if the
    library does not know it."""
    import exchange_calendars

    known = exchange_calendars.get_calendar_names(include_aliases=True)
    if name not in known:
        return None
    try:
        compute_sessions(name, first=SUPPORTED_FROM, last=SESSIONS_THROUGH)
    except InvalidInputError as exc:
        return str(exc).removeprefix(f"calendar {name}: ")
    return (
        f"it is not in the list checked against exchange_calendars {SUPPORTED_VERSION} "
        f"(this is {calendar_version()}): check it over {SUPPORTED_FROM}..{SESSIONS_THROUGH} "
        "and add it to SUPPORTED_CALENDARS"
    )


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
        raise InvalidInputError(
            f"unknown calendar {name!r}: use '24/7' or an exchange code such as XNYS"
        ) from None
    except Exception as exc:  # the library's own refusals, and its failures on pandas 3
        reason = f"{type(exc).__name__}: {exc}".strip()
        raise InvalidInputError(
            f"calendar {name}: exchange_calendars {calendar_version()} cannot compute its "
            f"sessions over {first}..{last} ({reason})"
        ) from None
    schedule = calendar.schedule
    opens = tuple(ts.to_pydatetime().astimezone(UTC) for ts in schedule["open"])
    closes = tuple(ts.to_pydatetime().astimezone(UTC) for ts in schedule["close"])
    for o, c in zip(opens, closes, strict=True):
        if o.date() != (c - timedelta(microseconds=1)).date():
            raise InvalidInputError(
                f"calendar {name}: its sessions cross midnight UTC (the session of "
                f"{c:%Y-%m-%d} is {o:%H:%M}..{c:%H:%M} UTC) and daily partitions are UTC days"
            )
    return Sessions(name, first, last, opens, closes)
