"""Calendars decide which hours are partitions, which minutes are expected, when a source is
stale and what the new-data sensor requests: a weekend, a holiday, an early close and both DST
changes, for an equities source (XNYS) and a crypto source (24/7). The sessions reach a horizon
that does not move with the year of the load, and are cached where a deployment can write (or
kept in memory); the calendars a source may name are those exchange_calendars can give."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.definitions.partitions.context import partition_loading_context

from fin_assets.lib.freshness import FreshnessSettings, freshness_policy_for
from fin_assets.lib.partitions import SourcePartitions, source_partitions
from fin_assets.lib.sensors import closed_hours, session_hour_keys
from resources.calendars import (
    SESSIONS_THROUGH,
    SUPPORTED_CALENDARS,
    SUPPORTED_FROM,
    SUPPORTED_VERSION,
    TWENTY_FOUR_SEVEN,
    calendar_version,
    compute_sessions,
    load_sessions,
    sessions_horizon,
    validate_calendar_name,
)
from resources.errors import InvalidInputError
from resources.quality import check_missing_minutes

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "calendars"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def xnys() -> SourcePartitions:
    sessions = load_sessions(
        "XNYS", first=date(2026, 1, 1), last=date(2027, 12, 31), cache_dir=CACHE
    )
    return source_partitions(sessions)


@pytest.fixture(scope="module")
def crypto() -> SourcePartitions:
    sessions = load_sessions(
        TWENTY_FOUR_SEVEN, first=date(2026, 1, 1), last=date(2027, 12, 31), cache_dir=CACHE
    )
    return source_partitions(sessions)


def hours(partitions: SourcePartitions, start: datetime, end: datetime) -> list[str]:
    return session_hour_keys(partitions, start, end)


# -- which hours are partitions (and so cost a request and a run) -------------------------------
@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # a weekend: nothing
        (date(2026, 1, 17), []),
        (date(2026, 1, 18), []),
        # Martin Luther King Jr. Day, an XNYS holiday
        (date(2026, 1, 19), []),
        # a winter session: 09:30-16:00 New York = 14:30-21:00 UTC
        (date(2026, 1, 20), [f"2026-01-20-{h}:00" for h in range(14, 21)]),
        # the day after Thanksgiving closes at 13:00 New York = 18:00 UTC
        (date(2026, 11, 27), [f"2026-11-27-{h}:00" for h in range(14, 18)]),
        # DST starts on Sunday 2026-03-08: Friday before at 14:30 UTC, Monday after at 13:30
        (date(2026, 3, 6), [f"2026-03-06-{h}:00" for h in range(14, 21)]),
        (date(2026, 3, 9), [f"2026-03-09-{h}:00" for h in range(13, 20)]),
        # DST ends on Sunday 2026-11-01: Friday before at 13:30 UTC, Monday after at 14:30
        (date(2026, 10, 30), [f"2026-10-30-{h}:00" for h in range(13, 20)]),
        (date(2026, 11, 2), [f"2026-11-02-{h:02d}:00" for h in range(14, 21)]),
    ],
)
def test_equities_partitions_are_session_hours(
    xnys: SourcePartitions, day: date, expected: list[str]
) -> None:
    start = datetime.combine(day, datetime.min.time(), UTC)
    assert hours(xnys, start, start + timedelta(days=1)) == expected
    daily = xnys.daily.get_partition_keys_in_time_window(
        dg.TimeWindow(start, start + timedelta(days=1))
    )
    assert daily == ([day.isoformat()] if expected else [])


@pytest.mark.parametrize(
    "day", [date(2026, 1, 17), date(2026, 1, 19), date(2026, 3, 8), date(2026, 11, 1)]
)
def test_crypto_partitions_are_every_hour(crypto: SourcePartitions, day: date) -> None:
    start = datetime.combine(day, datetime.min.time(), UTC)
    assert len(hours(crypto, start, start + timedelta(days=1))) == 24


# -- missing minutes count session minutes only -----------------------------------------------
def full_hour(start: datetime, *, minutes: range, symbol: str = "AAPL") -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": [symbol] * len(minutes), "ts": [start + timedelta(minutes=m) for m in minutes]},
        schema={"symbol": pl.String, "ts": pl.Datetime("us", "UTC")},
    )


@pytest.mark.parametrize(
    ("hour", "open_minutes"),
    [
        (utc(2026, 1, 20, 14), range(30, 60)),  # the opening hour: 14:30-14:59 UTC
        (utc(2026, 1, 20, 15), range(60)),
        (utc(2026, 11, 27, 17), range(60)),  # the early close's last hour
        (utc(2026, 3, 9, 13), range(30, 60)),  # after DST: opens at 13:30 UTC
        (utc(2026, 11, 2, 14), range(30, 60)),  # after DST ends: 14:30 UTC again
    ],
)
def test_missing_minutes_counts_only_session_minutes(
    xnys: SourcePartitions, hour: datetime, open_minutes: range
) -> None:
    end = hour + timedelta(hours=1)
    intervals = xnys.sessions.intervals(hour, end)
    outcome = check_missing_minutes(
        full_hour(hour, minutes=open_minutes),
        start=hour,
        end=end,
        symbols=["AAPL"],
        open_intervals=intervals,
    )
    assert outcome.passed, outcome.summary
    assert outcome.rows_checked == len(open_minutes)
    # a session minute missing is still found
    short = full_hour(hour, minutes=range(open_minutes.start + 1, open_minutes.stop))
    outcome = check_missing_minutes(
        short, start=hour, end=end, symbols=["AAPL"], open_intervals=intervals
    )
    assert not outcome.passed and outcome.failing_rows == 1


def test_missing_minutes_of_crypto_counts_every_minute(crypto: SourcePartitions) -> None:
    hour = utc(2026, 1, 17, 3)  # a Saturday night
    end = hour + timedelta(hours=1)
    intervals = crypto.sessions.intervals(hour, end)
    outcome = check_missing_minutes(
        full_hour(hour, minutes=range(30, 60), symbol="BTCUSD"),
        start=hour,
        end=end,
        symbols=["BTCUSD"],
        open_intervals=intervals,
    )
    assert not outcome.passed and outcome.failing_rows == 30


# -- freshness ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def last_partition_due(
    partitions: SourcePartitions, at: datetime, instance: dg.DagsterInstance
) -> str | None:
    """The partition Dagster's partition freshness check expects to have landed at ``at``."""
    with partition_loading_context(at, instance):
        window = partitions.hourly.get_last_partition_window()
    if window is None:
        return None
    return partitions.hourly.get_partition_key_for_timestamp(window.start.timestamp())


