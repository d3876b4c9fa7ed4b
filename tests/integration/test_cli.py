"""The README's commands, run as a user runs them: real subprocesses, real instance on disk."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from tests.helpers import (
    dagster_home,
    free_port,
    materialize_command,
    run_cli,
    start_cli,
    stop_process,
    wait_for,
)


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


@pytest.mark.slow(10)
def test_dagster_asset_materialize_partition_range(simulator_process: str, tmp_path: Path) -> None:
    env = _env(tmp_path, FIN_API_BASE_URL=simulator_process, FIN_SYMBOLS="AAPL,MSFT,NVDA")
    proc = run_cli(
        materialize_command(
            "raw/bars,core/bars", "--partition-range", "2026-01-05-00:00...2026-01-05-23:00"
        ),
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


@pytest.mark.slow(15)
def test_fin_assets_backfill_shows_progress_and_lands_the_range(
    simulator_process: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, FIN_API_BASE_URL=simulator_process, FIN_SYMBOLS="AAPL,MSFT")
    span = "2026-01-05-00:00...2026-01-06-23:00"
    command = ["fin-assets", "backfill", "--select", "raw/bars,core/bars", "--partition-range"]
    proc = run_cli([*command, span], env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # Each step's progress, read back from the run's event log, ends at 48/48 partitions.
    finals = {
        match["asset"]: (int(match["done"]), int(match["requests"]), int(match["rows"]))
        for match in re.finditer(
            r"^(?P<asset>\S+(?: checks)?) +\[#+\] (?P<done>\d+)/48 partitions +100\.0% +left 0 +"
            r"(?P<requests>\d+) requests +(?P<rows>\d+) rows +ETA 0s$",
            proc.stdout,
            re.MULTILINE,
        )
    }
    assert finals["raw/bars"][0] == 48 and finals["raw/bars"][1] >= 4  # 2 symbols x 2 days
    assert finals["raw/bars"][2] == 2 * 2 * 1440
    assert finals["core/bars"][2] == 2 * 2 * 1440
    assert finals["core/bars checks"][0] == 48
    assert re.search(r"^backfill succeeded in \S+: 1 run\(s\)", proc.stdout, re.MULTILINE)
    bars = pl.scan_parquet(tmp_path / "data" / "warehouse" / "core_bars" / "*.parquet").collect()
    assert bars.height == 2 * 2 * 1440

    # Refused before anything runs, in one line naming what was wrong (every refusal, with
    # nothing fetched or written: tests/integration/test_backfill_refusals.py).
    bad = run_cli([*command, "2026-01-05-00:30...2026-01-05-01:30"], env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1] == (
        "fin-assets backfill: --partition-range 2026-01-05-00:30...2026-01-05-01:30: "
        "'2026-01-05-00:30' is not a partition of core/bars: it is not the start of one of its "
        "partitions; the nearest are 2026-01-05-00:00 and 2026-01-05-01:00"
    )


def _demo(tmp_path: Path) -> str:
    proc = run_cli(["fin-assets", "demo"], env=_env(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "simulator stopped" in proc.stdout
    return proc.stdout


@pytest.mark.slow(55)
def test_demo_twice_gives_identical_tables_without_new_requests(tmp_path: Path) -> None:
    """The default deployment: two sources on the simulator over 2026-01-16 .. 2026-01-20."""
    first = _demo(tmp_path)
    second = _demo(tmp_path)
    digests = re.compile(r"^\s+(\w+__core_\w+)\s+(\d+)\s+([0-9a-f]{16})$", re.MULTILINE)
    tables_first, tables_second = digests.findall(first), digests.findall(second)
    rows = {table: int(n) for table, n, _ in tables_first}
    # Crypto around the clock: 5 days x 24 h x 60 min x 2 symbols.
    assert rows["crypto__core_bars"] == 5 * 24 * 60 * 2
    assert rows["crypto__core_daily_bars"] == rows["crypto__core_daily_returns"] == 10
    # Equities in XNYS sessions only: Friday 16th and Tuesday 20th (the weekend, and Monday
    # the 19th a holiday, have none), 390 minutes each, less a few quiet minutes.
    assert 2 * 390 * 5 - 2 * 7 * 2 * 5 <= rows["us_equities__core_bars"] < 2 * 390 * 5
    assert rows["us_equities__core_daily_bars"] == rows["us_equities__core_daily_returns"] == 10
    # The interval tables both sources declare, built in the core/bars step: every 5-minute
    # window and hour of the clock for crypto; 78 windows and 7 hours (the first, 9:00 ET,
    # holding 9:30-9:59) per session day for equities.
    assert rows["crypto__core_bars_5m"] == 5 * 24 * 12 * 2
    assert rows["crypto__core_bars_1h"] == 5 * 24 * 2
    assert rows["us_equities__core_bars_5m"] == 2 * 78 * 5
    assert rows["us_equities__core_bars_1h"] == 2 * 7 * 5
    assert "14 hourly (raw/us_equities/bars" in first and "2 daily" in first
    assert tables_second == tables_first
    assert re.search(r"requests\s+[1-9]\d* \(snapshots written", first), first
    assert len(re.findall(r"requests\s+0 \(snapshots written 0, reused [1-9]", second)) == 2, second

    bars = pl.scan_parquet(
        tmp_path / "data" / "warehouse" / "us_equities__core_bars" / "*.parquet"
    ).collect()
    days = sorted({ts.date().isoformat() for ts in bars["ts"]})
    assert days == ["2026-01-16", "2026-01-20"]  # no weekend, no holiday
    minutes = bars["ts"].dt.hour().cast(pl.Int32) * 60 + bars["ts"].dt.minute()
    assert minutes.min() == 14 * 60 + 30 and minutes.max() == 20 * 60 + 59  # 09:30-16:00 New York


def _without_dagster_home() -> dict[str, str]:
    """A fresh shell in the checkout: no DAGSTER_HOME, no FIN_* variable."""
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("FIN_")}


@pytest.mark.parametrize("home", ["unset", "set"])
def test_dagsters_commands_work_in_the_checkout(home: str, tmp_path: Path) -> None:
    """`dagster definitions validate` and `dg list defs`, typed in the checkout, load the code
    location whether DAGSTER_HOME is set or not (unset: Dagster's temporary instance, which
    reads the checkout's dagster.yaml)."""
    env = _without_dagster_home()
    if home == "set":
        env["DAGSTER_HOME"] = str(dagster_home(tmp_path / "home"))
    validate = run_cli(["dagster", "definitions", "validate"], env=env, timeout=300)
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "All code locations passed validation" in validate.stderr + validate.stdout
    listed = run_cli(["dg", "list", "defs", "--json"], env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assets = {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}
    assert {"raw/us_equities/bars", "core/crypto/daily_returns"} <= assets, sorted(assets)


@pytest.mark.slow(30)
def test_dagster_dev_serves_the_ui_without_dagster_home(tmp_path: Path) -> None:
    """`dagster dev`, the first command a Dagster user types, in a fresh shell in the checkout:
    the UI answers with the default deployment's assets."""
    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    proc = start_cli(
        ["dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
        env=_without_dagster_home(),
        stdout=log,
        stderr=log,
    )
    query = "{ assetNodes { assetKey { path } } }"
    found: set[str] = set()
    try:

        def answered() -> bool:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            try:
                reply = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=5
                )
            except httpx.TransportError:
                return False
            nodes = reply.json().get("data", {}).get("assetNodes") or []
            found.update("/".join(n["assetKey"]["path"]) for n in nodes)
            return bool(found)

        wait_for("dagster dev's GraphQL answer", answered, timeout=180, interval=1.0)
    finally:
        stop_process(proc)
        log.close()
    assert {"raw/us_equities/bars", "raw/crypto/bars"} <= found, sorted(found)
