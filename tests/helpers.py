"""Helpers the tests share: loopback ports, polling, the CLI, and test-only doubles (a pacer, an
executemany warehouse) that the product does not carry."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import dagster as dg
import httpx
import polars as pl
import pytest
from psycopg2 import sql

from resources.endpoints import Endpoint, Feed
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import MemoryQuotaStore
from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.base import WriteResult
from resources.storage.postgres import PARTITION_COLUMN, PostgresWarehouse
from resources.windows import PartitionWindow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # this environment's console scripts: dagster, fin-assets, ...
T = TypeVar("T")
# The simulator's feed at its default address: where tests that write snapshots directly keep them.
SIMULATOR_FEED = Feed("simulator", "127.0.0.1:8765")


def simulator_feed(base_url: str) -> Feed:
    """The feed a run against the simulator at ``base_url`` keeps its snapshots under."""
    return Feed("simulator", Endpoint.parse(base_url).label)


# -- ports and polling ----------------------------------------------------------------------
def hourly_windows(day: date, hours: Iterable[int] = range(24)) -> list[PartitionWindow]:
    """The hourly partitions (``2026-01-05-14:00``) of ``day``'s ``hours`` (UTC), as the raw and
    core layers take them."""
    first = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [
        PartitionWindow(
            f"{first + timedelta(hours=h):%Y-%m-%d-%H}:00",
            first + timedelta(hours=h),
            first + timedelta(hours=h + 1),
        )
        for h in hours
    ]


@contextlib.contextmanager
def simulators(
    *, now: datetime, calendars: Mapping[str, str]
) -> Iterator[Callable[..., MarketSimulator]]:
    """A factory of simulators on ephemeral ports with a fixed clock and these calendars
    (``factory(now=..., **config)``); every one started is stopped on exit."""
    started: list[MarketSimulator] = []

    def factory(now: datetime = now, **overrides: Any) -> MarketSimulator:
        config = SimulatorConfig(port=0, now=now, calendars=calendars, **overrides)
        sim = MarketSimulator(config).start()
        started.append(sim)
        return sim

    try:
        yield factory
    finally:
        for sim in started:
            sim.stop()


def simulator_get(sim: MarketSimulator, path: str, **params: Any) -> httpx.Response:
    """One GET to a simulator, outside any proxy settings of the environment."""
    with httpx.Client(base_url=sim.url, trust_env=False, timeout=10.0) as client:
        return client.get(path, params=params)


def free_port() -> int:
    """A loopback port nothing listens on now, for a server started in another process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 0.02
) -> T:
    """``probe()`` once it is truthy, polled every ``interval`` seconds (longer for a probe that
    is costly, such as a Dagster instance query); after ``timeout`` seconds the test fails
    naming ``what`` (a hang guard, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_for_sensor_ticks(
    instance: dg.DagsterInstance, sensor: str, count: int, *, timeout: float
) -> None:
    """Until the daemon has finished ``count`` ticks of ``sensor`` that started from now on:
    "nothing more is said" is checked over ticks of the sensor that would say it, not over
    seconds of sleep that a busy machine may not fill with a single tick."""
    since = time.time()

    def ticked() -> bool:
        states = [s for s in instance.all_instigator_state() if s.instigator_name == sensor]
        done = [
            tick
            for state in states
            for tick in instance.get_ticks(
                state.instigator_origin_id, state.selector_id, after=since
            )
            if tick.status.value != "STARTED"  # finished: skipped, success or failure
        ]
        return len(done) >= count

    wait_for(f"{count} more ticks of {sensor}", ticked, timeout=timeout, interval=0.5)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (what an OOM kill of its cgroup also kills), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def step_processes(pid: int) -> list[int]:
    """The processes below the run worker ``pid`` that a step started: its step processes and
    theirs (Dagster's log-capturing ``tail``), not multiprocessing's resource tracker."""
    found = []
    for each in descendants(pid):
        try:
            command = Path(f"/proc/{each}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.resource_tracker" not in command:
            found.append(each)
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, from /proc) of ``pid`` and every process below it, those
    they have already reaped included: what the process tree has cost so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since: its time is in its parent's cutime/cstime once reaped
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


# -- tools the tests run ----------------------------------------------------------------------
def required_tool(command: str, debian_package: str) -> str:
    """The path of ``command``; if it is not installed the test fails saying how to get it
    (``make test`` installs it through tests/setup.sh): a missing tool is never a silent skip."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"{command} is not installed: `make test` installs it (tests/setup.sh), or "
            f"install Debian's {debian_package} package",
            pytrace=False,
        )
    return path


