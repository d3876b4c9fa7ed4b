"""The exporter's parts on their own: the catalog's conventions, the lag, counters summed once per
step from the event log, the quota store read without writing, cgroups, and why a run died."""

from __future__ import annotations

import re
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent

from fin_assets.dagster_internals.runs import CGROUP_TAG, DEAD_WORKER, WORKER_TAG, classify_failure
from fin_assets.lib.alerts import AlertCursor, killed_recoveries, run_failure_alerts
from fin_assets.lib.assets.attempts import ATTEMPT_OUTCOME
from fin_assets.lib.partitions import hourly_partitions, source_partitions
from fin_assets.lib.sources import Source
from fin_assets.tools.metrics import (
    CachedCollector,
    CodeLocation,
    InstanceMetrics,
    lag_seconds,
    load_code_location,
    source_of,
)
from resources.calendars import load_sessions
from resources.http.client import MarketApiClient
from resources.metrics import cgroup as cgroup_module
from resources.metrics.catalog import CATALOG, Sample, families
from resources.metrics.cgroup import MemoryCgroup, memory_cgroup_of
from resources.metrics.quota import Ceiling, QuotaStoreReader, split_quota_key
from resources.providers.binance import BinanceAdapter
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import SQLiteQuotaStore, quota_key

ROOT = Path(__file__).resolve().parents[2]
UTC_ = UTC


# -- the catalog -----------------------------------------------------------------------------------
def test_the_catalog_follows_prometheus_conventions() -> None:
    unbounded = {"run_id", "run", "partition", "partition_key", "symbol", "key", "pid"}
    for spec in CATALOG:
        assert re.fullmatch(r"fin_assets_[a-z0-9_]+", spec.name), spec.name
        assert spec.help
        assert not unbounded & set(spec.labels), spec.name
        if "seconds" in spec.name or "bytes" in spec.name:
            assert spec.name.rsplit("_", 1)[-1] in ("seconds", "bytes", "total"), spec.name
        assert (spec.kind == "counter") == spec.name.endswith("_total")
    assert len({s.name for s in CATALOG}) == len(CATALOG)


def test_families_refuse_what_the_catalog_does_not_declare() -> None:
    with pytest.raises(ValueError, match="not in the metrics catalog"):
        families([Sample("fin_assets_nonsense", 1)])
    with pytest.raises(ValueError, match="labels"):
        families([Sample("fin_assets_runs", 1, {"status": "queued", "run_id": "x"})])
    served = {f.name for f in families([])}
    assert "fin_assets_api_requests" in served  # counters are served as <name>_total


# -- the lag ---------------------------------------------------------------------------------------
def test_lag_is_how_long_the_first_missing_closed_window_has_been_closed() -> None:
    now = datetime(2026, 1, 5, 13, 37, tzinfo=UTC)
    assert lag_seconds(hourly_partitions, "2026-01-05-12:00", now) == 0  # newest closed landed
    assert lag_seconds(hourly_partitions, "2026-01-05-09:00", now) == 2 * 3600 + 37 * 60
    later = now + timedelta(minutes=10)
    assert lag_seconds(hourly_partitions, "2026-01-05-09:00", later) == 2 * 3600 + 47 * 60
    nothing = lag_seconds(hourly_partitions, None, now)
    assert nothing == (now - datetime(2026, 1, 1, 1, tzinfo=UTC)).total_seconds()


def test_a_closed_market_is_not_lag(tmp_path: Path) -> None:
    sessions = load_sessions(
        "XNYS", first=date(2026, 1, 1), last=date(2026, 12, 31), cache_dir=ROOT / ".cache/calendars"
    )
    hourly = source_partitions(sessions).hourly
    friday_last = hourly.get_partition_keys_in_time_window(
        dg.TimeWindow(datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC))
    )[-1]
    saturday = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)
    assert lag_seconds(hourly, friday_last, saturday) == 0
    monday = datetime(2026, 1, 12, 17, 30, tzinfo=UTC)  # 12:30 in New York
    with dg.partition_loading_context(effective_dt=monday):
        first_monday = hourly.get_next_partition_key(friday_last)
    assert first_monday is not None and first_monday.startswith("2026-01-12")
    closed = hourly.time_window_for_partition_key(first_monday).end
    assert lag_seconds(hourly, friday_last, monday) == (monday - closed).total_seconds()


