"""A bad partition range, selection or instance is refused before any request or write, by
both command lines (issue 21, item 7).

- ``dagster asset materialize --partition-range A...B`` (and any run launched with range tags:
  the UI, ``dagster job launch``, a backfill): Dagster takes ``2026-01-05-00:30`` as an hourly
  key and a reversed range, so each step checks its run's range first and fails naming the
  asset, the key and the nearest keys.
- ``fin-assets backfill`` (and ``--submit``): one line, exit status 2, nothing run or submitted.

Each case asserts the message, that the simulator was asked nothing, and that no snapshot,
manifest or table file was written. The many variants of the message itself are unit-tested in
``tests/unit/test_partition_ranges.py``.
"""

from __future__ import annotations

import io
import os
import time
import types
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from fin_assets.definitions import build_definitions
from fin_assets.tools import backfill as backfill_module
from fin_assets.tools.backfill import main as backfill_main
from fin_assets.tools.cli import main as fin_assets
from resources.simulator.server import MarketSimulator
from tests.conftest import RANGE_END_TAG, RANGE_START_TAG, fin_env, step_failure_messages
from tests.helpers import dagster_home, materialize_command, run_cli

STOPPED = (
    "The step stopped before any request or write: launch the run again with partition keys of"
)
NOT_A_START = "it is not the start of one of its partitions"


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


# -- the step: what `dagster asset materialize --partition-range` runs -----------------------
@pytest.mark.parametrize(
    ("job", "select", "tags", "message"),
    [
        # The range: it used to succeed, having written 01:00 and 02:00.
        (
            "bars_hourly_job",
            None,
            {RANGE_START_TAG: "2026-01-05-00:30", RANGE_END_TAG: "2026-01-05-01:30"},
            "raw/bars: partition range 2026-01-05-00:30...2026-01-05-01:30 of this run: "
            f"'2026-01-05-00:30' is not a partition of raw/bars: {NOT_A_START}; the nearest "
            f"are 2026-01-05-00:00 and 2026-01-05-01:00. {STOPPED} raw/bars",
        ),
        # It used to end in an IndexError inside the step.
        (
            "bars_hourly_job",
            None,
            {RANGE_START_TAG: "2026-01-05-03:00", RANGE_END_TAG: "2026-01-05-01:00"},
            "raw/bars: partition range 2026-01-05-03:00...2026-01-05-01:00 of this run: the "
            "range ends before it starts (2026-01-05-01:00 is earlier than 2026-01-05-03:00); "
            f"did you mean 2026-01-05-01:00...2026-01-05-03:00? {STOPPED} raw/bars",
        ),
        # Dagster's CLI refuses this one, a run launched with these tags does not.
        (
            "bars_hourly_job",
            None,
            {RANGE_START_TAG: "2025-12-31-23:00", RANGE_END_TAG: "2026-01-01-01:00"},
            "raw/bars: partition range 2025-12-31-23:00...2026-01-01-01:00 of this run: "
            "'2025-12-31-23:00' is not a partition of raw/bars: its first partition is "
            f"2026-01-01-00:00: start the range there or later. {STOPPED} raw/bars",
        ),
        (
            "bars_hourly_job",
            None,
            {"dagster/partition": "2026-01-05-00:30"},
            "raw/bars: partition 2026-01-05-00:30 of this run: '2026-01-05-00:30' is not a "
            f"partition of raw/bars: {NOT_A_START}; the nearest are 2026-01-05-00:00 and "
            f"2026-01-05-01:00. {STOPPED} raw/bars",
        ),
        (
            "bars_hourly_job",
            "core/bars",
            {RANGE_START_TAG: "2026-01-05-00:00", RANGE_END_TAG: "2026-01-05-01:30"},
            "core/bars: partition range 2026-01-05-00:00...2026-01-05-01:30 of this run: "
            f"'2026-01-05-01:30' is not a partition of core/bars: {NOT_A_START}; the nearest "
            f"are 2026-01-05-01:00 and 2026-01-05-02:00. {STOPPED} core/bars",
        ),
        (
            "daily_tables_job",
            None,
            {RANGE_START_TAG: "2026-01-06", RANGE_END_TAG: "2026-01-05"},
            "core/daily_bars: partition range 2026-01-06...2026-01-05 of this run: the range "
            "ends before it starts (2026-01-05 is earlier than 2026-01-06); did you mean "
            f"2026-01-05...2026-01-06? {STOPPED} core/daily_bars",
        ),
        (
            "core_bars_checks_job",
            None,
            {RANGE_START_TAG: "2026-01-05-00:30", RANGE_END_TAG: "2026-01-05-01:00"},
            "core/bars checks: partition range 2026-01-05-00:30...2026-01-05-01:00 of this run: "
            f"'2026-01-05-00:30' is not a partition of core/bars: {NOT_A_START}; the nearest "
            f"are 2026-01-05-00:00 and 2026-01-05-01:00. {STOPPED} core/bars",
        ),
    ],
    ids=["misaligned", "reversed", "before-the-first", "one-key", "core-alone", "daily", "checks"],
)
def test_a_run_with_a_range_that_is_not_the_assets_fails_before_any_request_or_write(
    sim: MarketSimulator,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    job: str,
    select: str | None,
    tags: dict[str, str],
    message: str,
) -> None:
    data = tmp_path / "data"
    env = fin_env(sim, data, FIN_SYMBOLS="AAPL", FIN_QUOTA_STORE=str(tmp_path / "quota.sqlite"))
    defs = build_definitions(env)
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        tags=tags,
        asset_selection=[dg.AssetKey.from_user_string(select)] if select else None,
        raise_on_error=False,
    )
    assert not result.success
    messages = step_failure_messages(result)
    assert any(message in m for m in messages), messages
    # The steps after it do not run; core/daily_returns, beside core/daily_bars, refuses too.
    assert len(messages) == (2 if job == "daily_tables_job" else 1), messages
    assert all(STOPPED in m for m in messages), messages
    assert result.get_asset_materialization_events() == []
    assert sim.stats()["requests"] == 0
    assert files_under(data) == []


