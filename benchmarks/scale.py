"""Scale benchmark (issue 15): 1, 30 and 180 days x 5 symbols, on every path a user is told to use
for a long range, against today's code measured first on the same machine in the same run.

    uv run --frozen python benchmarks/scale.py
        [--paths cli,command,command-pg,command-pgstock,daemon(,submit)]
        [--days 1,30,180] [--service-days 1,180] [--stock-days 1,30] [--info-paths PATHS]
        [--baseline-days 1,30] [--baseline-ref 79139c2] [--baseline-paths cli] [--ref REV]
        [--symbols AAPL,MSFT,GOOG,AMZN,NVDA] [--automation] [--work-dir DIR]

Paths (each range length gets a fresh DAGSTER_HOME, data directory and quota store, in /dev/shm
when there is one; one simulator process with no quota serves every run, so the quota is out of
the way and time is the code's):

- ``cli``: ``dagster asset materialize -m fin_assets.definitions --select raw/bars,core/bars
  --partition-range 2026-01-05-00:00...<last>-23:00`` in its own process. That process is the
  run worker; the steps are its children.
- ``command``: ``fin-assets backfill --select raw/bars,core/bars --partition-range A...B``, the
  same way (it runs the range in its own process too).
- ``command-pg`` (issue 26): the same command on the PostgreSQL instance, the tree's
  deploy/postgres/dagster.yaml (run, schedule and event log storage in PostgreSQL, the event log
  ours: ``FinAssetsPostgresEventLogStorage``, a range run's events in one transaction per
  batch), in a database of its own for each range: ``CREATE DATABASE fin_assets_bench_<hex>``
  through ``FIN_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
  as the tests), dropped ``WITH (FORCE)`` after the range, failed or not.
- ``command-pgstock``: the same with dagster-postgres's stock event log (that yaml with
  ``event_log_storage`` set to ``dagster_postgres.event_log.PostgresEventLogStorage``, the same
  ``postgres_db``): the baseline ``command-pg`` is held to, measured side by side in the same
  run. It is a reference: its own figures are INFO lines, never targets.
- ``daemon``: the production layout of deploy/systemd: ``dagster code-server start``,
  ``dagster-daemon run -w`` and ``dagster-webserver -w`` on a workspace.yaml naming the code
  server; the backfill is submitted as the UI does, GraphQL ``launchPartitionBackfill`` with the
  asset selection and every partition key, and followed (status only, once a second) until it
  is finished. Wall time runs from the submission to the backfill's end; the services' start-up
  is reported apart. Run workers are the code server's children, steps theirs.
- ``submit`` (not in the default ``--paths``: the daemon's backfill again, 5 minutes more): the
  same services, the backfill submitted and followed by ``fin-assets backfill ... --submit``
  (measured too).

``--days`` are the range lengths of cli, command and command-pg; daemon and submit run
``--service-days`` (1 and 180 by default: each range there costs a minute of start-up and of the
backfill daemon's 30 s iterations, and no target uses 30 days); command-pgstock runs
``--stock-days`` (1 and 30 by default: at about 0.18 s a partition, 180 days would take 13
minutes alone).

``command`` and ``submit`` are skipped, with the reason, for a tree where ``fin-assets backfill
--help`` fails (the baseline). The daemon's sensors run as shipped except ``automation_sensor``,
stopped through GraphQL (``stopSensor``, what UI -> Automation does) before the backfill: after
a 180-day backfill it would start the daily tables' runs for 180 days, another workload, on the
same two cores. ``--automation`` leaves it running. Runs the sensors start (freshness checks)
are counted apart ("other runs").

Today's code, the baseline, is ``--baseline-ref`` (79139c2, the last commit before issue 15)
exported with ``git archive`` and run by this same interpreter with its tree as working
directory and PYTHONPATH (so ``fin_assets`` and ``resources`` resolve there: the output names
the ``fin_assets`` each tree imports). Code under test is the working tree by default (what
``make bench-scale`` runs), or ``--ref`` exported the same way.

Every run is checked before it counts: it (the backfill and each of its runs) succeeded, and
every hourly core/bars partition holds 1440 bars per symbol and day. Figures: simulator
requests (``/_sim/stats``), events written (rows of ``event_logs``: each run's
``history/runs/<run_id>.db``, and the asset index ``history/runs/index.db``; on PostgreSQL the
one ``event_logs`` table, counted by type with SQL), the instance's size (its files; on
PostgreSQL ``pg_database_size`` plus the files left in DAGSTER_HOME, compute logs), wall time,
the runs' own time, wall per partition, CPU seconds of every process started (rusage of the
reaped processes; the PostgreSQL server's are apart: the postmaster's and its children's,
cluster-wide, so another user of the server counts too), per-partition overhead
(``(wall(longest) - wall(shortest)) / (partitions(longest) - partitions(shortest))``: the
start-up paid once drops out) and the peak RSS (VmHWM, /proc polled every 50 ms) of every
process, by role (the server's backends are not ours: not watched).

Targets (exit 1 if one is missed; ``--info-paths`` reports a path's as INFO lines): on every
path, for every process role, peak RSS at the longest range <= 1.2x the shortest;
per-partition overhead at the longest range >= 5x lower than the baseline's on the same kind
of path (daemon for submit, cli for command; the baseline's cli when it did not run that one).
The baseline's cost per partition grows with the range, so comparing the 180-day figure with
the baseline's 30-day one is conservative. command-pg (issue 26) is held instead to
dagster-postgres's stock event log, command-pgstock in the same run (>= 5x lower; its longest
range is shorter and its cost per partition grows with the range too: conservative again), and
to the embedded instance on the same path, command (<= 1.5x). A PostgreSQL path that cannot run
(server unreachable, no deploy/postgres/dagster.yaml in the tree) is a FAIL, not a skip. Then
a projection to 5 years x 100 symbols.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks.harness import PROJECT_ROOT, Targets, start_simulator, stop_process, table
from benchmarks.memory import (
    DEFAULT_SYMBOLS,
    FIRST_DAY,
    MIB,
    TreeWatch,
    _ppid,
    check_landed,
    clean_env,
    run_measured,
)
from benchmarks.warehouse_writes import DEFAULT_ADMIN_URL, fresh_database
from tests.helpers import BIN, free_port, materialize_command, wait_for

BASELINE_REF = "79139c2"  # the last commit before issue 15
PATHS = ("cli", "command", "command-pg", "command-pgstock", "daemon", "submit")
# submit is the daemon's backfill again, submitted by the command (about 5 min more): opt-in, so
# that the default run stays within 25 minutes.
DEFAULT_PATHS = ("cli", "command", "command-pg", "command-pgstock", "daemon")
# need `fin-assets backfill`
COMMAND_PATHS = ("command", "command-pg", "command-pgstock", "submit")
SERVICE_PATHS = ("daemon", "submit")  # code server + daemon + webserver
# The PostgreSQL instance (deploy/postgres/dagster.yaml) and the event log each path gives it:
# ours as shipped, or dagster-postgres's own in its place.
POSTGRES_PATHS = {
    "command-pg": None,
    "command-pgstock": ("dagster_postgres.event_log", "PostgresEventLogStorage"),
}
POSTGRES_YAML = Path("deploy") / "postgres" / "dagster.yaml"
# A reference measured beside the code under test, not code under test: INFO lines only.
STOCK_PATH = "command-pgstock"
# What a path is compared with when the baseline did not run it (then its cli).
SAME_KIND = {"cli": "cli", "command": "cli", "daemon": "daemon", "submit": "daemon"}
# Paths held to another HEAD path of this run instead of the baseline: the PostgreSQL instance
# with our event log against the stock one (>= TARGET_SPEEDUP lower) and against the embedded
# instance on the same path (<= TARGET_PG_RATIO).
STOCK_OF = {"command-pg": STOCK_PATH}
EMBEDDED_OF = {"command-pg": "command"}
TARGET_PG_RATIO = 1.5
SELECT = "raw/bars,core/bars"
ASSET_KEYS = (["raw", "bars"], ["core", "bars"])
LOCATION = "fin_assets"
BACKFILL_TAG = "dagster/backfill"
# fin_assets/dagster_internals/runs.py: every run worker tags its run with it
WORKER_TAG = "fin_assets/worker"
# What the command and submit paths run, `--partition-range A...B` (and `--submit`) appended.
BACKFILL_COMMAND = ("fin-assets", "backfill", "--select", SELECT)
TARGET_RSS_RATIO = 1.2
TARGET_SPEEDUP = 5.0
# The projection: 5 years of hourly partitions x 100 symbols; Binance's documented quota.
PROJECTION_DAYS = 1825
PROJECTION_PARTITIONS = PROJECTION_DAYS * 24  # 43,800
PROJECTION_SYMBOLS = 100
BINANCE_WEIGHT_PER_MIN = 6000
BINANCE_KLINES_WEIGHT = 2
# The MemoryMax each service has in deploy/systemd (what a role's peak must stay under).
SYSTEMD_MEMORY_MAX_MIB = {"code server": 1536, "daemon": 384, "webserver": 512}
STATUS_POLL_S = 1.0
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCEEDED = {"COMPLETED", "COMPLETED_SUCCESS"}


# -- the code measured ----------------------------------------------------------------------
@dataclass(frozen=True)
class Tree:
    """A checkout of the project: the working tree, or a commit exported with git archive."""

    name: str  # "HEAD" or "baseline"
    root: Path
    describe: str
    imported: str = ""  # the fin_assets/__init__.py this tree's processes import


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def export_tree(name: str, ref: str, dest: Path) -> Tree:
    """``git archive <ref>`` unpacked into ``dest`` (the repository's worktrees untouched)."""
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    sha = _git("rev-parse", "--short", f"{ref}^{{commit}}")
    return Tree(name, dest, f"{sha} ({_git('log', '-1', '--format=%s', sha)[:60]}...), exported")


def working_tree() -> Tree:
    sha = _git("rev-parse", "--short", "HEAD")
    dirty = _git(
        "status", "--porcelain", "--", "fin_assets", "resources", "dagster.yaml", "deploy/postgres"
    )
    state = " + uncommitted changes in fin_assets/, resources/ or a dagster.yaml" if dirty else ""
    return Tree("HEAD", PROJECT_ROOT, f"{sha}{state} (the working tree {PROJECT_ROOT})")


def tree_env(tree: Tree, root: Path, url: str, symbols: Sequence[str]) -> dict[str, str]:
    """A fresh instance, data directory and quota store under ``root``, the tree's code first on
    the path of every process (code server, run workers and steps inherit it). The instance is
    the embedded one (the tree's dagster.yaml): ``postgres_instance`` replaces it."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(tree.root / "dagster.yaml", home / "dagster.yaml")
    env = clean_env()
    env.pop("PYTHONPATH", None)
    return {
        **env,
        "PYTHONPATH": str(tree.root),
        "DAGSTER_HOME": str(home),
        "FIN_PROVIDER": "simulator",
        "FIN_API_BASE_URL": url,
        "FIN_SYMBOLS": ",".join(symbols),
        "FIN_DATA_DIR": str(root / "data"),
        "FIN_QUOTA_STORE": str(root / "quota.sqlite"),
    }


def postgres_instance(
    tree: Tree, home: Path, database: str, event_log: tuple[str, str] | None
) -> dict[str, str]:
    """The tree's deploy/postgres/dagster.yaml in ``home`` (over the embedded one), its event log
    replaced by ``event_log`` (module, class) when given, and the DAGSTER_PG_* variables it
    reads, for the database at URL ``database``."""
    import yaml  # Dagster's own dependency

    config = yaml.safe_load((tree.root / POSTGRES_YAML).read_text())
    if event_log is not None:
        module, class_name = event_log
        config["event_log_storage"] = {
            "module": module,
            "class": class_name,
            "config": {"postgres_db": config["event_log_storage"]["config"]["postgres_db"]},
        }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    parts = urlsplit(database)
    return {
        "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
        "DAGSTER_PG_USERNAME": parts.username or "postgres",
        "DAGSTER_PG_PASSWORD": parts.password or "",
    }


def postgres_available(tree: Tree) -> str | None:
    """None if the PostgreSQL paths can run ``tree`` here, else why not."""
    if not (tree.root / POSTGRES_YAML).is_file():
        return f"no {POSTGRES_YAML} in this tree"
    import psycopg2

    url = admin_url()
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        where = f"{urlsplit(url).hostname}:{urlsplit(url).port or 5432}"
        return (
            f"PostgreSQL not reachable at {where} ({str(exc).strip().splitlines()[0]}): start it "
            "(`pg_ctlcluster <version> main start`), or point FIN_TEST_POSTGRES_URL at a server"
        )
    return None


def admin_url() -> str:
    return os.environ.get("FIN_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL


def postmaster_pid(database: str) -> int | None:
    """The PostgreSQL server's main process (every backend's parent); None when the server is
    not on this machine (its CPU is then not measured)."""
    import psycopg2

    with closing(psycopg2.connect(database)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = int(cur.fetchone()[0])
    parent = _ppid(backend)
    cmdline = Path(f"/proc/{parent}/cmdline") if parent else None
    if cmdline is None or b"postgres" not in cmdline.read_bytes():
        return None  # a pid of this machine's that is no backend: the server is elsewhere
    return parent


def server_cpu_s(postmaster: int) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster's own and its reaped
    backends' (utime, stime, cutime, cstime of /proc/<pid>/stat), plus its live children's.
    Cluster-wide: other databases' queries count too."""
    ticks = os.sysconf("SC_CLK_TCK")

    def fields(pid: int) -> list[str]:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return []
        return stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "

    own = fields(postmaster)
    total = sum(int(x) for x in own[11:15]) if own else 0  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ppid(int(entry)) == postmaster:
            child = fields(int(entry))
            total += sum(int(x) for x in child[11:13]) if child else 0
    return total / ticks