def test_the_source_of_an_asset_key_is_the_one_source_key_made() -> None:
    for name in (None, "crypto"):
        source = Source(name=name, provider="simulator", symbols=("AAPL",), base_url="http://x")
        assert source_of(source.key("raw", "bars")) == source.label
        assert source_of(source.key("core", "daily_bars")) == source.label


# -- counters from the event log -------------------------------------------------------------------
def materialize(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str], **figures: object
) -> None:
    """What a range run's step records: the same figures on every partition."""
    for partition in partitions:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=key,
                partition=partition,
                metadata={
                    "first_partition": partitions[0],
                    "last_partition": partitions[-1],
                    **figures,  # type: ignore[dict-item]
                },
            )
        )


def values(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def test_a_steps_figures_count_once_and_a_rescheduled_attempt_counts_too() -> None:
    raw = dg.AssetKey(["raw", "crypto", "bars"])
    figures = {"source": "crypto", "provider": "binance", "requests": 5, "rows": 100}
    with dg.instance_for_test() as instance:
        materialize(
            instance,
            raw,
            ["2026-01-05-00:00", "2026-01-05-01:00", "2026-01-05-02:00"],
            **figures,
            throttled_429=2,
            banned_418=1,
            seconds_waited=1.5,
        )
        instance.report_runless_asset_event(
            dg.AssetObservation(
                asset_key=raw,
                partition="2026-01-05-02:00",
                metadata={
                    ATTEMPT_OUTCOME: "rescheduled",
                    "source": "crypto",
                    "provider": "binance",
                    "requests": 3,
                    "throttled_429": 3,
                },
            )
        )
        metrics = InstanceMetrics(instance)
        first = metrics.read()
        assert values(first, "fin_assets_api_requests_total", source="crypto") == 8
        assert values(first, "fin_assets_api_throttled_total", reason="rate_limited") == 4
        assert values(first, "fin_assets_api_throttled_total", reason="banned") == 1
        assert values(first, "fin_assets_api_wait_seconds_total") == 1.5
        assert values(first, "fin_assets_asset_rows_total", asset="raw/crypto/bars") == 100
        assert values(first, "fin_assets_asset_materializations_total") == 3
        assert values(first, "fin_assets_step_attempts_total", outcome="materialized") == 1
        assert values(first, "fin_assets_step_attempts_total", outcome="rescheduled") == 1
        # Only what is new is read again; the sums go on.
        materialize(instance, raw, ["2026-01-05-03:00"], **figures)
        second = metrics.read()
        assert values(second, "fin_assets_api_requests_total") == 13
        assert values(second, "fin_assets_asset_rows_total") == 200
        assert metrics.errors == {}
        # A restarted exporter reads the history again to the same totals.
        assert values(InstanceMetrics(instance).read(), "fin_assets_api_requests_total") == 13


def test_archive_files_bytes_and_a_failed_attempts_checksum_failure_are_counted() -> None:
    """What a bulk archive gave: files by result and bytes from the step's figures (once per
    step), and a checksum failure from the failed attempt's observation."""
    raw = dg.AssetKey(["raw", "crypto", "bars"])
    archive = {
        "archive_files_planned": 3,
        "archive_files_downloaded": 2,
        "archive_files_reused": 1,
        "archive_files_missing": 0,
        "archive_bytes_downloaded": 4096,
        "archive_checksum_failures": 0,
    }
    with dg.instance_for_test() as instance:
        materialize(
            instance,
            raw,
            ["2026-01-05-00:00", "2026-01-05-01:00"],
            source="crypto",
            provider="binance",
            requests=0,
            **archive,
        )
        instance.report_runless_asset_event(
            dg.AssetObservation(
                asset_key=raw,
                partition="2026-01-06-00:00",
                metadata={
                    ATTEMPT_OUTCOME: "failed",
                    "source": "crypto",
                    "provider": "binance",
                    "requests": 0,
                    **archive,
                    "archive_files_downloaded": 1,
                    "archive_files_reused": 0,
                    "archive_bytes_downloaded": 100,
                    "archive_checksum_failures": 1,
                },
            )
        )
        samples = InstanceMetrics(instance).read()
    labels = {"source": "crypto", "provider": "binance"}
    assert values(samples, "fin_assets_archive_files_total", result="downloaded", **labels) == 3
    assert values(samples, "fin_assets_archive_files_total", result="reused", **labels) == 1
    assert values(samples, "fin_assets_archive_downloaded_bytes_total", **labels) == 4196
    assert values(samples, "fin_assets_archive_checksum_failures_total", **labels) == 1
    assert values(samples, "fin_assets_api_requests_total", **labels) == 0


def test_scrapes_within_the_cache_window_share_one_reading() -> None:
    readings = []
    now = [0.0]

    def read() -> list[Sample]:
        readings.append(now[0])
        return [Sample("fin_assets_alerts_pending", len(readings))]

    collector = CachedCollector(read, cache_s=5, clock=lambda: now[0])
    collector.collect()
    now[0] = 4.9
    collector.collect()
    now[0] = 5.0
    collector.collect()
    assert readings == [0.0, 5.0]


# -- the quota store -------------------------------------------------------------------------------
def test_the_quota_store_is_read_as_the_pacer_left_it(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite"
    base = "http://127.0.0.1:8765"
    key = quota_key("simulator", base, None)
    configured = QuotaPolicy(10, 1.0)
    now = [1000.0]
    store = SQLiteQuotaStore(path)
    pacer = SharedPacer(store, key, policy=configured, clock=lambda: now[0], adaptive=False)
    for _ in range(5):
        pacer.reserve()
    pacer.pause_for(30, reason="HTTP 429")
    ceilings = {("simulator", base): Ceiling(configured, "configured")}
    (reading,) = QuotaStoreReader(str(path)).readings(ceilings)
    assert (reading.provider, reading.endpoint, reading.credential) == (
        "simulator",
        "127.0.0.1:8765",
        "anonymous",
    )
    assert (reading.in_force, reading.origin) == (configured, "configured")
    samples = {s.name: s for s in reading.samples(now[0])}
    assert samples["fin_assets_quota_pause_remaining_seconds"].value == 30
    assert samples["fin_assets_quota_limit"].labels["origin"] == "configured"
    # Booked up to the pause's end: nobody's slot comes before it.
    assert samples["fin_assets_quota_booked_ahead_seconds"].value == pytest.approx(30, abs=0.1)
    # The server shows a lower quota: that is the one in force now, and it says so.
    store.learn(key, QuotaPolicy(4, 1.0, source="stated by the server"))
    (reading,) = QuotaStoreReader(str(path)).readings(ceilings)
    assert reading.in_force is not None and reading.in_force.limit == 4
    assert reading.origin == "stated"
    store.close()
    assert QuotaStoreReader(str(tmp_path / "none.sqlite")).readings(ceilings) == []


def test_a_store_of_an_older_version_is_read_with_what_it_has(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE quota_state (key TEXT PRIMARY KEY, tat REAL NOT NULL,"
            " paused_until REAL NOT NULL DEFAULT 0, pause_reason TEXT NOT NULL DEFAULT '',"
            " learned_limit REAL, learned_window_s REAL, learned_burst INTEGER,"
            " learned_source TEXT)"
        )
        conn.execute(
            "INSERT INTO quota_state VALUES ('polygon|https://api.massive.com|abc', 5, 0, '',"
            " 5, 60, 1, 'stated')"
        )
    (reading,) = QuotaStoreReader(str(path)).readings({})
    assert (reading.provider, reading.endpoint, reading.credential) == (
        "polygon",
        "api.massive.com",
        "abc",
    )
    assert reading.in_force == QuotaPolicy(5, 60, 1, "stated")


def test_quota_keys_split_into_labels_without_the_key_itself() -> None:
    key = quota_key("polygon", "https://api.massive.com/", "sk-SECRET")
    provider, base_url, credential = split_quota_key(key)
    assert (provider, base_url) == ("polygon", "https://api.massive.com")
    assert "SECRET" not in credential and credential != "anonymous"


# -- cgroups ---------------------------------------------------------------------------------------
def cgroup_tree(tmp_path: Path, *, version: int, limit: str, kills: int) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "42").mkdir(parents=True)
    if version == 2:
        (proc / "42" / "cgroup").write_text("0::/system.slice/fin-assets-code.service\n")
        unit = root / "system.slice" / "fin-assets-code.service"
        unit.mkdir(parents=True)
        (unit / "memory.max").write_text(f"{limit}\n")
        (unit / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\n")
    else:
        (proc / "42" / "cgroup").write_text("5:devices:/\n4:memory:/box/run\n0::/\n")
        unit = root / "memory" / "box" / "run"
        unit.mkdir(parents=True)
        (unit / "memory.limit_in_bytes").write_text(f"{limit}\n")
        (unit / "memory.oom_control").write_text(f"oom_kill_disable 0\noom_kill {kills}\n")
    return proc, root


@pytest.mark.parametrize("version", [1, 2])
def test_the_memory_cgroup_limit_and_oom_kills_are_read(tmp_path: Path, version: int) -> None:
    proc, root = cgroup_tree(tmp_path, version=version, limit=str(512 * 2**20), kills=2)
    cgroup = memory_cgroup_of(42, proc=proc, root=root)
    assert cgroup is not None and cgroup.version == version
    assert cgroup.memory_max() == 512 * 2**20
    assert cgroup.oom_kills() == 2
    assert MemoryCgroup.decode(cgroup.encode(), root=root) == cgroup
    assert memory_cgroup_of(43, proc=proc, root=root) is None  # gone


def test_no_limit_reads_as_none(tmp_path: Path) -> None:
    proc, root = cgroup_tree(tmp_path, version=2, limit="max", kills=0)
    assert memory_cgroup_of(42, proc=proc, root=root).memory_max() is None  # type: ignore[union-attr]
    proc, root = cgroup_tree(tmp_path / "v1", version=1, limit="9223372036854771712", kills=0)
    assert memory_cgroup_of(42, proc=proc, root=root).memory_max() is None  # type: ignore[union-attr]


# -- why a run died, and its alert -----------------------------------------------------------------
RAW = dg.AssetKey(["raw", "bars"])
HOUR = "2026-01-05-03:00"


def started_run(instance: dg.DagsterInstance, **tags: str) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name="bars_hourly_job",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": HOUR, **tags},
    )
    instance.add_run(run)
    instance.report_dagster_event(
        DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
            job_name=run.job_name,
            event_specific_data=AssetMaterializationPlannedData(RAW, partition=HOUR),
        ),
        run_id=run.run_id,
    )
    return run


def test_a_worker_killed_by_a_signal_is_killed_not_failed() -> None:
    with dg.instance_for_test() as instance:
        run = started_run(instance)
        instance.report_engine_event(
            f"Run execution process for {run.run_id} was terminated by signal 9 (SIGKILL).", run
        )
        instance.report_run_failed(run)
        failure = classify_failure(instance, instance.get_run_by_id(run.run_id))  # type: ignore[arg-type]
        assert failure.reason == "killed"
        assert failure.death is not None and failure.death.signal == "SIGKILL (9)"

        timeout = started_run(instance)
        instance.report_run_failed(timeout, "Exceeded maximum runtime of 7200 seconds.")
        assert classify_failure(instance, timeout).reason == "timeout"
        exited = started_run(instance)
        instance.report_engine_event(
            "Multiprocess executor: child process for step raw__bars was terminated by signal "
            "9 (SIGKILL).",
            exited,
        )
        instance.report_run_failed(exited)
        assert classify_failure(instance, exited).death.signal == "SIGKILL (9)"  # type: ignore[union-attr]


def test_an_oom_kill_counted_by_the_cgroup_names_sigkill_and_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    proc, root = cgroup_tree(tmp_path, version=2, limit=str(384 * 2**20), kills=1)
    monkeypatch.setattr(cgroup_module, "CGROUP_ROOT", root)
    with dg.instance_for_test() as instance:
        run = started_run(
            instance,
            **{
                WORKER_TAG: f"{socket.gethostname()}:999999:1",
                CGROUP_TAG: "v2:/system.slice/fin-assets-code.service:0",
            },
        )
        instance.report_run_failed(run, f"{DEAD_WORKER} (pid 999999 on here) is gone: ...")
        death = classify_failure(instance, run).death
        assert death is not None
        assert death.signal == "SIGKILL (9)"  # not recorded, but the kernel counted the kill
        assert (death.memory_max, death.oom_kills, death.oom_kills_at_start) == (
            384 * 2**20,
            1,
            0,
        )
        assert "memory limit 384 MiB" in death.describe() and "OOM killer" in death.describe()


def test_one_killed_alert_per_run_then_one_recovery_when_its_partitions_land() -> None:
    with dg.instance_for_test() as instance:
        cursor = AlertCursor()
        run = started_run(instance)
        instance.report_engine_event(
            f"Run execution process for {run.run_id} was terminated by signal 9 (SIGKILL).", run
        )
        instance.report_run_failed(run)
        bad_data = started_run(instance)
        instance.report_run_failed(bad_data, "Step raw__bars failed: schema drift")
        alerts = run_failure_alerts(instance, cursor)
        killed = [a for a in alerts if a.kind == "killed"]
        assert len(killed) == 1 and len(alerts) == 2
        (alert,) = killed
        assert run.run_id in alert.detail and HOUR in alert.title and "SIGKILL" in alert.title
        assert alert.facts == {
            "run_id": run.run_id,
            "job": "bars_hourly_job",
            "partitions": HOUR,
            "signal": "SIGKILL (9)",
        }
        assert run_failure_alerts(instance, cursor) == []
        assert killed_recoveries(instance, cursor) == []  # nothing landed yet
        instance.report_runless_asset_event(dg.AssetMaterialization(RAW, partition=HOUR))
        (recovery,) = killed_recoveries(instance, cursor)
        assert recovery.kind == "recovery" and recovery.key == f"killed:{run.run_id}"
        assert killed_recoveries(instance, cursor) == []
        assert cursor.failing == {} and cursor.killed_at == {}


# -- the client counts bans apart ------------------------------------------------------------------
def test_a_binance_ban_counts_as_banned(tmp_path: Path) -> None:
    fixtures = ROOT / "tests" / "fixtures" / "binance"
    answers = iter(
        [
            httpx.Response(
                418,
                headers={"Retry-After": "1"},
                content=(fixtures / "error_418.json").read_bytes(),
            ),
            httpx.Response(
                200, content=(fixtures / "klines_BTCUSDT_2026-01-05T00.json").read_bytes()
            ),
        ]
    )
    adapter = BinanceAdapter()
    client = MarketApiClient(
        adapter,
        base_url=adapter.default_base_url,
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=lambda s: None,
    )
    with client:
        start = datetime(2026, 1, 5, tzinfo=UTC)
        list(client.iter_pages("BTCUSDT", start=start, end=start + timedelta(hours=1)))
    metadata = client.stats.as_metadata()
    assert (metadata["throttled_429"], metadata["banned_418"]) == (1, 1)


# -- what the exporter process loads ---------------------------------------------------------------
def test_the_code_location_reaches_the_exporter_exactly() -> None:
    location = load_code_location({})  # the two declared sources, crypto 24/7, us_equities XNYS
    again = CodeLocation.from_json(location.to_json())
    assert again == location
    equities = next(a for a in again.assets if a.key == dg.AssetKey(["raw", "us_equities", "bars"]))
    assert equities.partitions is not None and equities.partitions.exclusions  # the calendar
    assert {s.label for s in again.sources} == {"crypto", "us_equities"}
    assert again.check_keys


def test_the_exporter_does_not_load_the_code_location() -> None:
    # The exporter's memory budget: Dagster and its storage, not polars and the adapters.
    import subprocess
    import sys

    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, fin_assets.tools.metrics; print(sorted({'polars', 'httpx', 'pandas'} & "
            "set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_run_monitorings_worker_died_is_killed_and_a_backfill_counts_what_is_left() -> None:
    import time as clock

    from dagster._core.execution.backfill import PartitionBackfill

    with dg.instance_for_test() as instance:
        run = started_run(instance)
        instance.report_engine_event(
            "Detected run worker status WorkerStatus.FAILED: 'run worker gone'. Marking run "
            f"{run.run_id} as failed.",
            run,
        )
        instance.report_run_failed(run)
        failure = classify_failure(instance, run)
        assert failure.reason == "killed" and failure.death is not None
        assert failure.death.signal is None  # run monitoring cannot know it
        assert "signal unknown" in failure.death.describe()

        @dg.asset(partitions_def=hourly_partitions)
        def bars() -> None: ...

        graph = dg.Definitions(assets=[bars]).get_repository_def().asset_graph
        keys = ["2026-01-05-00:00", "2026-01-05-01:00", "2026-01-05-02:00"]
        instance.add_backfill(
            PartitionBackfill.from_asset_partitions(
                backfill_id="b1",
                asset_graph=graph,
                partition_names=keys,
                asset_selection=[bars.key],
                backfill_timestamp=clock.time(),
                tags={},
                dynamic_partitions_store=instance,
                all_partitions=False,
                title=None,
                description=None,
                run_config=None,
            )
        )
        samples = InstanceMetrics(instance).read()
        assert values(samples, "fin_assets_backfills_in_progress") == 1
        assert values(samples, "fin_assets_backfill_partitions_left") == 3
        assert values(samples, "fin_assets_runs_failed_last_hour", reason="killed") == 1