def test_dagster_asset_materialize_refuses_a_misaligned_range_before_any_request(
    sim: MarketSimulator, tmp_path: Path
) -> None:
    """What a user of Dagster's own command sees: the issue's range fails in its first step
    (Dagster accepts its keys); a key outside the partitions Dagster refuses itself, before the
    run, naming the range's start even when it is the end that is wrong (its message, not ours)."""
    data = tmp_path / "data"
    env = {
        **os.environ,
        **fin_env(sim, data, FIN_SYMBOLS="AAPL", FIN_QUOTA_STORE=str(tmp_path / "quota.sqlite")),
        "DAGSTER_HOME": str(dagster_home(tmp_path / "home")),
    }
    command = materialize_command(
        "raw/bars,core/bars", "--partition-range", "2026-01-05-00:30...2026-01-05-01:30"
    )
    misaligned = run_cli(command, env=env, timeout=300)
    assert misaligned.returncode == 1, misaligned.stderr[-3000:]
    assert (
        "raw/bars: partition range 2026-01-05-00:30...2026-01-05-01:30 of this run: "
        f"'2026-01-05-00:30' is not a partition of raw/bars: {NOT_A_START}; the nearest are "
        "2026-01-05-00:00 and 2026-01-05-01:00." in misaligned.stderr
    ), misaligned.stderr[-3000:]
    assert "Materialization failed" in misaligned.stderr

    command[-1] = "2026-01-05-00:00...2099-01-01-00:00"
    beyond = run_cli(command, env=env, timeout=300)
    assert beyond.returncode == 1
    assert (
        "All selected assets must have a PartitionsDefinition containing the passed partition "
        "key `2026-01-05-00:00`" in beyond.stderr
    ), beyond.stderr[-3000:]
    assert sim.stats()["requests"] == 0
    assert files_under(data) == []


