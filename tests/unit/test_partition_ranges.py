"""A partition range is refused before anything runs when a bound is not a partition key of
the asset, or when it ends before it starts: the message names the option or run, the asset and
the key, with the keys to use instead (issue 21, item 7).

Dagster itself takes ``2026-01-05-00:30`` as an hourly key (``has_partition_key`` is True) and
runs the hours after it; a reversed range resolves to no key. The cheap layers are tested here
with many variants: ``partition_range_keys`` (what every step and the backfill command ask) and
``resolve_range`` (the backfill command's selection and range). What a user sees of whole runs
and commands, with nothing fetched or written, is in
``tests/integration/test_backfill_refusals.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from fin_assets.dagster_internals.backfill import resolve_range
from fin_assets.lib.partitions import (
    SourcePartitions,
    daily_partitions,
    hourly_partitions,
    partition_range_keys,
    source_partitions,
)
from resources.calendars import load_sessions
from resources.errors import InvalidInputError

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "calendars"
WHERE = "--partition-range A...B"


@pytest.fixture(scope="module")
def xnys() -> SourcePartitions:
    sessions = load_sessions(
        "XNYS", first=date(2026, 1, 1), last=date(2027, 12, 31), cache_dir=CACHE
    )
    return source_partitions(sessions)


def refusal(partitions_def: dg.PartitionsDefinition, first: str, last: str) -> str:
    with pytest.raises(InvalidInputError) as refused:
        partition_range_keys(partitions_def, first, last, asset="raw/bars", where=WHERE)
    return str(refused.value)


NOT_A_KEY = f"{WHERE}: '{{key}}' is not a partition of raw/bars: {{why}}"
NOT_A_START = "it is not the start of one of its partitions"


@pytest.mark.parametrize(
    ("first", "last", "key", "why"),
    [
        # The range: Dagster would fill 01:00 and 02:00 and succeed.
        (
            "2026-01-05-00:30",
            "2026-01-05-01:30",
            "2026-01-05-00:30",
            f"{NOT_A_START}; the nearest are 2026-01-05-00:00 and 2026-01-05-01:00",
        ),
        (
            "2026-01-05-00:00",
            "2026-01-05-01:59",
            "2026-01-05-01:59",
            f"{NOT_A_START}; the nearest are 2026-01-05-01:00 and 2026-01-05-02:00",
        ),
        (
            "2026-01-05-00:00",
            "2026-1-5-01:00",
            "2026-1-5-01:00",
            "did you mean 2026-01-05-01:00?",
        ),
        (
            "2026-13-01-00:00",
            "2026-01-05-01:00",
            "2026-13-01-00:00",
            "its keys look like 2026-01-01-00:00 (%Y-%m-%d-%H:%M, UTC)",
        ),
        (
            "2026-01-05",
            "2026-01-06",
            "2026-01-05",
            "its keys look like 2026-01-01-00:00 (%Y-%m-%d-%H:%M, UTC)",
        ),
        (
            "2025-12-31-23:00",
            "2026-01-01-05:00",
            "2025-12-31-23:00",
            "its first partition is 2026-01-01-00:00: start the range there or later",
        ),
    ],
    ids=["misaligned-start", "misaligned-end", "unpadded", "no-such-month", "daily-key", "early"],
)
def test_an_hourly_bound_that_is_not_a_key_is_refused_naming_the_nearest(
    first: str, last: str, key: str, why: str
) -> None:
    assert refusal(hourly_partitions, first, last) == NOT_A_KEY.format(key=key, why=why)


def test_a_bound_after_the_last_closed_hour_is_refused_naming_the_last() -> None:
    last = hourly_partitions.get_last_partition_key()
    assert refusal(hourly_partitions, "2026-01-05-00:00", "2099-01-01-00:00") == NOT_A_KEY.format(
        key="2099-01-01-00:00",
        why="its window has not closed yet, and a partition exists once it has: the last is "
        f"{last}; end the range there or earlier",
    )


@pytest.mark.parametrize(
    ("first", "last"),
    [("2026-01-05-03:00", "2026-01-05-01:00"), ("2026-01-06-00:00", "2026-01-05-23:00")],
)
def test_a_reversed_range_is_refused_with_the_range_it_meant(first: str, last: str) -> None:
    assert refusal(hourly_partitions, first, last) == (
        f"{WHERE}: the range ends before it starts ({last} is earlier than {first}); "
        f"did you mean {last}...{first}?"
    )


def test_a_reversed_daily_range_is_refused_too() -> None:
    assert refusal(daily_partitions, "2026-01-06", "2026-01-05") == (
        f"{WHERE}: the range ends before it starts (2026-01-05 is earlier than 2026-01-06); "
        "did you mean 2026-01-05...2026-01-06?"
    )


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("2026-01-05-00:00", "its keys look like 2026-01-01 (%Y-%m-%d, UTC)"),
        ("2026-1-5", "did you mean 2026-01-05?"),
        ("2025-12-31", "its first partition is 2026-01-01: start the range there or later"),
    ],
)
def test_a_daily_bound_that_is_not_a_key_is_refused(key: str, why: str) -> None:
    assert refusal(daily_partitions, key, "2026-01-07") == NOT_A_KEY.format(key=key, why=why)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        # Saturday: the exchange is closed; Friday's last hour and Monday's first are nearest.
        (
            "2026-01-10-15:00",
            "its calendar has no session then; the nearest are 2026-01-09-20:00 and "
            "2026-01-12-14:00",
        ),
        (
            "2026-01-10-15:30",
            f"{NOT_A_START}; the nearest are 2026-01-09-20:00 and 2026-01-12-14:00",
        ),
        (
            "2026-01-09-14:30",
            f"{NOT_A_START}; the nearest are 2026-01-09-14:00 and 2026-01-09-15:00",
        ),
        # New Year's Day is a holiday: the first session hour is on the 2nd.
        (
            "2026-01-01-15:00",
            "its first partition is 2026-01-02-14:00: start the range there or later",
        ),
    ],
    ids=["closed-hour", "inside-a-closed-hour", "inside-a-session-hour", "holiday"],
)
def test_an_exchange_calendar_bound_is_refused_naming_the_sessions_around_it(
    xnys: SourcePartitions, key: str, why: str
) -> None:
    assert refusal(xnys.hourly, key, "2026-01-16-20:00") == NOT_A_KEY.format(key=key, why=why)


def test_a_closed_day_is_refused_naming_the_sessions_around_it(xnys: SourcePartitions) -> None:
    # Monday 2026-01-19, Martin Luther King Jr. Day.
    assert refusal(xnys.daily, "2026-01-16", "2026-01-19") == NOT_A_KEY.format(
        key="2026-01-19",
        why="its calendar has no session then; the nearest are 2026-01-16 and 2026-01-20",
    )


@pytest.mark.parametrize(
    ("partitions", "first", "last", "keys"),
    [
        ("hourly", "2026-01-05-22:00", "2026-01-06-01:00", 4),
        ("hourly", "2026-01-05-03:00", "2026-01-05-03:00", 1),
        ("daily", "2026-01-05", "2026-01-11", 7),
        ("xnys", "2026-01-09-19:00", "2026-01-12-15:00", 4),  # Fri 19, 20; Mon 14, 15
    ],
)
def test_a_range_of_keys_gives_its_partitions_in_order(
    xnys: SourcePartitions, partitions: str, first: str, last: str, keys: int
) -> None:
    partitions_def = {"hourly": hourly_partitions, "daily": daily_partitions}.get(
        partitions, xnys.hourly
    )
    found = partition_range_keys(partitions_def, first, last, asset="raw/bars", where=WHERE)
    assert len(found) == keys
    assert (found[0], found[-1]) == (first, last)
    assert found == sorted(found)


# -- resolve_range: the backfill command's selection and range ---------------------------------
@pytest.fixture
def shorthand_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The FIN_* shorthand source (raw/bars, core/bars, core/daily_bars ...), loaded by
    resolve_range as `fin-assets backfill -m fin_assets.definitions` loads it."""
    monkeypatch.setenv("FIN_API_BASE_URL", "http://127.0.0.1:9")  # never asked: nothing runs
    monkeypatch.setenv("FIN_SYMBOLS", "AAPL")
    monkeypatch.setenv("FIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FIN_QUOTA_STORE", str(tmp_path / "quota.sqlite"))
    yield tmp_path
    assert not any(path.is_file() for path in tmp_path.rglob("*")), "a file was written"