# -- the command line -----------------------------------------------------------------------
def dagster_home(path: Path) -> Path:
    """A fresh Dagster instance directory with the project's embedded instance config."""
    path.mkdir(parents=True, exist_ok=True)
    # The event log keeps its files in the instance's own directory
    # (fin_assets/dagster_internals/event_log.py), so DagsterInstance.from_config(path) reads the
    # same files as a CLI started with DAGSTER_HOME=path, whatever this process's DAGSTER_HOME is.
    (path / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    return path


def run_started_in(home: Path) -> bool:
    """Whether a process using the instance at ``home`` has started a run (the run has its own
    event log file): its instance is built by then, so opening it from here no longer races
    that process creating the same SQLite files."""
    return any(db.name != "index.db" for db in (home / "history" / "runs").glob("*.db"))


def _console_script(command: Sequence[str], env: Mapping[str, str] | None) -> dict[str, Any]:
    """How ``subprocess`` runs a console script of this environment from the project root."""
    return {
        "args": [str(BIN / command[0]), *command[1:]],
        "cwd": PROJECT_ROOT,
        "env": None if env is None else dict(env),
        "text": True,
    }


def run_cli(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a console script (``dagster``, ``fin-assets``, ...) as a user would, output captured."""
    return subprocess.run(**_console_script(command, env), capture_output=True, timeout=timeout)


def start_cli(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[str]:
    """Start a console script (a daemon, a code server, the webserver); ``stop_process`` ends
    it."""
    return subprocess.Popen(**_console_script(command, env), stdout=stdout, stderr=stderr)


def materialize_command(select: str, *partitions: str) -> list[str]:
    """``dagster asset materialize`` of ``select`` from the project's definitions, e.g.
    ``materialize_command("raw/bars,core/bars", "--partition", "2026-01-05-03:00")``."""
    return [
        *("dagster", "asset", "materialize", "-m", "fin_assets.definitions"),
        *("--select", select, *partitions),
    ]


@contextlib.contextmanager
def running_daemon(env: Mapping[str, str], log_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``dagster-daemon run`` of the project's code location with ``env``, its output in
    ``log_path``; stopped (and the log closed) on exit."""
    with log_path.open("w") as log:
        daemon = start_cli(
            ["dagster-daemon", "run", "-m", "fin_assets.definitions"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield daemon
        finally:
            stop_process(daemon)


def stop_process(proc: subprocess.Popen[Any], *, timeout: float = 30.0) -> None:
    """SIGTERM, and SIGKILL if it has not exited ``timeout`` seconds later."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# -- test doubles ---------------------------------------------------------------------------
class TokenBucketPacer(SharedPacer):
    """In-process pacing at a fixed rate: a ``SharedPacer`` over a private memory store."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        super().__init__(
            MemoryQuotaStore(), "local", policy=_ExactPolicy(rate_per_s, 1.0, burst), clock=clock
        )


class _ExactPolicy(QuotaPolicy):
    """A policy paced exactly at its rate and burst: for in-process tests and tools."""

    def paced(self, jitter_s: float = 0.0) -> tuple[float, int]:
        return 1.0 / self.rate, self.burst


class ExecutemanyPostgresWarehouse(PostgresWarehouse):
    """A ``PostgresWarehouse`` that can also write the slow way, for tests and benchmarks."""

    def replace_partition_executemany(
        self, table: str, partition_key: str, frame: pl.DataFrame
    ) -> WriteResult:
        """BENCHMARK BASELINE ONLY: ``replace_partition`` with one INSERT per row
        (``executemany``) instead of COPY. Same transaction and result, many times slower; kept
        to measure COPY against. ``WriteResult.bytes`` is 0 (there is no payload)."""
        return self._replace(table, partition_key, frame, load=self._load_executemany)

    def _load_executemany(
        self, cur: Any, table: str, layout: object, frame: pl.DataFrame, start: datetime
    ) -> int:
        # The frame's columns are the table's, in order: _replace has checked the layout.
        names = [*frame.columns, PARTITION_COLUMN]
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self._ident(table),
            sql.SQL(", ").join(sql.Identifier(c) for c in names),
            sql.SQL(", ").join(sql.Placeholder() for _ in names),
        )
        cur.executemany(statement, [(*row, start) for row in frame.iter_rows()])
        return 0


# -- sensors --------------------------------------------------------------------------------
def set_sensors(
    env: Mapping[str, str],
    *,
    start: Sequence[str] = (),
    stop: Sequence[str] = (),
    timeout: float,
) -> None:
    """``dagster sensor start`` / ``dagster sensor stop`` of sensors of the project's code
    location (``-m fin_assets.definitions``), all with one load of the definitions: each of
    those commands loads them again, 7-15 s on a busy 2-core machine. Runs in a child process
    with ``env``, as the commands would."""
    args = [*(f"start={name}" for name in start), *(f"stop={name}" for name in stop)]
    script = "import sys; from tests.helpers import apply_sensor_states as a; a(sys.argv[1:])"
    done = run_cli(["python", "-c", script, *args], env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def apply_sensor_states(args: Sequence[str]) -> None:
    """What ``set_sensors`` runs in its child process: ``start=<sensor>`` / ``stop=<sensor>``."""
    from dagster._cli.workspace.cli_target import get_repository_from_cli_opts
    from dagster_shared.cli import WorkspaceOpts

    target = WorkspaceOpts(module_name=("fin_assets.definitions",))
    with (
        dg.DagsterInstance.get() as instance,
        get_repository_from_cli_opts(instance, dg.__version__, target, None) as repo,
    ):
        for arg in args:
            action, _, name = arg.partition("=")
            sensor = repo.get_sensor(name)
            if action == "start":
                instance.start_sensor(sensor)
            else:
                instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)


def recorded_check_evaluations(
    instance: dg.DagsterInstance, run_id: str
) -> list[dg.AssetCheckEvaluation]:
    """The asset check evaluations a run recorded, in order: what the UI shows for it."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=1_000_000
    ).records
    return [r.event_log_entry.get_dagster_event().asset_check_evaluation_data for r in records]


@contextlib.contextmanager
def product_instance() -> Iterator[dg.DagsterInstance]:
    """A test instance on the event log the project's dagster.yaml configures."""
    with tempfile.TemporaryDirectory(prefix="fin-assets-instance-") as home:
        overrides = {
            "event_log_storage": {
                "module": "fin_assets.dagster_internals.event_log",
                "class": "FinAssetsSqliteEventLogStorage",
                "config": {"dagster_home": home},
            }
        }
        with dg.instance_for_test(temp_dir=home, overrides=overrides) as instance:
            yield instance
