"""``fin-assets read``: the bars of a deployment's warehouse as CSV on stdout, and a refused
input as one line on stderr with exit status 2 (through ``fin_assets.tools.cli.main``)."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fin_assets.tools.cli import main
from resources.storage.parquet import ParquetWarehouse
from tests.unit.test_read import expected_minutes, sources_env, write_lake


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lake = ParquetWarehouse(tmp_path / "lake")
    write_lake(lake)
    for name in [n for n in os.environ if n.startswith("FIN_")]:
        monkeypatch.delenv(name)
    for name, value in sources_env(tmp_path, str(lake.root)).items():
        monkeypatch.setenv(name, value)
    return tmp_path


def test_read_writes_the_bars_as_csv_on_stdout(
    deployment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["read", "us_equities", "--symbols", "AAPL,MSFT", "--start", "2026-01-16"]
        + ["--end", "2026-01-21T00:00Z", "--format", "csv"]
    )

    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    want = expected_minutes(
        datetime(2026, 1, 16, tzinfo=UTC), datetime(2026, 1, 21, tzinfo=UTC), ("AAPL", "MSFT")
    )
    got = pl.read_csv(io.StringIO(out), schema=want.schema)
    assert_frame_equal(got, want)
    assert out.splitlines()[0] == ",".join(want.columns)
    assert len(out.splitlines()) == 1 + 18


def test_read_writes_parquet_to_a_file(deployment: Path) -> None:
    output = deployment / "bars.parquet"
    status = main(
        ["read", "us_equities", "--symbols", "NVDA", "--start", "2026-01-15", "--end"]
        + ["2026-01-23", "--interval", "1d", "--adjustment", "splits", "--format", "parquet"]
        + ["--output", str(output)]
    )

    assert status == 0
    assert pl.read_parquet(output)["date"].dt.day().to_list() == [15, 16, 20, 21, 22]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--symbols", "TSLA", "--start", "2026-01-16", "--end", "2026-01-21"],
            "fin-assets read: symbol 'TSLA' is not held by source us_equities "
            "(its symbols: AAPL, MSFT, NVDA)",
        ),
        (
            ["--symbols", "AAPL", "--start", "2026-01-21", "--end", "2026-01-16"],
            "fin-assets read: reversed range: start 2026-01-21T00:00:00+00:00 is not before "
            "end 2026-01-16T00:00:00+00:00 (the range is [start, end): end is excluded)",
        ),
        (
            ["--symbols", "AAPL", "--start", "2026-01-16", "--end", "2026-01-21"]
            + ["--interval", "2h"],
            "fin-assets read: unknown interval '2h': available are 1m, 5m, 15m, 1h, 1d",
        ),
        (
            ["--symbols", "AAPL", "--start", "yesterday", "--end", "2026-01-21"],
            "fin-assets read: --start 'yesterday': expected a date (2026-01-16) or a UTC time "
            "(2026-01-16T14:30Z)",
        ),
        (
            ["--symbols", "AAPL", "--start", "2026-01-16", "--end", "2026-01-21"]
            + ["--format", "parquet"],
            "fin-assets read: --format parquet needs --output FILE (Parquet is not for a tty)",
        ),
    ],
)
def test_a_refused_input_is_one_line_and_exit_status_2(
    deployment: Path, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    status = main(["read", "us_equities", *args])

    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.splitlines() == [line]
