"""Shared fixtures: a loopback simulator, per-test data directories and Dagster instances."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
import pytest

from resources.simulator.server import MarketSimulator, SimulatorConfig
from tests.helpers import product_instance

# Dagster marks backfill_policy and friends beta; those notices are not our bugs.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def slow_seconds(item: pytest.Item) -> float:
    """What a test's ``slow`` mark says it takes (0: not marked)."""
    mark = item.get_closest_marker("slow")
    return float(mark.args[0]) if mark else 0.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``make test`` (pytest-xdist, ``--maxschedchunk=1``) the longest stories start first,
    one per worker, so the run lasts about as long as its longest story instead of two of them
    back to back. xdist hands each worker the next two tests of this order at the start, then one
    per test finished: so the first workers get one slow and one quick test each (the quick one
    waits behind the slow one), and the remaining slow tests follow, longest first."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers < 2:
        return  # one process: the usual order, modules together
    slow = sorted((i for i in items if slow_seconds(i)), key=slow_seconds, reverse=True)
    quick = [i for i in items if not slow_seconds(i)]
    first: list[pytest.Item] = []
    for story in slow[:workers]:
        first += [story, *quick[:1]]
        quick = quick[1:]
    items[:] = [*first, *slow[workers:], *quick]


@pytest.fixture(scope="session")
def simulator() -> Iterator[MarketSimulator]:
    with MarketSimulator(SimulatorConfig(port=0)) as sim:
        yield sim


@pytest.fixture
def sim(simulator: MarketSimulator) -> Iterator[MarketSimulator]:
    """The shared simulator with clean counters and no faults, for one test."""
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A throwaway instance on the project's event log
    (fin_assets/dagster_internals/event_log.py)."""
    with product_instance() as inst:
        yield inst


def fin_env(sim: MarketSimulator, data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        "FIN_API_BASE_URL": sim.url,
        "FIN_DATA_DIR": str(data_dir),
        "FIN_SYMBOLS": "AAPL,MSFT,GOOG,AMZN,NVDA",
        # Each test its own quota state: a pause in one test must not hold up the next.
        "FIN_QUOTA_STORE": str(data_dir / "quota.sqlite"),
    }
    env.update(overrides)
    return env


def run_range(
    defs: dg.Definitions,
    job_name: str,
    first: str,
    last: str,
    *,
    instance: dg.DagsterInstance,
    run_config: Mapping[str, object] | None = None,
) -> dg.ExecuteInProcessResult:
    """What `dagster asset materialize --partition-range first...last` does, in process."""
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
        run_config=dict(run_config or {}),
        raise_on_error=False,
    )


def step_failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    messages = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            messages.append(f"{error.message}" if error else "")
    return messages


def materialization_metadata(
    result: dg.ExecuteInProcessResult, key: list[str]
) -> dict[str, object]:
    """The step's figures: on the last partition of its range (fin_assets/lib/assets/common.py)."""
    for event in result.get_asset_materialization_events():
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        if event.asset_key == dg.AssetKey(key) and event.partition == metadata["last_partition"]:
            return metadata
    raise AssertionError(f"no materialization of {'/'.join(key)}")


def assert_secrets_nowhere(
    secrets: tuple[str, ...],
    *,
    data_dir: Path,
    instance: dg.DagsterInstance,
    runs: tuple[dg.ExecuteInProcessResult, ...],
) -> None:
    """No secret in any file we or Dagster wrote (snapshots, sidecars, tables, the SQLite event
    log, compute logs), any stored event-log entry, any metadata value, or any recorded
    exception with its whole chain."""
    written = [p for root in (data_dir, Path(instance.root_directory)) for p in root.rglob("*")]
    assert any(p.suffix == ".db" for p in written)
    leaks = [
        p for p in written if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets)
    ]
    assert leaks == []
    for run in runs:
        entries = instance.all_logs(run.run_id)
        assert entries
        for entry in entries:
            assert not any(s in str(entry) for s in secrets)
        for event in run.get_asset_materialization_events():
            for value in event.materialization.metadata.values():
                assert not any(s in str(value.value) for s in secrets)
        for event in run.all_events:
            if event.event_type_value == "STEP_FAILURE":
                error = event.step_failure_data.error
                while error is not None:
                    assert not any(s in error.to_string() for s in secrets)
                    error = error.cause


def assert_secrets_not_logged(
    secrets: tuple[str, ...], *, caplog: pytest.LogCaptureFixture, output: str
) -> None:
    """No secret in any log record any Python logger emitted, nor in stdout/stderr."""
    assert caplog.records
    for record in caplog.records:
        assert not any(s in record.getMessage() for s in secrets)
    assert not any(s in output for s in secrets)