MODULE = "fin_assets.definitions"
LISTING = f"(`dagster asset list -m {MODULE}` lists them)"


@pytest.mark.parametrize(
    ("select", "first", "last", "message"),
    [
        (
            "raw/bars,core/bars",
            "2026-01-05-00:30",
            "2026-01-05-01:30",
            "--partition-range 2026-01-05-00:30...2026-01-05-01:30: '2026-01-05-00:30' is not "
            f"a partition of core/bars: {NOT_A_START}; the nearest are 2026-01-05-00:00 and "
            "2026-01-05-01:00",
        ),
        (
            "raw/bars",
            "2026-01-05-03:00",
            "2026-01-05-01:00",
            "--partition-range 2026-01-05-03:00...2026-01-05-01:00: the range ends before it "
            "starts (2026-01-05-01:00 is earlier than 2026-01-05-03:00); did you mean "
            "2026-01-05-01:00...2026-01-05-03:00?",
        ),
        (
            "core/daily_bars",
            "2026-01-05-00:00",
            "2026-01-05-23:00",
            "--partition-range 2026-01-05-00:00...2026-01-05-23:00: '2026-01-05-00:00' is not "
            "a partition of core/daily_bars: its keys look like 2026-01-01 (%Y-%m-%d, UTC)",
        ),
        (
            "raw/nope",
            "2026-01-05-00:00",
            "2026-01-05-01:00",
            f"--select raw/nope: {MODULE} has no asset raw/nope; its assets are core/bars, "
            f"core/daily_bars, core/daily_returns, raw/bars {LISTING}",
        ),
        (
            "raw/crypto/bars",
            "2026-01-05-00:00",
            "2026-01-05-01:00",
            f"--select raw/crypto/bars: {MODULE} has no asset raw/crypto/bars; did you mean "
            f"raw/bars? {LISTING}",
        ),
        (
            "",
            "2026-01-05-00:00",
            "2026-01-05-01:00",
            "--select '': an empty asset key; give asset keys separated by commas, e.g. "
            f"core/bars,core/daily_bars {LISTING}",
        ),
        (
            "raw/bars,",
            "2026-01-05-00:00",
            "2026-01-05-01:00",
            "--select 'raw/bars,': an empty asset key; give asset keys separated by commas, "
            f"e.g. core/bars,core/daily_bars {LISTING}",
        ),
        (
            "group:nope",
            "2026-01-05-00:00",
            "2026-01-05-01:00",
            f"--select group:nope: selects no asset of {MODULE} {LISTING}",
        ),
        (
            "raw/bars,core/daily_bars",
            "2026-01-05-00:00",
            "2026-01-05-01:00",
            "--select raw/bars,core/daily_bars: core/daily_bars (Daily, starting 2026-01-01 "
            "UTC) and raw/bars (Hourly, starting 2026-01-01-00:00 UTC) are partitioned "
            "differently, and one range run takes assets of one partitions definition: "
            "backfill them separately",
        ),
    ],
    ids=[
        "misaligned",
        "reversed",
        "hourly-key-for-daily",
        "unknown-asset",
        "other-deployments-asset",
        "empty",
        "trailing-comma",
        "selects-nothing",
        "hourly-and-daily",
    ],
)
def test_resolve_range_refuses_naming_the_option(
    shorthand_env: Path, select: str, first: str, last: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        resolve_range(MODULE, select, first, last, check=partition_range_keys)
    assert str(refused.value) == message


def test_resolve_range_gives_the_range_run_and_its_partitions(shorthand_env: Path) -> None:
    job = resolve_range(
        MODULE,
        "raw/bars,core/bars",
        "2026-01-05-22:00",
        "2026-01-06-01:00",
        check=partition_range_keys,
    )
    assert [key.to_user_string() for key in job.keys] == ["core/bars", "raw/bars"]
    assert job.partitions == [
        "2026-01-05-22:00",
        "2026-01-05-23:00",
        "2026-01-06-00:00",
        "2026-01-06-01:00",
    ]
    assert sorted(job.tags.values()) == ["2026-01-05-22:00", "2026-01-06-01:00"]
