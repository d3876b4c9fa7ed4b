"""The README's commands, run as a user runs them: real subprocesses, real instance on disk."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import dagster_home, run_cli, start_cli


@pytest.fixture
def simulator_process() -> Iterator[str]:
    proc = start_cli(["fin-assets", "simulator", "--port", "0"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on" in line, line
    yield line.rsplit(" ", 1)[-1].strip()
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    proc.stdout.close()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = dagster_home(tmp_path / "dagster_home")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FIN_DATA_DIR": str(tmp_path / "data"),
        "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
    }
    env.update(extra)
    return env


def test_dagster_asset_materialize_partition_range(simulator_process: str, tmp_path: Path) -> None:
    env = _env(tmp_path, FIN_API_BASE_URL=simulator_process, FIN_SYMBOLS="AAPL,MSFT,NVDA")
    proc = run_cli(
        [
            "dagster",
            "asset",
            "materialize",
            "-m",
            "fin_assets.definitions",
            "--select",
            "raw/bars,core/bars",
            "--partition-range",
            "2026-01-05-00:00...2026-01-05-23:00",
        ],
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bars = pl.scan_parquet(tmp_path / "data" / "warehouse" / "core_bars" / "*.parquet").collect()
    assert bars.height == 24 * 3 * 60
    assert bars["ts"].min().isoformat() == "2026-01-05T00:00:00+00:00"
    assert bars["ts"].max().isoformat() == "2026-01-05T23:59:00+00:00"
    # The run is in the on-disk instance, as the UI would show it.
    assert any((tmp_path / "dagster_home" / "storage").iterdir())


def _demo(tmp_path: Path) -> str:
    proc = run_cli(["fin-assets", "demo", "--days", "2"], env=_env(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "simulator stopped" in proc.stdout
    return proc.stdout


def test_demo_twice_gives_identical_tables_without_new_requests(tmp_path: Path) -> None:
    first = _demo(tmp_path)
    second = _demo(tmp_path)
    digests = re.compile(r"^\s+(core_\w+)\s+(\d+)\s+([0-9a-f]{16})$", re.MULTILINE)
    tables_first, tables_second = digests.findall(first), digests.findall(second)
    assert [t[:2] for t in tables_first] == [
        ("core_bars", str(2 * 24 * 60 * 5)),
        ("core_daily_bars", "10"),
        ("core_daily_returns", "10"),
    ]
    assert tables_second == tables_first
    assert re.search(r"requests\s+15 ", first), first
    assert re.search(r"requests\s+0 \(snapshots written 0, reused 15", second), second