def which_code(tree: Tree) -> Tree:
    """The tree, with the fin_assets its processes import (checked to be the tree's own)."""
    env = {**clean_env(), "PYTHONPATH": str(tree.root)}
    script = "import fin_assets, resources; print(fin_assets.__file__); print(resources.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tree.root, env=env, capture_output=True, text=True
    )
    files = done.stdout.split()
    if done.returncode != 0 or len(files) != 2:
        raise RuntimeError(f"{tree.name}: cannot import fin_assets: {done.stderr[-2000:]}")
    for file in files:
        if not Path(file).resolve().is_relative_to(tree.root.resolve()):
            raise RuntimeError(f"{tree.name}: imported {file}, not from {tree.root}")
    return Tree(tree.name, tree.root, tree.describe, files[0])


# -- one measured backfill ------------------------------------------------------------------
@dataclass
class Result:
    path: str
    tree: str
    days: int
    partitions: int = 0
    rows: int = 0
    requests: int = 0
    wall_s: float = 0.0  # what the user waits: the command, or submission -> backfill done
    run_s: float = 0.0  # the backfill's runs, start to end (the run records)
    startup_s: float = 0.0  # the services, before the submission (daemon and command paths)
    elapsed_s: float = 0.0  # this piece of the benchmark, start-up and checks included
    cpu_s: float = 0.0  # CPU time of every process the piece started (reaped), start-up included
    # the PostgreSQL server's during the command (cluster-wide; None: not measured)
    server_cpu_s: float | None = None
    postgres: bool = False  # the instance: PostgreSQL (one event_logs table), or embedded
    peaks_kib: dict[str, float] = field(default_factory=dict)  # role -> largest VmHWM
    tree_sum_kib: float = 0.0  # largest sum of RSS over every process watched at once
    events_runs: Counter[str] = field(default_factory=Counter)  # the backfill's run DBs
    events_index: Counter[str] = field(default_factory=Counter)  # index.db
    instance_bytes: int = 0
    runs: int = 0
    other_runs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def per_partition_s(self) -> float:
        return self.wall_s / self.partitions

    @property
    def cpu_per_partition_s(self) -> float:
        return self.cpu_s / self.partitions

    @property
    def events_per_partition(self) -> float:
        return sum(self.events_runs.values()) / self.partitions


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped descendants: each process's parent waits for it
    (the harness for its commands and services, they for their run workers and steps)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def partition_keys(days: int) -> list[str]:
    return [
        f"{FIRST_DAY + timedelta(days=d)}-{hour:02d}:00" for d in range(days) for hour in range(24)
    ]