# -- fin-assets backfill: one line, exit status 2 --------------------------------------------
@pytest.fixture
def backfill_env(
    sim: MarketSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The shorthand source on the simulator, a Dagster instance on disk; afterwards: nothing
    was asked of the simulator, no file written, no run or backfill recorded."""
    home = dagster_home(tmp_path / "home")
    env = fin_env(
        sim, tmp_path / "data", FIN_SYMBOLS="AAPL", FIN_QUOTA_STORE=str(tmp_path / "quota.sqlite")
    )
    for name, value in {**env, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    yield tmp_path
    assert sim.stats()["requests"] == 0
    assert files_under(tmp_path / "data") == []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []
        assert instance.get_backfills() == []


BACKFILL = ["backfill", "--select", "raw/bars,core/bars", "--partition-range"]
SPAN = "2026-01-05-00:00...2026-01-05-01:00"
NO_DAEMON = (
    "--submit: no dagster-daemon is running for this instance (no backfill-daemon heartbeat in "
    "the last 120 s under DAGSTER_HOME={home}): start one (`dagster-daemon run -w "
    "workspace.yaml`, or `make ui`), or leave out --submit to run the range in this process; "
    "nothing was submitted"
)
HOME_FIX = (
    "point it at your instance's directory, e.g. `export DAGSTER_HOME=$PWD/.dagster_home` "
    "(`make ui` and `make demo` create it)"
)


@pytest.mark.parametrize(
    ("args", "home", "message"),
    [
        (
            [*BACKFILL, "2026-01-05-00:30...2026-01-05-01:30"],
            "",
            "--partition-range 2026-01-05-00:30...2026-01-05-01:30: '2026-01-05-00:30' is not a "
            f"partition of core/bars: {NOT_A_START}; the nearest are 2026-01-05-00:00 and "
            "2026-01-05-01:00",
        ),
        (
            [*BACKFILL, "2026-01-05-03:00...2026-01-05-01:00", "--submit"],
            "",
            "--partition-range 2026-01-05-03:00...2026-01-05-01:00: the range ends before it "
            "starts (2026-01-05-01:00 is earlier than 2026-01-05-03:00); did you mean "
            "2026-01-05-01:00...2026-01-05-03:00?",
        ),
        (
            [*BACKFILL, "2026-01-05-00:00...2099-01-01-00:00", "--submit"],
            "",
            "--partition-range 2026-01-05-00:00...2099-01-01-00:00: '2099-01-01-00:00' is not "
            "a partition of core/bars: its window has not closed yet, and a partition exists "
            "once it has: the last is {last}; end the range there or earlier",
        ),
        (
            [*BACKFILL, "2026-01-05-00:00..2026-01-05-01:00", "--submit"],
            "",
            "--partition-range '2026-01-05-00:00..2026-01-05-01:00': expected FIRST...LAST, two "
            "partition keys joined by three dots, both included (e.g. "
            "2026-01-05-00:00...2026-01-05-23:00 for hourly assets)",
        ),
        (
            ["backfill", "--select", "raw/crypto/bars", "--partition-range", SPAN, "--submit"],
            "",
            "--select raw/crypto/bars: fin_assets.definitions has no asset raw/crypto/bars; did "
            "you mean raw/bars? (`dagster asset list -m fin_assets.definitions` lists them)",
        ),
        (
            ["backfill", "--select", "", "--partition-range", SPAN, "--submit"],
            "",
            "--select '': an empty asset key; give asset keys separated by commas, e.g. "
            "core/bars,core/daily_bars (`dagster asset list -m fin_assets.definitions` lists "
            "them)",
        ),
        ([*BACKFILL, SPAN, "--submit"], "", NO_DAEMON),
        (
            [*BACKFILL, SPAN, "--submit"],
            "unset",
            "DAGSTER_HOME is not set: a backfill is recorded in a Dagster instance, the one the "
            f"UI and dagster-daemon read; {HOME_FIX}",
        ),
        (
            [*BACKFILL, SPAN],
            "missing",
            f"DAGSTER_HOME={{home}} is not a directory; {HOME_FIX}",
        ),
    ],
    ids=[
        "misaligned",
        "reversed-submit",
        "not-closed-submit",
        "two-dots",
        "no-such-asset-submit",
        "empty-selection-submit",
        "no-daemon",
        "no-dagster-home",
        "dagster-home-missing",
    ],
)
def test_fin_assets_backfill_refuses_in_one_line_before_anything_runs(
    backfill_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    home: str,
    message: str,
) -> None:
    if home == "unset":
        monkeypatch.delenv("DAGSTER_HOME")
    elif home == "missing":
        monkeypatch.setenv("DAGSTER_HOME", str(backfill_env / "no-such-home"))
    assert fin_assets(args) == 2
    out, err = capsys.readouterr()
    last = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00").get_last_partition_key()
    expected = message.format(home=os.environ.get("DAGSTER_HOME"), last=last)
    assert err == f"fin-assets backfill: {expected}\n"
    assert out == ""


def test_ctrl_c_while_following_a_submitted_backfill_leaves_it_to_the_daemon(
    sim: MarketSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--submit with a daemon's heartbeat on the instance (no daemon runs here): the backfill is
    submitted, and Ctrl-C while following it says where it goes on instead of a traceback."""
    from dagster._daemon.types import DaemonHeartbeat

    home = dagster_home(tmp_path / "home")
    env = fin_env(
        sim, tmp_path / "data", FIN_SYMBOLS="AAPL", FIN_QUOTA_STORE=str(tmp_path / "quota.sqlite")
    )
    for name, value in {**env, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "BACKFILL", None, None))

        stdout = io.StringIO()

        def ctrl_c(seconds: float) -> None:
            # Ctrl-C while the command waits between two looks at the backfill. Raised where
            # it lands, not sent from a thread: an interrupt sent once the submission was
            # printed could miss (a definitions load slower than the sender's patience on a
            # busy machine) and leave the command following a backfill no daemon runs, for
            # ever.
            assert "for the daemon" in stdout.getvalue()
            raise KeyboardInterrupt

        monkeypatch.setattr(
            backfill_module,
            "time",
            types.SimpleNamespace(sleep=ctrl_c, monotonic=time.monotonic, time=time.time),
        )
        assert backfill_main([*BACKFILL[1:], SPAN, "--submit"], out=stdout) == 130
        [backfill] = instance.get_backfills()
    lines = stdout.getvalue().splitlines()
    assert lines == [
        f"backfill {backfill.backfill_id}: 2 partitions, for the daemon",
        f"stopped following backfill {backfill.backfill_id}; the daemon goes on with it: "
        "follow or cancel it in the UI (Backfills)",
    ]
    assert backfill.status.value == "REQUESTED"
    assert sim.stats()["requests"] == 0
    assert files_under(tmp_path / "data") == []
