"""Strict validation of symbols, partition keys, names and paths (resources/validation.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from resources.errors import InvalidInputError
from resources.validation import (
    MAX_IDENTIFIER_LENGTH,
    directory_problem,
    ensure_utc,
    parse_symbols,
    partition_file_stem,
    safe_join,
    validate_http_url,
    validate_partition_key,
    validate_provider,
    validate_symbol,
    validate_table,
)


@pytest.mark.parametrize("symbol", ["AAPL", "BTCUSDT", "BRK.B", "RDS-A", "X", "1234567890"])
def test_valid_symbols_are_returned_unchanged(symbol: str) -> None:
    assert validate_symbol(symbol) == symbol


@pytest.mark.parametrize(
    "symbol",
    [
        "../etc",
        "A;DROP",
        "aapl",
        "Aapl",
        "",
        " AAPL",
        "AAPL ",
        "AAPL\n",  # a trailing newline must not slip past the pattern's "$"
        "BRK/B",
        "BRK.",
        "A..B",
        "ABCDEFGHIJK",  # 11 characters
        "BRK.ABCDEF",  # suffix longer than 5
        "ÄAPL",
    ],
)
def test_invalid_symbols_are_refused_with_the_value_in_the_message(symbol: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_symbol(symbol)
    assert repr(symbol) in str(info.value)
    assert "e.g. AAPL" in str(info.value)


def test_invalid_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_symbol("../etc")


def test_parse_symbols_splits_strips_and_dedupes_keeping_order() -> None:
    assert parse_symbols(" AAPL, MSFT ,AAPL,,BTCUSDT ,MSFT") == ("AAPL", "MSFT", "BTCUSDT")


def test_parse_symbols_accepts_a_list() -> None:
    assert parse_symbols(["BRK.B", "AAPL", "BRK.B"]) == ("BRK.B", "AAPL")


@pytest.mark.parametrize("value", ["AAPL,../etc,MSFT", ["AAPL", "A;DROP"], "AAPL,msft"])
def test_parse_symbols_refuses_the_whole_list_if_one_symbol_is_bad(value) -> None:
    with pytest.raises(InvalidInputError, match="invalid symbol"):
        parse_symbols(value)


@pytest.mark.parametrize("value", ["", " , ,", []])
def test_parse_symbols_refuses_an_empty_universe(value) -> None:
    with pytest.raises(InvalidInputError, match="universe is empty"):
        parse_symbols(value)


@pytest.mark.parametrize(
    "key", ["2026-01-05-03:00", "2026-01-05-00:00", "2026-01-05-23:00", "2026-01-05", "2024-02-29"]
)
def test_valid_partition_keys(key: str) -> None:
    assert validate_partition_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "2026-13-01",  # month 13
        "2026-02-30",  # no such day
        "2025-02-29",  # not a leap year
        "2026-01-05-03:30",  # hourly keys are on the hour
        "2026-01-05-24:00",
        "2026-01-05T03:00",
        "2026-01-05-03",
        "2026-1-5",
        "../x",
        "2026-01-05/../../x",
        "2026-01-05\n",
        "2026-01-05-03:00\n",
        "",
    ],
)
def test_invalid_partition_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_partition_key(key)
    assert repr(key) in str(info.value)
    assert "YYYY-MM-DD-HH:00" in str(info.value)


def test_partition_file_stem_drops_the_colon_and_validates() -> None:
    assert partition_file_stem("2026-01-05-03:00") == "2026-01-05-0300"
    assert partition_file_stem("2026-01-05") == "2026-01-05"
    with pytest.raises(InvalidInputError):
        partition_file_stem("../x")


@pytest.mark.parametrize("name", ["simulator", "bars_1m", "a"])
def test_valid_provider_and_table_names(name: str) -> None:
    assert validate_provider(name) == name
    assert validate_table(name) == name


@pytest.mark.parametrize("name", ["", "Bars", "1bars", "bars-1m", "bars;drop", "../bars", "bars\n"])
def test_invalid_provider_and_table_names(name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid provider name"):
        validate_provider(name)
    with pytest.raises(InvalidInputError, match="invalid table name"):
        validate_table(name)


def test_a_table_name_longer_than_postgresql_keeps_is_refused_saying_so() -> None:
    assert validate_table("t" * MAX_IDENTIFIER_LENGTH) == "t" * 63
    with pytest.raises(
        InvalidInputError, match="64 characters, and PostgreSQL identifiers hold 63"
    ):
        validate_table("t" * 64)


@pytest.mark.parametrize(
    "url", ["https://api.binance.com", "http://127.0.0.1:8765", "https://u:p@host/v2?x=1"]
)
def test_http_urls_with_a_host_are_base_urls(url: str) -> None:
    assert validate_http_url(url) == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("file:///srv/bars", "'file:///srv/bars'"),
        ("127.0.0.1:8765", "'127.0.0.1:8765'"),
        ("htps://api.binance.com", "'htps://api.binance.com'"),
        ("http:///v1", "'http:///v1'"),
        ("http://host:port", "'http://host:port'"),
        ("http://[::1", "'http://[::1'"),
        ("http://api.example.com/a b", "'http://api.example.com/a b'"),
        ("http://user:hunter2@host:0", "'http://***@host:0'"),  # never the password
    ],
)
def test_anything_else_is_refused_as_a_base_url(url: str, shown: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        validate_http_url(url)
    assert str(error.value).startswith(f"{shown} is not an http(s) URL with a host"), error.value


def test_a_directory_to_write_into_is_checked_without_writing(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    assert directory_problem(tmp_path) is None
    assert directory_problem(tmp_path / "new" / "deeper") is None  # created when written
    assert directory_problem(tmp_path / "a_file") == f"{tmp_path}/a_file is a file, not a directory"
    assert directory_problem(tmp_path / "a_file" / "x") == (
        f"{tmp_path}/a_file is a file, not a directory"
    )
    assert sorted(tmp_path.iterdir()) == [tmp_path / "a_file"]


def test_safe_join_stays_under_root(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "raw", "simulator", "AAPL") == (
        tmp_path.resolve() / "raw" / "simulator" / "AAPL"
    )
    assert safe_join(tmp_path) == tmp_path.resolve()
    # ".." that stays inside the root is harmless
    assert safe_join(tmp_path, "raw", "..", "manifests") == tmp_path.resolve() / "manifests"


@pytest.mark.parametrize(
    "parts", [("..",), ("..", "etc"), ("raw", "..", "..", "etc"), ("/etc",), ("raw", "/etc/passwd")]
)
def test_safe_join_refuses_escapes(tmp_path: Path, parts: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInputError, match="escapes its root"):
        safe_join(tmp_path / "root", *parts)


def test_safe_join_refuses_a_symlink_that_points_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInputError, match="escapes its root"):
        safe_join(root, "link", "file.json")


def test_ensure_utc_converts_aware_and_refuses_naive() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert ensure_utc(datetime(2026, 1, 5, 4, 0, tzinfo=eastern)) == datetime(
        2026, 1, 5, 9, 0, tzinfo=UTC
    )
    assert ensure_utc(datetime(2026, 1, 5, 4, 0, tzinfo=eastern)).tzinfo is UTC
    with pytest.raises(InvalidInputError, match="naive datetime"):
        ensure_utc(datetime(2026, 1, 5))