def partition_range(days: int) -> str:
    return f"{FIRST_DAY}-00:00...{FIRST_DAY + timedelta(days=days - 1)}-23:00"


def sim_requests(admin: httpx.Client) -> int:
    return int(admin.get("/_sim/stats").json()["requests"])


def _read_only(db: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True))


def _event_types(db: Path) -> Counter[str]:
    with _read_only(db) as conn:
        rows = conn.execute(
            "SELECT dagster_event_type, count(*) FROM event_logs GROUP BY dagster_event_type"
        ).fetchall()
    return Counter({str(kind or "(log line)"): int(n) for kind, n in rows})


RUNS_SQL = "SELECT run_id, status, start_time, end_time FROM runs"
TAGS_SQL = "SELECT run_id, key, value FROM run_tags WHERE key IN ({0}, {0})"
EVENTS_SQL = "SELECT dagster_event_type, count(*) FROM event_logs"


def _postgres_instance_rows(database: str) -> tuple[list[Any], list[Any]]:
    """Runs and tags of the PostgreSQL instance at ``database`` (dagster-postgres's tables)."""
    import psycopg2

    with closing(psycopg2.connect(database)) as conn, conn.cursor() as cur:
        cur.execute(RUNS_SQL)
        runs = cur.fetchall()
        cur.execute(TAGS_SQL.format("%s"), (BACKFILL_TAG, WORKER_TAG))
        return runs, cur.fetchall()


def _postgres_events(database: str, run_ids: list[str]) -> tuple[Counter[str], int]:
    """Events of ``run_ids`` by type, and the database's size in bytes."""
    import psycopg2

    with closing(psycopg2.connect(database)) as conn, conn.cursor() as cur:
        cur.execute(f"{EVENTS_SQL} WHERE run_id = ANY(%s) GROUP BY dagster_event_type", (run_ids,))
        kinds = Counter({str(kind or "(log line)"): int(n) for kind, n in cur.fetchall()})
        cur.execute("SELECT pg_database_size(current_database())")
        return kinds, int(cur.fetchone()[0])


def read_instance(
    result: Result, home: Path, backfill_id: str | None, database: str | None = None
) -> set[int]:
    """Runs, events and size of the instance at ``home`` (SQLite), or in ``database`` (a
    PostgreSQL URL; its size then adds the files left in ``home``, compute logs); the
    backfill's runs (or, with no backfill, every run) must have succeeded. Returns the process
    ids of their run workers (the ``fin_assets/worker`` tag, ``<host>:<pid>:<start ticks>``,
    fin_assets/dagster_internals/runs.py)."""
    history = home / "history"
    if database is not None:
        runs, tags = _postgres_instance_rows(database)
    else:
        with _read_only(history / "runs.db") as conn:
            runs = conn.execute(RUNS_SQL).fetchall()
            tags = conn.execute(TAGS_SQL.format("?"), (BACKFILL_TAG, WORKER_TAG)).fetchall()
    tagged = {run_id for run_id, key, value in tags if key == BACKFILL_TAG and value == backfill_id}
    ours = [r for r in runs if backfill_id is None or r[0] in tagged]
    if not ours:
        raise RuntimeError(f"no run of backfill {backfill_id} in {home}")
    failed = [f"{r[0]}: {r[1]}" for r in ours if r[1] != "SUCCESS"]
    if failed:
        raise RuntimeError(f"runs did not succeed: {failed}")
    result.runs, result.other_runs = len(ours), len(runs) - len(ours)
    result.run_s = sum((end or 0.0) - (start or 0.0) for _, _, start, end in ours)
    files = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    if database is not None:
        result.postgres = True
        result.events_runs, size = _postgres_events(database, [r[0] for r in ours])
        result.instance_bytes = size + files
    else:
        for run_id, *_ in ours:
            result.events_runs += _event_types(history / "runs" / f"{run_id}.db")
        result.events_index = _event_types(history / "runs" / "index.db")
        result.instance_bytes = files
    ids = {r[0] for r in ours}
    return {
        int(value.split(":")[1])
        for run_id, key, value in tags
        if key == WORKER_TAG and run_id in ids and value.count(":") == 2
    }


