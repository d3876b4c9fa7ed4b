"""A distributed engine, really run (issue 15): Dagster's Celery executor on the RabbitMQ on
loopback, a PostgreSQL instance, warehouse and quota store in a database of the test's own, the
simulator enforcing a quota, and two ``dagster-celery worker`` processes (``w1``, ``w2``)
standing in for two hosts. One story, in order:

1. a backfill of both declared sources (two runs at once, ``dagster asset materialize``): its
   steps run on both workers (names and pids from the run's event log), the simulator never
   answered 429 nor saw more than its quota in any window, and the PostgreSQL tables equal an
   in-process run's of the same ranges, row by row;
2. the worker running ``raw/crypto/bars`` is SIGKILLed mid-step with its whole process tree
   (its host lost): the run resumes on the other worker (or fails: then it is run again), and
   the tables have no duplicate and no missing row;
3. RabbitMQ is stopped mid-step (``rabbitmqctl stop_app``, restarted in a ``finally``): the
   run fails naming the broker, every partition is whole or absent, the step message the
   broker kept is dropped by a worker (its run has ended), and the re-run completes the range.

Needs RabbitMQ on 127.0.0.1:5672 (guest/guest) with ``rabbitmqctl`` (``.ci/run`` starts it)
and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import dagster as dg
import psycopg2
import pytest
import yaml

from fin_assets.dagster_internals.runs import process_start_ticks
from fin_assets.definitions import build_definitions
from fin_assets.lib.catalog import declared_markets
from fin_assets.tools.celery_worker import STEP_TAKEN
from resources.calendars import TWENTY_FOUR_SEVEN
from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.warehouse import warehouse_from_url
from tests.conftest import RANGE_END_TAG, RANGE_START_TAG
from tests.helpers import (
    BIN,
    PROJECT_ROOT,
    descendants,
    materialize_command,
    start_cli,
    stop_process,
    wait_for,
)
from tests.postgres.conftest import postgres_instance_env, throwaway_database, unreachable_reason

pytestmark = pytest.mark.slow(200)  # 210 s in a whole make test, setup included

BROKER = ("127.0.0.1", 5672)
QUOTA, WINDOW_S = 6, 1.0  # the simulator's quota: 6 requests per (fixed) 1 s window
PAGE = 240  # bars per page: a day of a crypto pair is 6 requests, so the quota matters
LATENCY_MS = 1500  # per request while a step is to be interrupted
POLL_S = 0.25
# (source, first, last): the backfill (1), the worker killed (2), the broker stopped (3).
BACKFILL = (
    ("us_equities", "2026-01-16-14:00", "2026-01-16-20:00"),
    ("crypto", "2026-01-16-00:00", "2026-01-16-23:00"),
)
KILLED = ("crypto", "2026-01-17-00:00", "2026-01-17-23:00")
BROKER_STOPPED = ("crypto", "2026-01-18-00:00", "2026-01-18-23:00")
TABLES = ("core_bars",)


def _broker_reason() -> str | None:
    with socket.socket() as sock:
        sock.settimeout(2)
        if sock.connect_ex(BROKER) != 0:
            return (
                "RabbitMQ not reachable on 127.0.0.1:5672: `make test` starts it "
                "(tests/setup.sh), or `rabbitmq-server -detached`"
            )
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl not on PATH (the broker outage is a real `rabbitmqctl stop_app`)"
    return None


@pytest.fixture(scope="module", autouse=True)
def services_there() -> None:
    reason = _broker_reason() or unreachable_reason()
    if reason is not None:  # `make test` starts both (tests/setup.sh): never a silent skip
        pytest.fail(reason, pytrace=False)


def _select(source: str) -> str:
    return f"raw/{source}/bars,core/{source}/bars"


def _simulator(*, quota: bool) -> MarketSimulator:
    calendars = {
        symbol: calendar
        for calendar, symbols in declared_markets().values()
        if calendar != TWENTY_FOUR_SEVEN
        for symbol in symbols
    }
    return MarketSimulator(
        SimulatorConfig(
            port=0,
            page_limit_max=PAGE,
            calendars=calendars,
            **({"quota_requests": QUOTA, "quota_window_s": WINDOW_S} if quota else {}),
        )
    )


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[str]
    log: Path
    out: IO[str]

    def stop(self) -> None:
        """SIGTERM to the worker and every process below it (``dagster-celery`` does not pass
        it on to the ``celery`` it started), SIGKILL to what is left 10 s later."""
        tree = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            wait_for("the worker to stop", lambda: not _alive(tree), timeout=10, interval=POLL_S)
        for pid in _alive(tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop_process(self.proc)
        self.out.close()

    def killed(self) -> None:
        """SIGKILL the worker and every process below it: what losing its host does."""
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):  # exited with its parent meanwhile
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@dataclass
class Cluster:
    env: dict[str, str]
    database: str
    sim: MarketSimulator
    workers: dict[str, Worker]
    tmp: Path
    reference: Path  # the in-process run's Parquet warehouse
    notes: list[str] = field(default_factory=list)
    started: list[subprocess.Popen[str]] = field(default_factory=list)  # stopped at the end

    def materialize(self, source: str, first: str, last: str) -> subprocess.Popen[str]:
        command = materialize_command(_select(source), "--partition-range", f"{first}...{last}")
        with (self.tmp / f"materialize-{source}-{first}.log").open("w") as out:
            proc = start_cli(command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def output(self, source: str, first: str) -> str:
        return (self.tmp / f"materialize-{source}-{first}.log").read_text()


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if process_start_ticks(pid) is not None]


def _start_worker(name: str, env: Mapping[str, str], tmp: Path) -> Worker:
    log = tmp / f"worker-{name}.log"
    out = log.open("w")
    # `dagster-celery worker start` runs `celery -A ... worker`; one step at a time per worker,
    # so a second step waiting is the other "host's" to take.
    command = [
        "dagster-celery",
        "worker",
        "start",
        "-A",
        "fin_assets.tools.celery_worker",
        "-n",
        name,
    ]
    proc = start_cli([*command, "--", "--concurrency=1"], env=env, stdout=out, stderr=out)
    return Worker(name, proc, log, out)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("celery")
    with throwaway_database("fin_assets_celery_") as database:
        home_env = postgres_instance_env(database, tmp / "home")
        config_path = tmp / "home" / "dagster.yaml"
        config = yaml.safe_load(config_path.read_text())
        # Both sources call the same simulator with the same (absent) key: one pool, one quota.
        # Two slots, so both sources' API steps run at once on the two hosts and must share
        # the quota through the PostgreSQL quota store.
        config["concurrency"]["pools"]["default_limit"] = 2
        config_path.write_text(yaml.safe_dump(config))
        sim = _simulator(quota=True).start()
        # A vhost of the test's own: no other worker on this broker can take its steps.
        vhost = f"fin_assets_test_{secrets.token_hex(4)}"
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        env = {
            **os.environ,
            **home_env,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `celery`, for workers
            "FIN_EXECUTOR": "celery",
            "FIN_CELERY_BROKER": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "FIN_SIMULATOR_URL": sim.url,
            "FIN_DATA_DIR": str(tmp / "data"),  # one shared volume for both "hosts"
            "FIN_WAREHOUSE_URL": database,
            "FIN_QUOTA_STORE": database,
        }
        env["FIN_SOURCES_DIR"] = str(_sources_with_quota(tmp / "sources"))
        for name in ("FIN_PROVIDER", "FIN_SYMBOLS", "FIN_API_BASE_URL"):
            env.pop(name, None)
        workers = {name: _start_worker(name, env, tmp) for name in ("w1", "w2")}
        try:
            # While the workers start (each imports Dagster and the definitions).
            reference = tmp / "reference"
            _reference_run(reference, tmp / "reference-data")
            for worker in workers.values():
                wait_for(
                    f"Celery worker {worker.name} to be ready",
                    lambda w=worker: " ready." in w.log.read_text() or w.proc.poll() is not None,
                    timeout=90,
                    interval=POLL_S,
                )
                assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
            cluster = Cluster(env, database, sim, workers, tmp, reference)
            yield cluster
            for proc in cluster.started:  # a run left behind by a failed assertion
                stop_process(proc)
        finally:
            for worker in workers.values():
                worker.stop()
            sim.stop()
            _rabbitmqctl("delete_vhost", vhost)


def _sources_with_quota(folder: Path) -> Path:
    """The declared sources, each with its quota written down as a deployment would: a
    ceiling a little under the server's (QUOTA), the margin for clocks and network jitter
    between hosts, so no request is refused while the quota is being confirmed."""
    for path in sorted((PROJECT_ROOT / "fin_assets" / "defs").glob("*/defs.yaml")):
        document = yaml.safe_load(path.read_text())
        document["attributes"]["quota"] = {"requests": QUOTA - 1, "window_seconds": WINDOW_S}
        target = folder / path.parent.name / "defs.yaml"
        target.parent.mkdir(parents=True)
        target.write_text(yaml.safe_dump(document))
    return folder


def _reference_run(warehouse: Path, data_dir: Path) -> None:
    """The same ranges in process (Dagster's in-process executor), from a simulator of the
    same market without a quota, into a Parquet warehouse: what the tables must equal."""
    ranges = [*BACKFILL, ("crypto", KILLED[1], BROKER_STOPPED[2])]
    with _simulator(quota=False) as sim, pytest.MonkeyPatch.context() as patch:
        # The declared sources read FIN_SIMULATOR_URL when their YAML is loaded.
        patch.setenv("FIN_SIMULATOR_URL", sim.url)
        env = {
            "FIN_SIMULATOR_URL": sim.url,
            "FIN_DATA_DIR": str(data_dir),
            "FIN_WAREHOUSE_URL": str(warehouse),
            "FIN_QUOTA_STORE": str(data_dir / "quota.sqlite"),
        }
        defs = build_definitions(env)
        with dg.instance_for_test() as instance:
            for source, first, last in ranges:
                result = defs.resolve_job_def(f"{source}__bars_hourly_job").execute_in_process(
                    instance=instance,
                    tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
                    raise_on_error=False,
                )
                assert result.success, f"reference run of {source} {first}...{last} failed"


# -- what the tests look at -------------------------------------------------------------------
def _keys_in(source: str, first: str, last: str, keys: list[str]) -> list[str]:
    # Hourly keys "YYYY-MM-DD-HH:MM" sort as they run.
    return [key for key in keys if first <= key <= last]


def _table_equals_reference(
    cluster: Cluster, source: str, first: str, last: str, *, allow_missing: bool = False
) -> int:
    """Every partition of the range in PostgreSQL equals the in-process run's (all columns but
    ``ingested_at``, row by row); none missing unless ``allow_missing``. Returns the rows."""
    rows = 0
    for name in TABLES:
        table = f"{source}__{name}"
        expected = warehouse_from_url(str(cluster.reference))
        actual = warehouse_from_url(cluster.database)
        want = _keys_in(source, first, last, expected.partition_keys(table))
        have = _keys_in(source, first, last, actual.partition_keys(table))
        assert want, f"the reference has no {table} partition in {first}...{last}"
        assert set(have) <= set(want), f"{table}: partitions the reference has not"
        if not allow_missing:
            assert have == want, f"{table}: missing partitions {sorted(set(want) - set(have))}"
        for key in have:
            got, ref = actual.read_partition(table, key), expected.read_partition(table, key)
            assert got is not None and ref is not None
            order = ["symbol", "ts"]
            got = got.drop("ingested_at").sort(order)
            ref = ref.drop("ingested_at").sort(order)
            assert got.height == ref.height, f"{table} {key}: {got.height} rows, not {ref.height}"
            assert got.equals(ref), f"{table} {key} differs from the in-process run"
            rows += got.height
    return rows


def _no_duplicates(cluster: Cluster) -> None:
    with psycopg2.connect(cluster.database) as conn, conn.cursor() as cur:
        for source in ("us_equities", "crypto"):
            cur.execute(f'SELECT count(*), count(DISTINCT (symbol, ts)) FROM "{source}__core_bars"')
            total, distinct = cur.fetchone()
            assert total == distinct, f"{source}__core_bars: {total - distinct} duplicate rows"


def _steps_taken(cluster: Cluster) -> list[tuple[str, str, int, str]]:
    """(run id, worker, pid, steps) of every step a Celery worker took, from the event log."""
    found = []
    pattern = re.compile(re.escape(STEP_TAKEN) + r" (\S+) \(pid (\d+)\): ([\w, ]+)")
    with psycopg2.connect(cluster.database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, event FROM event_logs WHERE dagster_event_type = 'ENGINE_EVENT' "
            "ORDER BY id"
        )
        for run_id, event in cur.fetchall():
            match = pattern.search(event)
            if match:
                found.append((run_id, match.group(1), int(match.group(2)), match.group(3)))
    return found


def _quota_windows(sim: MarketSimulator) -> tuple[int, int, int]:
    """(requests, 429s, the most requests in one of the simulator's quota windows). Its quota
    is a fixed window: it opens at a request and closes WINDOW_S later (``ServerQuota``)."""
    log = sim.request_log()
    most, opened, used = 0, None, 0
    for t in sorted(entry["t"] for entry in log):
        if opened is None or t >= opened + WINDOW_S:
            opened, used = t, 0
        used += 1
        most = max(most, used)
    return len(log), sum(entry["status"] == 429 for entry in log), most


def _wait_for_step(cluster: Cluster, step: str, seen: int) -> tuple[str, int]:
    """The worker and pid of the ``seen``-th (0-based) time ``step`` was taken."""

    def probe() -> tuple[str, int] | None:
        taken = [(w, pid) for _, w, pid, steps in _steps_taken(cluster) if steps == step]
        return taken[seen] if len(taken) > seen else None

    return wait_for(f"{step} to be taken by a worker", probe, timeout=90, interval=POLL_S)


def _bars_requests(sim: MarketSimulator) -> int:
    return int(sim.stats()["requests_by_path"].get("/v1/bars", 0))


def _wait_for_requests(sim: MarketSimulator, count: int) -> None:
    """Until the simulator has received ``count`` bars requests in all (in flight included): a
    step is then fetching, whatever the machine's load did to its start."""
    wait_for(
        f"{count} bars requests at the simulator",
        lambda: _bars_requests(sim) >= count,
        timeout=90,
        interval=0.1,
    )


def _rabbitmqctl(*args: str) -> None:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# -- the story ---------------------------------------------------------------------------------
def test_a_backfill_on_two_celery_workers_survives_a_lost_worker_and_a_broker_outage(
    cluster: Cluster,
) -> None:
    began = time.monotonic()
    # 1. The backfill: both sources at once, their steps on both workers, one shared quota.
    runs = [
        (source, first, cluster.materialize(source, first, last))
        for source, first, last in BACKFILL
    ]
    for source, first, proc in runs:
        assert proc.wait(timeout=300) == 0, cluster.output(source, first)[-4000:]
    taken = _steps_taken(cluster)
    served = {worker for _, worker, _, _ in taken}
    assert {name.split("@")[0] for name in served} == {"w1", "w2"}, taken
    requests, rejected, most = _quota_windows(cluster.sim)
    log = cluster.sim.request_log()
    t0 = min(e["t"] for e in log)
    timeline = [(round(e["t"] - t0, 3), e["status"]) for e in log]
    assert rejected == 0 and most <= QUOTA, (requests, rejected, most, timeline)
    backfill_rows = sum(_table_equals_reference(cluster, *r) for r in BACKFILL)
    cluster.notes.append(
        f"backfill: {requests} requests, 0 x 429, at most {most} in a {WINDOW_S:g} s window "
        f"(quota {QUOTA}); {backfill_rows} core_bars rows; steps by "
        + ", ".join(sorted({f"{w} pid {pid}" for _, w, pid, _ in taken}))
    )

    # 2. The worker fetching raw/crypto/bars is SIGKILLed mid-step, with its whole tree.
    cluster.sim.set_faults({}, latency_ms=LATENCY_MS)
    step = "raw__crypto__bars"
    before = sum(1 for _, _, _, steps in _steps_taken(cluster) if steps == step)
    fetched = _bars_requests(cluster.sim)
    proc = cluster.materialize(*KILLED)
    victim_name, victim_pid = _wait_for_step(cluster, step, before)
    _wait_for_requests(cluster.sim, fetched + 2)  # mid-step: a day is 12 requests of 1.5 s
    victim = cluster.workers[victim_name.split("@")[0]]
    victim.killed()
    code = proc.wait(timeout=300)
    if code == 0:
        # Resumed: the broker gave the unacknowledged step to the surviving worker.
        rescuer, rescuer_pid = _wait_for_step(cluster, step, before + 1)
        assert rescuer != victim_name, (rescuer, victim_name)
        outcome = f"resumed on {rescuer} pid {rescuer_pid}"
    else:
        outcome = "failed, then run again"
        cluster.sim.set_faults({}, latency_ms=0)
        again = cluster.materialize(*KILLED)
        assert again.wait(timeout=300) == 0, cluster.output(KILLED[0], KILLED[1])[-4000:]
    killed_rows = _table_equals_reference(cluster, *KILLED)
    _no_duplicates(cluster)
    cluster.notes.append(
        f"worker killed: {victim_name} pid {victim_pid} SIGKILLed mid {step}; the run "
        f"{outcome}; {killed_rows} rows, as in process"
    )

    # 3. RabbitMQ stopped mid-step: the run fails naming the broker, nothing half-written.
    cluster.sim.set_faults({}, latency_ms=LATENCY_MS)
    survivor = next(w for w in cluster.workers.values() if w.proc.poll() is None)
    before = sum(1 for _, _, _, steps in _steps_taken(cluster) if steps == step)
    fetched = _bars_requests(cluster.sim)
    proc = cluster.materialize(*BROKER_STOPPED)
    _wait_for_step(cluster, step, before)
    _wait_for_requests(cluster.sim, fetched + 1)  # mid-step
    stopped_at = time.monotonic()
    try:
        _rabbitmqctl("stop_app")
        code = proc.wait(timeout=120)
        failed_after = time.monotonic() - stopped_at
        time.sleep(1.0)  # briefly
    finally:
        _rabbitmqctl("start_app")  # always: other tests, and CI, need the broker
    output = cluster.output(BROKER_STOPPED[0], BROKER_STOPPED[1])
    assert code != 0, output[-4000:]
    vhost = cluster.env["FIN_CELERY_BROKER"].rsplit("/", 1)[1]
    named = f"BrokerUnreachableError: the Celery broker amqp://guest@127.0.0.1:5672/{vhost} "
    assert named + "cannot be reached" in output, output[-4000:]
    assert "guest:guest" not in output  # the password is redacted
    # Each partition is whole or absent: what is there equals the in-process run's.
    partial_rows = _table_equals_reference(cluster, *BROKER_STOPPED, allow_missing=True)
    _no_duplicates(cluster)
    # The step message the broker kept across its restart belongs to a failed run: dropped.
    wait_for(
        "a worker to drop the failed run's step message",
        lambda: "step dropped" in survivor.log.read_text(),
        timeout=60,
        interval=POLL_S,
    )
    cluster.sim.set_faults({}, latency_ms=0)
    again = cluster.materialize(*BROKER_STOPPED)
    assert again.wait(timeout=300) == 0, cluster.output(*BROKER_STOPPED[:2])[-4000:]
    rerun_rows = _table_equals_reference(cluster, *BROKER_STOPPED)
    _no_duplicates(cluster)
    requests, rejected, most = _quota_windows(cluster.sim)
    assert rejected == 0 and most <= QUOTA, (requests, rejected, most)
    cluster.notes.append(
        f"broker stopped: the run failed {failed_after:.1f} s after stop_app naming the broker; "
        f"{partial_rows} rows were there (whole partitions), {rerun_rows} after the re-run; "
        f"{requests} requests in all, 0 x 429, at most {most} per window; "
        f"{time.monotonic() - began:.0f} s"
    )
    print("\n".join(cluster.notes))