@pytest.mark.parametrize(
    ("at", "due"),
    [
        # Saturday noon and the holiday Monday: still Friday's last session hour, already in
        (utc(2026, 1, 17, 12), "2026-01-16-20:00"),
        (utc(2026, 1, 19, 18), "2026-01-16-20:00"),
        # Tuesday 15:20 UTC: the 14:00 hour (open 14:30) closed at 15:00 and is due
        (utc(2026, 1, 20, 15, 20), "2026-01-20-14:00"),
        # The early close: at 20:00 UTC the last due hour is 17:00 (close 18:00)
        (utc(2026, 11, 27, 20), "2026-11-27-17:00"),
        # DST: Monday 2026-03-09 at 14:20 UTC the 13:00 hour (open 13:30) is due
        (utc(2026, 3, 9, 14, 20), "2026-03-09-13:00"),
    ],
)
def test_equities_freshness_expects_only_session_hours(
    xnys: SourcePartitions, at: datetime, due: str, instance: dg.DagsterInstance
) -> None:
    assert last_partition_due(xnys, at, instance) == due


def test_crypto_freshness_expects_every_hour(
    crypto: SourcePartitions, instance: dg.DagsterInstance
) -> None:
    assert last_partition_due(crypto, utc(2026, 1, 17, 12, 20), instance) == "2026-01-17-11:00"


def test_the_asset_level_window_outlasts_the_longest_closure(
    xnys: SourcePartitions, crypto: SourcePartitions
) -> None:
    settings = FreshnessSettings(hourly_fail_minutes=90, hourly_warn_minutes=75)
    spec_x = dg.AssetSpec("x", partitions_def=xnys.hourly)
    spec_c = dg.AssetSpec("c", partitions_def=crypto.hourly)
    policy_x = freshness_policy_for(spec_x, settings, xnys)
    policy_c = freshness_policy_for(spec_c, settings, crypto)
    assert policy_c.fail_window.to_timedelta() == timedelta(minutes=90)
    # the longest XNYS closure in 2026-2027 is a holiday weekend of more than three days
    assert policy_x.fail_window.to_timedelta() >= timedelta(days=3, minutes=90)