def backfill_command(days: int, *more: str) -> list[str]:
    return [
        str(BIN / BACKFILL_COMMAND[0]),
        *BACKFILL_COMMAND[1:],
        *("--partition-range", partition_range(days), *more),
    ]


def measure_here(
    path: str,
    tree: Tree,
    days: int,
    symbols: Sequence[str],
    url: str,
    admin: httpx.Client,
    tmp: Path,
) -> Result:
    """The cli and command paths (command-pg and command-pgstock: in a database of their own,
    dropped afterwards): one process runs the range (it is the run worker)."""
    began = time.monotonic()
    root = tmp / f"{tree.name}-{path}-{days}d"
    env = tree_env(tree, root, url, symbols)
    if path == "cli":
        rng = partition_range(days)
        command = [sys.executable, "-m", *materialize_command(SELECT, "--partition-range", rng)]
    else:
        command = backfill_command(days)
    home = Path(env["DAGSTER_HOME"])
    with ExitStack() as stack:
        database: str | None = None
        postmaster: int | None = None
        if path in POSTGRES_PATHS:
            database = stack.enter_context(fresh_database())
            env.update(postgres_instance(tree, home, database, POSTGRES_PATHS[path]))
            postmaster = postmaster_pid(database)
        before, cpu = sim_requests(admin), children_cpu_s()
        server = server_cpu_s(postmaster) if postmaster else 0.0
        log = root / "run.log"
        code, seconds, _, watch = run_measured(command, env=env, log=log, cwd=tree.root)
        if code != 0:
            raise RuntimeError(
                f"{tree.name} {path} {days} d failed ({code}): {log.read_text()[-3000:]}"
            )
        result = Result(
            path, tree.name, days, requests=sim_requests(admin) - before, wall_s=seconds
        )
        result.cpu_s = children_cpu_s() - cpu
        if postmaster:
            result.server_cpu_s = server_cpu_s(postmaster) - server
        result.partitions, result.rows = check_landed(root / "data", days, len(symbols))
        names = {"run worker": f"{PROCESS[path]} = run worker", "step": "step", "other": "other"}
        result.peaks_kib = {names[role]: watch.peak_of(role) for role in set(watch.roles.values())}
        result.tree_sum_kib = watch.max_sum_kib
        read_instance(result, home, None, database)
    result.elapsed_s = time.monotonic() - began
    return result


# -- the daemon's services ------------------------------------------------------------------
PROCESS = {
    "cli": "cli",
    "command": "fin-assets backfill",
    "command-pg": "fin-assets backfill",
    "command-pgstock": "fin-assets backfill",
    "submit": "fin-assets backfill --submit",
}
SPAWNED = "multiprocessing child"
OTHER_RUNS = "other runs (workers, steps)"


def role_of(cmdline: str) -> str:
    """A service's role from its command line; a run worker or a step is a ``SPAWNED`` child
    (multiprocessing's spawn: the code server starts run workers so, run workers their steps),
    told apart by ``ServicesWatch.settle``."""
    if "dagster-daemon" in cmdline:
        return "daemon"
    if "code-server" in cmdline:
        return "code server"
    if "api grpc" in cmdline:
        return "code server's gRPC child"
    if "dagster-webserver" in cmdline:
        return "webserver"
    if "multiprocessing.spawn" in cmdline:
        return SPAWNED
    return "other"  # multiprocessing's resource tracker, the compute-log tailer


@dataclass
class ServicesWatch(TreeWatch):
    """``TreeWatch`` over every process below several roots (the services), each process given a
    role from its command line; run workers of runs other than the backfill's are told apart at
    the end (``settle``)."""

    roots: list[int] = field(default_factory=list)
    cmdlines: dict[int, str] = field(default_factory=dict)
    parent_of: dict[int, int] = field(default_factory=dict)

    def _members(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                parent = _ppid(int(entry))
                if parent is not None:
                    children.setdefault(parent, []).append(int(entry))
        members, frontier = [], [pid for pid in list(self.roots) if os.path.exists(f"/proc/{pid}")]
        while frontier:
            members += frontier
            frontier = [child for pid in frontier for child in children.get(pid, [])]
        return members

    def _role(self, pid: int) -> str:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return "other"
        self.cmdlines[pid] = raw.replace(b"\0", b" ").decode(errors="replace")
        self.parent_of[pid] = _ppid(pid) or 0
        return role_of(self.cmdlines[pid])

    def settle(self, workers: set[int]) -> None:
        """Final roles: a code server's spawned child is a run worker, a run worker's a step;
        those of runs whose worker is not in ``workers`` (the backfill's) are "other runs"."""

        def role(pid: int) -> str:
            own = role_of(self.cmdlines.get(pid, ""))
            if own != SPAWNED:
                return own
            parent = self.parent_of.get(pid, 0)
            if role_of(self.cmdlines.get(parent, "")) in (
                "code server",
                "code server's gRPC child",
            ):
                return "run worker" if pid in workers else OTHER_RUNS
            if role_of(self.cmdlines.get(parent, "")) == SPAWNED:
                return "step" if parent in workers else OTHER_RUNS
            return "other"

        for pid in self.roles:
            self.roles[pid] = role(pid)

    def alive(self) -> list[tuple[int, str]]:
        """The processes seen that still run with the command line they had."""
        left = []
        for pid, cmdline in self.cmdlines.items():
            try:
                now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):
                continue
            if now == cmdline:
                left.append((pid, cmdline))
        return left


class GraphQL:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=120.0)

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return dict(body["data"])

    def serving(self) -> bool:
        try:
            return self.client.get("/server_info", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.client.close()


LOCATION_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
DAEMONS_QUERY = """
query { instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }
"""
SENSORS_QUERY = """
query($location: String!) {
  sensorsOrError(repositorySelector: {repositoryName: "__repository__",
                                      repositoryLocationName: $location}) {
    __typename ... on Sensors { results { name sensorState { id status } } }
    ... on PythonError { message }
  }
}
"""
STOP_SENSOR = """
mutation($id: String!) { stopSensor(id: $id) { __typename
  ... on StopSensorMutationResult { instigationState { status } }
  ... on PythonError { message } } }
"""
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""
BACKFILL_STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status } ... on PythonError { message } } }
"""
LATEST_BACKFILL = """
query { partitionBackfillsOrError(limit: 1) {
  ... on PartitionBackfills { results { id status } } } }
