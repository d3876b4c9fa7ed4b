"""Start-up benchmark: what loading the definitions costs every run worker and code server.

    uv run --frozen python benchmarks/startup.py [--rounds 3]

Each measurement is a fresh ``python`` process, timed from launch to exit (wall clock, and the
CPU time ``wait4`` reports for it), in rounds that alternate the commands so a busy moment of
the machine costs them alike; the median of the rounds is reported:

- ``python -c pass``: the interpreter alone;
- ``import dagster``: the floor any code location pays;
- load one asset: the same loading steps for ``benchmarks/one_asset.py``, a code location of
  one asset: what Dagster's loader costs whatever the project (it imports
  ``dagster._utils.test.definitions`` and with it the event-log storage, SQLAlchemy and
  Alembic, which ``import dagster`` alone does not);
- load the definitions: what ``dagster api grpc`` and every run worker do before anything
  else: reconstruct the repository from ``fin_assets.definitions`` (the ``@dg.definitions``
  loader: resources from the environment, assets, jobs, schedules, sensors), resolve every job
  and build the repository snapshot a code server serves.

Twice: with Python's bytecode cache, as any deployed process has it (a private
``PYTHONPYCACHEPREFIX``, filled by one untimed run of each command first), and without it
(an empty prefix and ``PYTHONDONTWRITEBYTECODE=1``: every module compiled from source, as in a
sandbox that sets that variable). The environment is this one without any FIN_* setting.

- load 1 source / load 10 sources: the definitions with one and with ten declared sources
  (``FIN_SOURCES_DIR``: half on the XNYS calendar, half 24/7, five symbols each), what a
  deployment of many sources pays per process.

Targets (the run exits 1 if one is missed): loading the definitions <= 1.5x ``import dagster``
(medians, wall clock, with the bytecode cache); ten sources <= 1.3x one source. Also printed,
not a target: the definitions against one asset, i.e. what the project adds to Dagster's own
loading cost. Exchange sessions come from their cache file (``fin_assets_cache/calendars`` under
DAGSTER_HOME, else FIN_DATA_DIR), filled by the untimed first run, as in any deployed process
after its first start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.harness import PROJECT_ROOT, Targets, table

TARGET_RATIO = 1.5
TARGET_SOURCES_RATIO = 1.3
SOURCE_YAML = """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: {name}
  provider: simulator
  symbols: [AAPL, MSFT, GOOG, AMZN, NVDA]
  calendar: "{calendar}"
"""
LOAD = """
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.remote_representation.external_data import RepositorySnap

repo = ReconstructableRepository.for_module("{module}", "defs").get_definition()
repo.get_all_jobs()
RepositorySnap.from_def(repo)
"""
DEFINITIONS = ["-W", "ignore", "-c", LOAD.format(module="fin_assets.definitions")]
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import dagster": ["-c", "import dagster"],
    "load one asset": ["-W", "ignore", "-c", LOAD.format(module="benchmarks.one_asset")],
    "load the definitions": DEFINITIONS,
    "load 1 source": DEFINITIONS,
    "load 10 sources": DEFINITIONS,
}


def sources_dir(root: str, count: int) -> str:
    """``count`` declared sources, half of them on XNYS."""
    for index in range(count):
        name = f"source_{index}"
        os.makedirs(f"{root}/{name}")
        calendar = "XNYS" if index % 2 == 0 else "24/7"
        with open(f"{root}/{name}/defs.yaml", "w") as file:
            file.write(SOURCE_YAML.format(name=name, calendar=calendar))
    return root


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    assert proc.stderr is not None
    error = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)[:60]} failed: {error[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FIN_", "PYTHONPYCACHE"))}
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    began = time.monotonic()
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="fin-assets-bench-startup-") as tmp:
        modes = {
            "cached": {**base, "PYTHONPYCACHEPREFIX": f"{tmp}/cache"},
            "no cache": {
                **base,
                "PYTHONPYCACHEPREFIX": f"{tmp}/empty",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
        }
        extra = {
            "load 1 source": {"FIN_SOURCES_DIR": sources_dir(f"{tmp}/one", 1)},
            "load 10 sources": {"FIN_SOURCES_DIR": sources_dir(f"{tmp}/ten", 10)},
        }
        for name, command in COMMANDS.items():  # fills the caches: not timed
            run_once(command, {**modes["cached"], **extra.get(name, {})})
        for _ in range(args.rounds):
            for mode, env in modes.items():
                for name, command in COMMANDS.items():
                    samples.setdefault((mode, name), []).append(
                        run_once(command, {**env, **extra.get(name, {})})
                    )
    medians = {
        key: (
            statistics.median(wall for wall, _ in runs),
            statistics.median(cpu for _, cpu in runs),
            min(wall for wall, _ in runs),
        )
        for key, runs in samples.items()
    }
    rows = []
    for (mode, name), (wall, cpu, best) in medians.items():
        floor = medians[(mode, "import dagster")][0]
        rows.append(
            [mode, name, f"{wall:.2f}", f"{best:.2f}", f"{cpu:.2f}", f"{wall / floor:.2f}x"]
        )
    print(
        table(
            ["bytecode", "command", "median s", "best s", "median CPU s", "vs import dagster"],
            rows,
        )
    )
    print()
    print(f"{args.rounds} rounds, medians; CPU time as wait4 reports it for the process")
    print()
    targets = Targets()
    load_wall, load_cpu, _ = medians[("cached", "load the definitions")]
    floor_wall, floor_cpu, _ = medians[("cached", "import dagster")]
    targets.check(
        f"loading the definitions <= {TARGET_RATIO}x import dagster (median wall clock, "
        "bytecode cache)",
        load_wall / floor_wall <= TARGET_RATIO,
        f"{load_wall / floor_wall:.2f}x ({load_wall:.2f} s vs {floor_wall:.2f} s; "
        f"CPU {load_cpu / floor_cpu:.2f}x)",
    )
    one_source = medians[("cached", "load 1 source")][0]
    ten_sources = medians[("cached", "load 10 sources")][0]
    targets.check(
        f"10 declared sources <= {TARGET_SOURCES_RATIO}x one (median wall clock, bytecode cache)",
        ten_sources / one_source <= TARGET_SOURCES_RATIO,
        f"{ten_sources / one_source:.2f}x ({ten_sources:.2f} s vs {one_source:.2f} s)",
    )
    one_wall = medians[("cached", "load one asset")][0]
    print(
        f"Dagster's loader alone (one asset): {one_wall / floor_wall:.2f}x import dagster; "
        f"the definitions: {load_wall / one_wall:.2f}x one asset "
        f"(+{load_wall - one_wall:.2f} s for the project's modules, polars, msgspec)"
    )
    print()
    code = targets.report()
    print(f"\nruntime {time.monotonic() - began:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