# -- the new-data sensor requests session hours only ----------------------------------------------
@pytest.mark.parametrize(
    ("cursor", "latest", "now", "expected"),
    [
        # Friday's close seen on Monday (a holiday): Friday's last hours, nothing of the weekend
        (
            utc(2026, 1, 16, 18),
            utc(2026, 1, 16, 20, 59),
            utc(2026, 1, 19, 12),
            ["2026-01-16-18:00", "2026-01-16-19:00", "2026-01-16-20:00"],
        ),
        # over the weekend and the holiday: nothing at all
        (utc(2026, 1, 16, 21), utc(2026, 1, 16, 20, 59), utc(2026, 1, 19, 23), None),
        # the early close: hours up to 17:00, none after
        (
            utc(2026, 11, 27, 16),
            utc(2026, 11, 27, 17, 59),
            utc(2026, 11, 27, 23),
            ["2026-11-27-16:00", "2026-11-27-17:00"],
        ),
        # DST: Monday 2026-03-09 opens 13:30 UTC
        (
            utc(2026, 3, 6, 21),
            utc(2026, 3, 9, 14, 59),
            utc(2026, 3, 9, 15, 5),
            ["2026-03-09-13:00", "2026-03-09-14:00"],
        ),
        (
            utc(2026, 10, 30, 20),
            utc(2026, 11, 2, 15, 59),
            utc(2026, 11, 2, 16, 5),
            ["2026-11-02-14:00", "2026-11-02-15:00"],
        ),
    ],
)
def test_the_sensor_requests_session_hours_only(
    xnys: SourcePartitions,
    cursor: datetime,
    latest: datetime,
    now: datetime,
    expected: list[str] | None,
) -> None:
    window = closed_hours(latest_bar=latest, cursor=cursor, now=now, lookback_hours=48)
    keys = session_hour_keys(xnys, *window) if window else []
    assert (keys or None) == expected


def test_the_sensor_requests_every_crypto_hour(crypto: SourcePartitions) -> None:
    window = closed_hours(
        latest_bar=utc(2026, 1, 17, 5, 59),
        cursor=utc(2026, 1, 17, 2),
        now=utc(2026, 1, 17, 6, 5),
        lookback_hours=48,
    )
    assert window is not None
    assert session_hour_keys(crypto, *window) == [f"2026-01-17-0{h}:00" for h in range(2, 6)]