"""


def _location_loaded(gql: GraphQL) -> bool:
    entries = gql(LOCATION_QUERY)["workspaceOrError"].get("locationEntries") or []
    for entry in entries:
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            raise RuntimeError(f"the code location failed to load: {loaded['message']}")
        if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" and loaded:
            return True
    return False


def _daemons_healthy(gql: GraphQL) -> bool:
    statuses = gql(DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return any(s["daemonType"] == "BACKFILL" and s["healthy"] for s in statuses)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def services(
    tree: Tree, env: dict[str, str], root: Path, watch: ServicesWatch, *, automation: bool
) -> Iterator[GraphQL]:
    """Code server, daemon and webserver of ``tree`` on the instance of ``env``, ready (the code
    location loaded, the backfill daemon healthy), watched by ``watch``; everything they started
    is gone afterwards."""
    code_port, web_port = free_port(), free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n"
        f"      host: 127.0.0.1\n      port: {code_port}\n      location_name: {LOCATION}\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    gql = GraphQL(f"http://127.0.0.1:{web_port}")
    poller = threading.Thread(target=watch.run, daemon=True)

    def start(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (root / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(
                command, cwd=tree.root, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        procs.append(proc)
        watch.roots.append(proc.pid)
        return proc

    def up(what: str, probe: Any) -> Any:
        def check() -> Any:
            for proc in procs:
                if proc.poll() is not None:
                    logs = "\n".join(p.read_text()[-1500:] for p in sorted(root.glob("*.log")))
                    raise RuntimeError(f"a service exited ({proc.args!r}):\n{logs}")
            return probe()

        return wait_for(what, check, timeout=240, interval=0.5)

    try:
        code = ["code-server", "start", "-m", "fin_assets.definitions", "-h", "127.0.0.1"]
        start("code-server", [str(BIN / "dagster"), *code, "-p", str(code_port)])
        poller.start()
        up("the code server", lambda: _listening(code_port))
        start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)])
        web = ["-w", str(workspace), "-h", "127.0.0.1", "-p", str(web_port)]
        start("webserver", [str(BIN / "dagster-webserver"), *web])
        up("the webserver", gql.serving)
        up("the code location", lambda: _location_loaded(gql))
        up("the backfill daemon", lambda: _daemons_healthy(gql))
        if not automation:
            sensors = gql(SENSORS_QUERY, location=LOCATION)["sensorsOrError"]
            found = [s for s in sensors.get("results", []) if s["name"] == "automation_sensor"]
            for sensor in found:
                stopped = gql(STOP_SENSOR, id=sensor["sensorState"]["id"])["stopSensor"]
                if stopped.get("instigationState", {}).get("status") != "STOPPED":
                    raise RuntimeError(f"could not stop automation_sensor: {stopped}")
        yield gql
    finally:
        gql.close()
        watch.stop()
        if poller.is_alive():
            poller.join()
        for proc in reversed(procs):  # webserver, daemon, then the code server they use
            stop_process(proc, timeout=30)
        # Run workers the code server started outlive it: end those this benchmark caused.
        for pid, _ in watch.alive():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _finished(gql: GraphQL, backfill_id: str) -> str | None:
    found = gql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
    if found["__typename"] != "PartitionBackfill":
        raise RuntimeError(f"backfill {backfill_id}: {found}")
    return found["status"] if found["status"] in FINISHED else None


def measure_service(
    path: str,
    tree: Tree,
    days: int,
    symbols: Sequence[str],
    url: str,
    admin: httpx.Client,
    tmp: Path,
    *,
    automation: bool,
) -> Result:
    began = time.monotonic()
    root = tmp / f"{tree.name}-{path}-{days}d"
    env = tree_env(tree, root, url, symbols)
    result = Result(path, tree.name, days)
    watch = ServicesWatch(root=0)
    keys = partition_keys(days)
    hang_guard = 300 + 1.0 * len(keys)
    cpu = children_cpu_s()
    with ExitStack() as stack:
        gql = stack.enter_context(services(tree, env, root, watch, automation=automation))
        result.startup_s = time.monotonic() - began
        before = sim_requests(admin)
        submitted = time.perf_counter()
        if path == "daemon":
            params = {"assetSelection": [{"path": k} for k in ASSET_KEYS], "partitionNames": keys}
            launched = gql(LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
            if launched["__typename"] != "LaunchBackfillSuccess":
                raise RuntimeError(f"launchPartitionBackfill: {launched}")
            backfill_id = str(launched["backfillId"])
        else:
            command = backfill_command(days, "--submit")
            log = root / "command.log"
            code, _, _, cmd_watch = run_measured(command, env=env, log=log, cwd=tree.root)
            if code != 0:
                raise RuntimeError(f"{' '.join(command[1:])} failed ({code}): {log.read_text()}")
            found = gql(LATEST_BACKFILL)["partitionBackfillsOrError"].get("results") or []
            if not found:
                raise RuntimeError(f"the command left no backfill: {log.read_text()[-2000:]}")
            backfill_id = str(found[0]["id"])
            for role in set(cmd_watch.roles.values()):
                name = PROCESS[path] if role == "run worker" else f"{PROCESS[path]}'s {role}"
                result.peaks_kib[name] = cmd_watch.peak_of(role)
        status = wait_for(
            f"backfill {backfill_id} ({days} days) to finish",
            lambda: _finished(gql, backfill_id),
            timeout=hang_guard,
            interval=STATUS_POLL_S,
        )
        result.wall_s = time.perf_counter() - submitted
        result.requests = sim_requests(admin) - before
        if status not in SUCCEEDED:
            logs = (root / "daemon.log").read_text()[-3000:]
            raise RuntimeError(f"backfill {backfill_id} ended {status}; daemon log:\n{logs}")
    # The services are stopped (the watch with them): the instance is read at rest.
    result.cpu_s = children_cpu_s() - cpu
    workers = read_instance(result, Path(env["DAGSTER_HOME"]), backfill_id)
    watch.settle(workers)
    if "run worker" not in watch.roles.values():
        result.notes.append(
            f"{path} {days} d: no process seen was the backfill's run worker (pids {workers}): "
            f"its processes may be counted as other runs' (see {root / 'processes.txt'})"
        )
    with (root / "processes.txt").open("w") as out:  # what each role is made of, for a reader
        print(f"backfill {backfill_id}, run workers {sorted(workers)}", file=out)
        for pid, role in sorted(watch.roles.items()):
            print(
                f"{pid:>7} parent {watch.parent_of.get(pid, 0):>7} {watch.peaks[pid] / MIB:7.1f} "
                f"MiB {role:<30} {watch.cmdlines.get(pid, '')[:160]}",
                file=out,
            )
    for role in set(watch.roles.values()):
        result.peaks_kib[role] = watch.peak_of(role)
    result.tree_sum_kib = watch.max_sum_kib
    result.partitions, result.rows = check_landed(root / "data", days, len(symbols))
    result.elapsed_s = time.monotonic() - began
    return result


@functools.cache
def command_available(tree: Tree) -> str | None:
    """None if ``fin-assets backfill --help`` works in ``tree``, else why not."""
    env = {**clean_env(), "PYTHONPATH": str(tree.root)}
    command = [str(BIN / BACKFILL_COMMAND[0]), BACKFILL_COMMAND[1], "--help"]
    done = subprocess.run(command, cwd=tree.root, env=env, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    said = (done.stderr or done.stdout).strip().splitlines()
    return f"`fin-assets backfill --help` exits {done.returncode}: {said[-1] if said else ''}"


# -- report ---------------------------------------------------------------------------------
def mib(kib: float) -> str:
    return f"{kib / MIB:.1f}" if kib else "—"


def events(counter: Counter[str]) -> str:
    return f"{sum(counter.values()):,}"


def path_tables(results: list[Result]) -> str:
    """Two tables for one path: what each run did and cost, and the peak RSS of each role."""
    figures = table(
        [
            "code",
            "days",
            "partitions",
            "rows",
            "requests",
            "events (run DBs)",
            "events (index.db)",
            "events/partition",
            "instance MiB",
            "runs (+other)",
            "start-up s",
            "wall s",
            "run s",
            "s/partition",
            "CPU s",
            "CPU s/partition",
            "PG server CPU s",
        ],
        [
            [
                r.tree,
                r.days,
                r.partitions,
                f"{r.rows:,}",
                r.requests,
                events(r.events_runs),
                "—" if r.postgres else events(r.events_index),
                f"{r.events_per_partition:.1f}",
                f"{r.instance_bytes / MIB / MIB:.1f}",
                f"{r.runs} (+{r.other_runs})",
                f"{r.startup_s:.1f}" if r.startup_s else "—",
                f"{r.wall_s:.1f}",
                f"{r.run_s:.1f}",
                f"{r.per_partition_s:.3f}",
                f"{r.cpu_s:.1f}",
                f"{r.cpu_per_partition_s:.3f}",
                "—" if r.server_cpu_s is None else f"{r.server_cpu_s:.1f}",
            ]
            for r in results
        ],
    )
    roles = sorted({role for r in results for role in r.peaks_kib}, key=role_order)
    memory = table(
        ["peak RSS MiB", *(f"{r.tree} {r.days} d" for r in results)],
        [
            *([role, *(mib(r.peaks_kib.get(role, 0.0)) for r in results)] for role in roles),
            ["sum over processes", *(mib(r.tree_sum_kib) for r in results)],
        ],
    )
    return f"{figures}\n\n{memory}"


ROLE_ORDER = (
    "cli = run worker",
    "fin-assets backfill = run worker",
    "fin-assets backfill --submit",
    "webserver",
    "daemon",
    "code server",
    "code server's gRPC child",
    "run worker",
    "step",
    OTHER_RUNS,
)


def role_order(role: str) -> tuple[int, str]:
    return (ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER), role)


def by_type(counter: Counter[str], partitions: int) -> str:
    """Events per partition by type: those at >= 0.1 a partition, the rest summed."""
    shown = [(k, v / partitions) for k, v in counter.most_common()]
    big = [f"{k} {v:.2f}" for k, v in shown if v >= 0.1]
    rest = sum(v for _, v in shown if v < 0.1)
    return ", ".join(big + ([f"the rest {rest:.2f}"] if rest else []))


def overhead(results: list[Result], what: str = "wall") -> tuple[float, str]:
    """Per-partition overhead (``what``: "wall", "run" or "cpu" seconds) between the shortest and
    the longest range (plain seconds per partition with one range only), and how it was
    computed."""
    short, long = results[0], results[-1]
    seconds = {
        "wall": lambda r: r.wall_s,
        "run": lambda r: r.run_s,
        "cpu": lambda r: r.cpu_s,
        "server CPU": lambda r: r.server_cpu_s or 0.0,
    }[what]
    if long.partitions == short.partitions:
        return seconds(long) / long.partitions, f"{what}/partition at {long.days} d (one range)"
    slope = (seconds(long) - seconds(short)) / (long.partitions - short.partitions)
    return slope, (
        f"({what} {long.days} d - {what} {short.days} d) / ({long.partitions} - {short.partitions})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--days",
        default="1,30,180",
        help="range lengths in days (HEAD; cli, command and command-pg)",
    )
    parser.add_argument(
        "--stock-days",
        default="1,30",
        help=f"range lengths of {STOCK_PATH} (dagster-postgres's stock event log; '' = --days)",
    )
    parser.add_argument(
        "--service-days",
        default="1,180",
        help="range lengths of the daemon and submit paths ('' = --days)",
    )
    parser.add_argument(
        "--paths", default=",".join(DEFAULT_PATHS), help=f"any of {', '.join(PATHS)}"
    )
    parser.add_argument(
        "--baseline-days", default="1,30", help="range lengths for the baseline ('' = none)"
    )
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--baseline-paths", default="cli", help="paths the baseline runs")
    parser.add_argument("--ref", default=None, help="measure this commit, not the working tree")
    parser.add_argument(
        "--info-paths", default="", help="paths measured but not held to the targets"
    )
    parser.add_argument("--symbols", default=DEFAULT_SYMBOLS)
    parser.add_argument(
        "--automation", action="store_true", help="leave automation_sensor running (daemon)"
    )
    parser.add_argument("--work-dir", default=None, help="keep instances and logs here")
    args = parser.parse_args(argv)

    def numbers(text: str) -> list[int]:
        return sorted({int(d) for d in text.split(",") if d.strip()})

    def names(text: str) -> list[str]:
        chosen = [p.strip() for p in text.split(",") if p.strip()]
        if unknown := set(chosen) - set(PATHS):
            parser.error(f"unknown path(s) {sorted(unknown)}: expected {', '.join(PATHS)}")
        return [p for p in PATHS if p in chosen]

    lengths, baseline_lengths = numbers(args.days), numbers(args.baseline_days)
    service_lengths = numbers(args.service_days) or lengths
    stock_lengths = numbers(args.stock_days) or lengths
    paths, baseline_paths = names(args.paths), names(args.baseline_paths)
    info_paths = names(args.info_paths)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not lengths or min(lengths + baseline_lengths + service_lengths + stock_lengths) < 1:
        parser.error("--days needs positive day counts")
    if not symbols or not paths:
        parser.error("--symbols needs a symbol, --paths a path")

    began = time.monotonic()
    shm = Path("/dev/shm")
    scratch = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with ExitStack() as stack:
        if args.work_dir:
            tmp = Path(args.work_dir).resolve()
            tmp.mkdir(parents=True, exist_ok=False)
        else:
            tmp = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="fin-scale-", dir=scratch))
            )
        head = which_code(
            export_tree("HEAD", args.ref, tmp / "head") if args.ref else working_tree()
        )
        baseline = None
        if baseline_lengths:
            baseline = which_code(export_tree("baseline", args.baseline_ref, tmp / "baseline"))
        print(f"HEAD:     {head.describe}\n          imports {head.imported}")
        if baseline:
            print(f"baseline: {baseline.describe}\n          imports {baseline.imported}")
        skipped: dict[str, str] = {}
        plan: list[tuple[Tree, str, int]] = []
        for tree, chosen, days_of in (
            (baseline, baseline_paths, baseline_lengths),
            (head, paths, lengths),
        ):
            if tree is None:
                continue
            for path in chosen:
                why = command_available(tree) if path in COMMAND_PATHS else None
                if path in POSTGRES_PATHS:
                    why = why or postgres_available(tree)
                if why:
                    skipped[f"{tree.name} {path}"] = why
                    print(f"{tree.name} {path} path skipped: {why}")
                    continue
                lengths_of = days_of
                if tree is head and path in SERVICE_PATHS:
                    lengths_of = service_lengths
                elif tree is head and path == STOCK_PATH:
                    lengths_of = stock_lengths
                plan += [(tree, path, d) for d in lengths_of]
        sim, url = start_simulator(log_path=tmp / "simulator.log")
        stack.callback(stop_process, sim)
        print(f"simulator {url} (no quota); {len(symbols)} symbols; {len(plan)} backfills\n")
        results: list[Result] = []
        with httpx.Client(base_url=url, timeout=30.0) as admin:
            for tree, path, days in plan:
                if path not in SERVICE_PATHS:
                    result = measure_here(path, tree, days, symbols, url, admin, tmp)
                else:
                    result = measure_service(
                        path, tree, days, symbols, url, admin, tmp, automation=args.automation
                    )
                results.append(result)
                print(
                    f"  {tree.name:8} {path:15} {days:4} d: wall {result.wall_s:7.1f} s "
                    f"({result.per_partition_s:.3f} s/partition), CPU {result.cpu_s:7.1f} s, "
                    f"whole piece {result.elapsed_s:6.1f} s; load average "
                    f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
                    flush=True,
                )

    targets = report(results, skipped, len(symbols), info_paths)
    code = targets.report()
    runtime = time.monotonic() - began
    print(f"\nruntime {runtime:.1f} s ({runtime / 60:.1f} min)")
    return code


def report(
    results: list[Result], skipped: dict[str, str], symbols: int, info_paths: Sequence[str]
) -> Targets:
    """The tables of each path, then the targets (INFO lines for ``info_paths``) and the
    projection."""
    targets = Targets()
    by_path: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by_path.setdefault((r.tree, r.path), []).append(r)
    for path in PATHS:
        rows = by_path.get(("baseline", path), []) + by_path.get(("HEAD", path), [])
        if not rows:
            continue
        print(f"\n### {path}\n")
        print(path_tables(rows))
        print()
        for r in (rows[0], rows[-1]) if rows[0] is not rows[-1] else rows[:1]:
            print(
                f"events per partition by type, {r.tree} {r.days} d: "
                f"{by_type(r.events_runs, r.partitions)}"
            )
        for r in rows:
            for note in r.notes:
                print(f"NOTE {r.tree} {note}")
    print()
    baseline: dict[str, tuple[float, float, int]] = {}  # path -> wall, CPU overhead, days
    for path in PATHS:
        if runs := by_path.get(("baseline", path)):
            (wall, how), (cpu, _) = overhead(runs), overhead(runs, "cpu")
            baseline[path] = (wall, cpu, runs[-1].days)
            targets.note(
                f"baseline {path}: per-partition overhead",
                f"{wall:.4f} s wall, {cpu:.4f} s CPU, {overhead(runs, 'run')[0]:.4f} s of the "
                f"runs' own time = {how}",
            )
    for path in PATHS:
        runs = by_path.get(("HEAD", path))
        if not runs:
            if f"HEAD {path}" in skipped and path in POSTGRES_PATHS:
                # The PostgreSQL instance is what issue 26 measures: not measuring it is a miss.
                targets.check(f"{path} path", False, skipped[f"HEAD {path}"])
            elif f"HEAD {path}" in skipped:
                targets.skip(f"{path} path", skipped[f"HEAD {path}"])
            continue
        short, long = runs[0], runs[-1]
        check = targets.check
        if path in info_paths or path == STOCK_PATH:
            why = "a reference" if path == STOCK_PATH else "--info-paths"

            def check(name: str, passed: bool, shown: str, why: str = why) -> None:
                targets.note(f"{name} (not a target here: {why})", shown)

        (wall, how), (cpu, _) = overhead(runs), overhead(runs, "cpu")
        server = (
            f", PostgreSQL server {overhead(runs, 'server CPU')[0]:.4f} s CPU (cluster-wide)"
            if long.server_cpu_s is not None
            else ""
        )
        targets.note(
            f"HEAD {path}: per-partition overhead",
            f"{wall:.4f} s wall, {cpu:.4f} s CPU{server}, {overhead(runs, 'run')[0]:.4f} s of "
            f"the runs' own time = {how}",
        )
        if long is short:
            targets.skip(f"{path}: peak RSS {long.days} d / shortest", "needs two lengths (--days)")
        else:
            for role in sorted(set(short.peaks_kib) & set(long.peaks_kib), key=role_order):
                big, small = long.peaks_kib[role], short.peaks_kib[role]
                if big and small:
                    check(
                        f"{path}: peak RSS of {role}, {long.days} d / {short.days} d "
                        f"<= {TARGET_RSS_RATIO}",
                        big / small <= TARGET_RSS_RATIO,
                        f"{big / small:.3f} ({mib(big)} vs {mib(small)} MiB)",
                    )
            for role in sorted(set(long.peaks_kib) ^ set(short.peaks_kib), key=role_order):
                targets.note(f"{path}: {role}", "seen at one length only: no ratio")
        for role, limit in SYSTEMD_MEMORY_MAX_MIB.items():
            if role in long.peaks_kib:
                targets.note(
                    f"{path}: {role} at {long.days} d",
                    f"{mib(long.peaks_kib[role])} MiB of deploy/systemd's MemoryMax={limit}M",
                )
        if path == STOCK_PATH:
            continue  # the reference of command-pg, below: no target, no projection
        if path in STOCK_OF:
            postgres_targets(targets, path, by_path, check)
            project(targets, path, runs, symbols)
            continue
        against = next(p for p in (path, SAME_KIND[path], "cli", "") if p in baseline or not p)
        if against in baseline:
            base_wall, base_cpu, base_days = baseline[against]
            name = (
                f"{path}: per-partition overhead at {long.days} d >= {TARGET_SPEEDUP:g}x lower "
                f"than the baseline's ({against} at {base_days} d: conservative, the baseline's "
                f"cost per partition grows with the range)"
            )
            if wall > 0 and base_wall > 0:
                speedup = base_wall / wall
                shown = f"{speedup:.1f}x ({wall:.4f} vs {base_wall:.4f} s wall)"
                check(name, speedup >= TARGET_SPEEDUP, shown)
            else:  # a longer range in less time: noise (a busy machine), not a measurement
                shown = f"not measurable: {wall:.4f} vs {base_wall:.4f} s (ranges too close?)"
                check(name, False, shown)
            targets.note(
                f"{path}: the same in CPU seconds (less sensitive to a busy machine)",
                (f"{base_cpu / cpu:.1f}x " if cpu > 0 else "")
                + f"({cpu:.4f} vs {base_cpu:.4f} s CPU)",
            )
        else:
            targets.skip(f"{path}: per-partition overhead vs the baseline", "no baseline measured")
        project(targets, path, runs, symbols)
    return targets


def postgres_targets(
    targets: Targets,
    path: str,
    by_path: dict[tuple[str, str], list[Result]],
    check: Any,
) -> None:
    """Issue 26's: ``path``'s per-partition overhead (the PostgreSQL instance, our event log)
    >= TARGET_SPEEDUP lower than with dagster-postgres's stock event log, and <= TARGET_PG_RATIO
    the embedded instance's on the same path, all measured in this run."""
    runs = by_path[("HEAD", path)]
    wall, cpu, server = (overhead(runs, what)[0] for what in ("wall", "cpu", "server CPU"))
    long = runs[-1]
    for other, relation in ((STOCK_OF[path], "stock"), (EMBEDDED_OF[path], "embedded")):
        theirs = by_path.get(("HEAD", other))
        if relation == "stock":
            name = (
                f"{path}: per-partition overhead at {long.days} d >= {TARGET_SPEEDUP:g}x lower "
                f"than dagster-postgres's stock event log ({other}"
            )
        else:
            name = (
                f"{path}: per-partition overhead at {long.days} d <= {TARGET_PG_RATIO:g}x the "
                f"embedded instance's ({other}"
            )
        if not theirs:
            check(f"{name})", False, f"{other} was not measured (--paths)")
            continue
        other_wall, other_cpu = overhead(theirs)[0], overhead(theirs, "cpu")[0]
        other_server = overhead(theirs, "server CPU")[0]
        at = f" at {theirs[-1].days} d"
        if relation == "stock" and theirs[-1].days < long.days:
            at += ": conservative, the stock cost per partition grows with the range"
        elif relation == "embedded" and theirs[-1].days != long.days:
            at += f", not {long.days} d: ranges differ"
        if wall <= 0 or other_wall <= 0:  # a longer range in less time: noise, not a measurement
            check(f"{name}{at})", False, f"not measurable: {wall:.4f} vs {other_wall:.4f} s")
            continue
        if relation == "stock":
            ratio = other_wall / wall
            check(
                f"{name}{at})",
                ratio >= TARGET_SPEEDUP,
                f"{ratio:.1f}x ({wall:.4f} vs {other_wall:.4f} s wall)",
            )
        else:
            ratio = wall / other_wall
            check(
                f"{name}{at})",
                ratio <= TARGET_PG_RATIO,
                f"{ratio:.2f}x ({wall:.4f} vs {other_wall:.4f} s wall)",
            )
        ours_all, theirs_all = cpu + server, other_cpu + other_server
        targets.note(
            f"{path} vs {other}: the same in CPU seconds, the processes started + the PostgreSQL "
            f"server's (cluster-wide)",
            f"{cpu:.4f} + {server:.4f} = {ours_all:.4f} vs {other_cpu:.4f} + {other_server:.4f} "
            f"= {theirs_all:.4f} s"
            + (f" ({theirs_all / ours_all:.2f}x)" if ours_all > 0 and theirs_all > 0 else ""),
        )


