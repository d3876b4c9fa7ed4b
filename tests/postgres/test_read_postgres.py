"""``read_bars`` from the PostgreSQL warehouse gives the frame it gives from the Parquet lake,
for the same data written through the same API (``tests/unit/test_read.py``'s lake)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from fin_assets.lib.read import read_bars
from resources.errors import InvalidInputError
from resources.storage.parquet import ParquetWarehouse
from resources.storage.postgres import PostgresWarehouse
from tests.unit.test_read import EQUITIES, sources_env, write_lake

REQUESTS = [
    ("AAPL,MSFT", date(2026, 1, 16), date(2026, 1, 21), "1m", "none"),
    (
        "NVDA",
        datetime(2026, 1, 16, 14, 30, tzinfo=UTC),
        datetime(2026, 1, 20, 14, 30, tzinfo=UTC),
        "1m",
        "none",
    ),
    ("AAPL,NVDA", date(2026, 1, 15), date(2026, 1, 23), "1m", "splits"),
    ("AAPL", date(2026, 1, 15), date(2026, 1, 23), "1m", "splits_and_dividends"),
    ("AAPL,MSFT,NVDA", date(2026, 1, 15), date(2026, 1, 23), "1d", "splits_and_dividends"),
    ("AAPL", date(2026, 1, 17), date(2026, 1, 20), "1m", "none"),  # no partition at all
]


@pytest.fixture
def envs(tmp_path: Path, fresh_database: str) -> tuple[dict[str, str], dict[str, str]]:
    """(Parquet, PostgreSQL) environments of one deployment, holding the same data."""
    lake = ParquetWarehouse(tmp_path / "lake")
    write_lake(lake)
    with PostgresWarehouse(fresh_database) as warehouse:
        write_lake(warehouse)
    return sources_env(tmp_path, str(lake.root)), sources_env(tmp_path, fresh_database)


@pytest.mark.parametrize(("symbols", "start", "end", "interval", "adjustment"), REQUESTS)
def test_postgres_reads_the_frame_parquet_reads(
    envs: tuple[dict[str, str], dict[str, str]],
    symbols: str,
    start: date,
    end: date,
    interval: str,
    adjustment: str,
) -> None:
    parquet_env, postgres_env = envs
    kwargs = {"interval": interval, "adjustment": adjustment}

    from_parquet = read_bars(EQUITIES, symbols, start, end, env=parquet_env, **kwargs).collect()
    from_postgres = read_bars(EQUITIES, symbols, start, end, env=postgres_env, **kwargs).collect()

    assert_frame_equal(from_postgres, from_parquet)
    if (start, end) != (date(2026, 1, 17), date(2026, 1, 20)):
        assert from_postgres.height > 0


def test_postgres_without_factors_names_the_asset_to_materialize(
    tmp_path: Path, fresh_database: str
) -> None:
    with PostgresWarehouse(fresh_database) as warehouse:
        write_lake(warehouse, with_factors=False)
    env = sources_env(tmp_path, fresh_database)

    with pytest.raises(InvalidInputError, match="materialize core/us_equities/adjustment_factors"):
        read_bars(
            EQUITIES, "AAPL", date(2026, 1, 16), date(2026, 1, 21), adjustment="splits", env=env
        )