def test_an_unknown_calendar_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown calendar 'XNYZ'"):
        load_sessions("XNYZ", first=date(2026, 1, 1), last=date(2026, 12, 31), cache_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="unknown calendar 'New York'"):
        load_sessions(
            "New York", first=date(2026, 1, 1), last=date(2026, 12, 31), cache_dir=tmp_path
        )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("XASX", "its sessions cross midnight UTC (the session of 2026-01-02 is 23:00..05:00 UTC)"),
        ("ASX", "its sessions cross midnight UTC"),  # XASX's alias
        ("XBOM", "XBOM holidays are only recorded to the year 2026"),
        ("ASEX", "cannot compute its sessions over 2026-01-01..2030-12-31 (NotImplementedError"),
    ],
)
def test_an_unsupported_calendar_is_refused_saying_why(name: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        validate_calendar_name(name)
    assert str(error.value).startswith(f"calendar {name!r} is not supported: "), error.value
    assert reason in str(error.value), error.value


@pytest.mark.slow(12)
def test_the_supported_calendars_are_those_exchange_calendars_gives_to_the_horizon() -> None:
    """Every calendar of the library (aliases too) is supported exactly when the library
    computes its sessions over SUPPORTED_FROM..SESSIONS_THROUGH and none crosses midnight UTC:
    the list the schema of `dg check yaml` offers is what the load accepts."""
    import exchange_calendars

    assert calendar_version() == SUPPORTED_VERSION, (
        f"exchange_calendars is {calendar_version()}: check SUPPORTED_CALENDARS against it "
        "(this test says what changed) and set SUPPORTED_VERSION"
    )
    aliases = exchange_calendars.aliases_to_names()
    computes = set()
    for name in exchange_calendars.get_calendar_names(include_aliases=False):
        try:
            compute_sessions(name, first=SUPPORTED_FROM, last=SESSIONS_THROUGH)
        except InvalidInputError:
            continue
        computes.add(name)
    computes |= {alias for alias, name in aliases.items() if name in computes}
    assert set(SUPPORTED_CALENDARS) == computes | {TWENTY_FOUR_SEVEN}


# -- the horizon: fixed for years, so a load on 1 January builds what one on 31 December did ----
@pytest.mark.parametrize(
    "today", [date(2026, 12, 6), date(2027, 1, 1), date(2027, 1, 2), date(2029, 12, 31)]
)
def test_the_horizon_does_not_move_with_the_year_of_the_load(today: date) -> None:
    assert sessions_horizon(today) == SESSIONS_THROUGH


@pytest.mark.parametrize(
    ("today", "horizon"),
    [
        (date(2030, 1, 1), date(2031, 12, 31)),
        (date(2030, 12, 31), date(2031, 12, 31)),
        (date(2041, 6, 1), date(2042, 12, 31)),
    ],
)
def test_from_the_horizons_year_on_a_year_of_sessions_is_always_ahead(
    today: date, horizon: date
) -> None:
    assert sessions_horizon(today) == horizon


def test_a_code_location_loaded_in_december_2030_knows_2031s_sessions(
    instance: dg.DagsterInstance,
) -> None:
    sessions = load_sessions(
        "XNYS", first=SUPPORTED_FROM, last=sessions_horizon(date(2030, 12, 20)), cache_dir=CACHE
    )
    partitions = source_partitions(sessions)
    with partition_loading_context(utc(2031, 12, 1), instance):
        # Thanksgiving 2031: closed; the day after closes at 13:00 New York (18:00 UTC).
        assert hours(partitions, utc(2031, 11, 27), utc(2031, 11, 28)) == []
        assert hours(partitions, utc(2031, 11, 28), utc(2031, 11, 29)) == [
            f"2031-11-28-{h}:00" for h in range(14, 18)
        ]


@pytest.mark.parametrize("name", ["XNYS", "XLON", "XTKS", "XHKG", "24/5"])
def test_the_partitions_are_exactly_the_session_hours_and_days(
    name: str, instance: dg.DagsterInstance
) -> None:
    """The exclusions (crons for what is always closed, by hour, weekday and month, then
    datetimes) leave exactly the hours and days that hold session time: around both DST
    changes, a lunch break (XTKS, XHKG), and near the horizon."""
    sessions = load_sessions(name, first=SUPPORTED_FROM, last=SESSIONS_THROUGH, cache_dir=CACHE)
    partitions = source_partitions(sessions)
    for start, end in [(utc(2026, 2, 23), utc(2026, 4, 6)), (utc(2030, 10, 14), utc(2030, 12, 1))]:
        expected_hours = [
            f"{h:%Y-%m-%d-%H:00}"
            for h in (
                start + timedelta(hours=n) for n in range((end - start) // timedelta(hours=1))
            )
            if sessions.is_open_during(h, h + timedelta(hours=1))
        ]
        expected_days = [
            f"{d:%Y-%m-%d}"
            for d in (start + timedelta(days=n) for n in range((end - start).days))
            if sessions.is_open_during(d, d + timedelta(days=1))
        ]
        with partition_loading_context(end, instance):
            window = dg.TimeWindow(start, end)
            assert partitions.hourly.get_partition_keys_in_time_window(window) == expected_hours
            assert partitions.daily.get_partition_keys_in_time_window(window) == expected_days


# -- the cache: where a deployment writes, and never a reason for a load to fail ----------------
def test_the_sessions_are_cached_in_the_directory_given(tmp_path: Path) -> None:
    cache = tmp_path / "fin_assets_cache" / "calendars"
    computed = load_sessions(
        "24/5", first=date(2026, 1, 1), last=date(2026, 3, 31), cache_dir=cache
    )
    (written,) = cache.iterdir()
    assert written.name == f"24_5-{calendar_version()}-2026-01-01-2026-03-31.json"
    assert written.read_bytes() == computed.to_json()


def test_a_cache_that_cannot_be_written_costs_time_not_the_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only file system, a directory of another user, or here, for root too, a
    directory that would be inside a file: the sessions are computed and kept in memory."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cache = blocker / "calendars"
    for last in (date(2026, 6, 30), date(2026, 12, 31)):
        sessions = load_sessions("XLON", first=date(2026, 1, 1), last=last, cache_dir=cache)
        assert sessions.opens and sessions.last == last
    logged = [r.getMessage() for r in caplog.records if "not cached" in r.getMessage()]
    assert len(logged) == 1, logged  # once per directory, not per calendar or range
    assert f"cannot write {cache}" in logged[0] and "DAGSTER_HOME or FIN_DATA_DIR" in logged[0]
    assert list(tmp_path.iterdir()) == [blocker]