def project(targets: Targets, path: str, runs: list[Result], symbols: int) -> None:
    """5 years x 100 symbols from the ranges measured on ``path``."""
    short, long = runs[0], runs[-1]
    slope = max(0.0, overhead(runs)[0])
    per_symbol_day = long.requests / (long.days * symbols)
    requests = per_symbol_day * PROJECTION_DAYS * PROJECTION_SYMBOLS
    fetch_min = requests * BINANCE_KLINES_WEIGHT / BINANCE_WEIGHT_PER_MIN
    overhead_min = PROJECTION_PARTITIONS * slope / 60
    fixed_min = max(0.0, long.wall_s - slope * long.partitions) / 60
    name = f"{path}: projection to 5 years x {PROJECTION_SYMBOLS} symbols"
    targets.note(
        name,
        f"{(fetch_min + overhead_min + fixed_min) / 60:.1f} h = fetching {fetch_min:.0f} min "
        f"(quota-bound) + per-partition overhead {overhead_min:.0f} min + fixed {fixed_min:.1f} "
        f"min, for {PROJECTION_PARTITIONS:,} hourly partitions",
    )
    targets.note(
        f"{name}, assumptions",
        f"{requests:,.0f} requests = {per_symbol_day:.2f} a symbol-day (measured at "
        f"{long.days} d; the simulator's pages are 1000 bars, as Binance's klines) x "
        f"{PROJECTION_DAYS} days x {PROJECTION_SYMBOLS} symbols, weight {BINANCE_KLINES_WEIGHT} "
        f"each against Binance's documented {BINANCE_WEIGHT_PER_MIN} weight/min (the "
        f"unquoted simulator fetches far faster); the overhead measured here, {slope:.4f} s a "
        f"partition at {symbols} symbols (the per-row work of {PROJECTION_SYMBOLS} symbols, "
        f"{PROJECTION_SYMBOLS // symbols}x the rows, is not in it: make bench-throughput); "
        f"fetching and the rest one after the other (one run: raw/bars, then core/bars)",
    )
    scale = PROJECTION_PARTITIONS / long.partitions
    if long.partitions >= 10 * short.partitions:
        grow = []
        for role in sorted(set(short.peaks_kib) & set(long.peaks_kib), key=role_order):
            rate = (long.peaks_kib[role] - short.peaks_kib[role]) / (
                long.partitions - short.partitions
            )
            at = long.peaks_kib[role] + max(0.0, rate) * (PROJECTION_PARTITIONS - long.partitions)
            grow.append(f"{role} {mib(at)}")
        memory = (
            f"peak RSS MiB (the growth from {short.days} d to {long.days} d continued, symbols "
            f"as measured): " + ", ".join(grow)
        )
    else:
        memory = "peak RSS: ranges too close to extrapolate"
    targets.note(
        f"{path}: at {PROJECTION_PARTITIONS:,} partitions",
        f"{long.events_per_partition * PROJECTION_PARTITIONS:,.0f} events in the run's event "
        f"log, an instance of {long.instance_bytes * scale / MIB / MIB:,.0f} MiB; {memory}",
    )


if __name__ == "__main__":
    raise SystemExit(main())
