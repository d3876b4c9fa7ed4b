"""History from the providers' bulk archives: the same core bars as REST, no quota, checked files.

Binance public data and Massive flat files are served by emulators written from the providers'
documentation (``tests/emulators/binance_archive.py``, ``tests/emulators/massive_flatfiles.py``:
an S3 endpoint through moto), from the same deterministic bars as the REST emulators. Each test
runs the raw layer (``fetch_raw_bars``) and the core layer (``iter_core_bars``) as the assets do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fin_assets.definitions import build_definitions
from resources.errors import ArchiveError
from resources.http.client import MarketApiClient
from resources.providers import get_adapter
from resources.providers.archives import BinanceVision, MassiveFlatFiles
from resources.raw.archive import ARCHIVES_DIR, ArchiveUse
from resources.raw.ingest import RawResult, fetch_raw_bars
from resources.raw.manifest import load_manifest
from resources.raw.snapshots import SnapshotStore
from resources.storage.parquet import ParquetWarehouse
from resources.tables.core import BuildStats, iter_core_bars
from resources.windows import PartitionWindow
from tests.conftest import (
    assert_secrets_nowhere,
    materialization_metadata,
    run_range,
    step_failure_messages,
)
from tests.emulators import massive_flatfiles as flat
from tests.emulators.binance import BinanceEmulator
from tests.emulators.binance_archive import BinanceArchiveEmulator, archive_zip
from tests.emulators.polygon import PolygonEmulator
from tests.helpers import hourly_windows

POLYGON_KEY = "pk-archive-test-NEVER-IN-LOGS-77"
S3_SECRET = "s3-secret-NEVER-IN-LOGS-5e3c"
NOW = datetime(2026, 12, 6, tzinfo=UTC)


def core_frame(store: SnapshotStore, windows: Sequence[PartitionWindow]) -> pl.DataFrame:
    """Core bars of the windows as core/bars builds them, without the fetch time (which is
    when each path's bytes arrived, not a property of the bars)."""
    frames = [frame for _, frame in iter_core_bars(store, windows, stats=BuildStats())]
    return pl.concat(frames).drop("ingested_at").sort("symbol", "ts")


def fetch(
    server: BinanceEmulator | PolygonEmulator,
    store: SnapshotStore,
    symbols: Sequence[str],
    windows: Sequence[PartitionWindow],
    *,
    archive: BinanceVision | MassiveFlatFiles | None = None,
    use: ArchiveUse = ArchiveUse.AUTO,
) -> RawResult:
    """One raw/bars run against the REST emulator ``server`` (and the archive, if given)."""
    provider = "binance" if isinstance(server, BinanceEmulator) else "polygon"
    key = POLYGON_KEY if provider == "polygon" else None
    with MarketApiClient(get_adapter(provider), base_url=server.url, api_key=key) as client:
        try:
            return fetch_raw_bars(
                client, store, symbols, windows, archive=archive, archive_use=use, now=NOW
            )
        finally:
            if archive is not None:
                archive.close()


def test_binance_archive_days_equal_rest_row_by_row_in_both_timestamp_eras(tmp_path: Path) -> None:
    """A 2024 day (milliseconds) and a 2025 day (microseconds): every column of every row equal,
    VWAP and trades included, with no REST request on the archive path."""
    symbols = ["BTCUSDT", "ETHUSDT"]
    days = [hourly_windows(date(2024, 3, 5)), hourly_windows(date(2025, 3, 5))]
    windows = [w for day in days for w in day]
    with BinanceEmulator() as rest, BinanceArchiveEmulator() as archive_server:
        for day in days:  # a range is contiguous: one run per day
            fetch(rest, SnapshotStore(tmp_path / "rest"), symbols, day)
        assert len(rest.request_log()) > 0
        rest_requests = len(rest.request_log())
        store = SnapshotStore(tmp_path / "archive")
        runs = [
            fetch(rest, store, symbols, day, archive=BinanceVision(archive_server.url))
            for day in days
        ]
        assert len(rest.request_log()) == rest_requests  # the archive path sent none
        served = archive_server.stats()
    assert all(run.client.requests == 0 and run.partitions_from_archive == 24 for run in runs)
    assert sum(run.archive.files_downloaded for run in runs if run.archive) == 4
    assert served["zips_served"] == 4 and served["checksums_served"] == 4
    zips = [archive_zip(s, d) for s in symbols for d in (date(2024, 3, 5), date(2025, 3, 5))]
    assert sum(run.archive.bytes_downloaded for run in runs if run.archive) == sum(map(len, zips))
    from_rest = core_frame(SnapshotStore(tmp_path / "rest"), windows)
    from_archive = core_frame(store, windows)
    assert from_archive.height == 2 * 2 * 1440
    assert from_archive.equals(from_rest), "archive-built core bars differ from REST-built"
    assert from_archive.get_column("vwap").null_count() == 0
    manifest = load_manifest(store, "2025-03-05-13:00")
    assert manifest.filled_by() == {"BTCUSDT": "archive", "ETHUSDT": "archive"}
    written = store.read_manifest(asset="raw_bars", partition_key="2025-03-05-13:00")
    assert written["filled_by"] == {"BTCUSDT": "archive", "ETHUSDT": "archive"}
    entry = written["symbols"]["BTCUSDT"][0]
    assert entry["archive"] == "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-03-05.zip"
    assert len(entry["archive_sha256"]) == 64


def test_a_range_takes_archived_days_from_the_archive_and_recent_hours_from_rest(
    tmp_path: Path,
) -> None:
    """One backfill, two paths, no user decision: the days already published come from the
    archive, the day not yet archived from REST; a second run downloads nothing again."""
    symbols = ["BTCUSDT"]
    windows = [*hourly_windows(date(2026, 12, 4)), *hourly_windows(date(2026, 12, 5))]
    now = NOW.timestamp()  # 2026-12-06 00:00: the 4th is archived (6 h lag), the 5th is not
    with BinanceEmulator() as rest, BinanceArchiveEmulator(now=lambda: now) as archive_server:
        archive = BinanceVision(archive_server.url)
        store = SnapshotStore(tmp_path)
        first = fetch(rest, store, symbols, windows, archive=archive)
        second = fetch(rest, store, symbols, windows, archive=archive)
        zips = archive_server.stats()["zips_served"]
    assert first.partitions_from_archive == 24
    assert first.archive is not None and first.archive.files_downloaded == 1
    assert first.client.requests >= 1  # the 5th, from REST
    assert second.archive is not None and second.archive.files_reused == 1
    assert second.archive.files_downloaded == 0 and zips == 1
    manifests = [load_manifest(store, w.key) for w in (windows[0], windows[-1])]
    assert [m.filled_by()["BTCUSDT"] for m in manifests] == ["archive", "rest"]


def test_a_reuploaded_archive_file_is_fetched_again_and_its_partitions_rebuilt(
    tmp_path: Path,
) -> None:
    windows = hourly_windows(date(2024, 6, 1))
    store = SnapshotStore(tmp_path)
    with BinanceEmulator() as rest, BinanceArchiveEmulator() as archive_server:
        url = archive_server.url
        fetch(rest, store, ["BTCUSDT"], windows, archive=BinanceVision(url))
        before = core_frame(store, windows)
        archive_server.reupload("BTCUSDT", date(2024, 6, 1))  # first close moved, a row dropped
        # A run over the first hour only: that hour is rebuilt from the new file...
        first_hour = fetch(rest, store, ["BTCUSDT"], windows[:1], archive=BinanceVision(url))
        assert core_frame(store, windows[1:]).equals(
            before.filter(pl.col("ts") >= windows[1].start)
        )
        # ...and the whole day's run takes the new file everywhere, the old rows in no partition.
        again = fetch(rest, store, ["BTCUSDT"], windows, archive=BinanceVision(url))
    after = core_frame(store, windows)
    assert first_hour.archive is not None and first_hour.archive.files_replaced == 1
    assert again.archive is not None and again.archive.files_reused == 1
    assert after.height == before.height - 1
    assert after["close"][0] != before["close"][0]
    shas = {load_manifest(store, w.key).symbols["BTCUSDT"][0].archive for w in windows}
    assert len(shas) == 1  # every hour names the same (new) file version


@pytest.mark.parametrize("fault", ["truncate", "corrupt_checksum"])
def test_a_cut_or_mismatched_archive_file_fails_naming_it_and_keeps_nothing(
    tmp_path: Path, fault: str
) -> None:
    day = date(2024, 6, 2)
    windows = hourly_windows(day)
    store = SnapshotStore(tmp_path)
    with BinanceEmulator() as rest, BinanceArchiveEmulator() as archive_server:
        getattr(archive_server, fault)("BTCUSDT", day)
        archive = BinanceVision(archive_server.url)
        with pytest.raises(ArchiveError) as error:
            fetch(rest, store, ["BTCUSDT"], windows, archive=archive)
    assert "BTCUSDT-1m-2024-06-02.zip" in str(error.value)
    assert "nothing is kept" in str(error.value)
    # Cut short or not, the bytes are not the ones the CHECKSUM file publishes.
    assert "fails its checksum" in str(error.value)
    assert not list((store.root / ARCHIVES_DIR).rglob("*.zip*"))
    assert not list((store.root / "raw").rglob("*.csv"))
    assert not (store.root / "manifests").exists()


def test_a_cut_file_replacing_a_good_one_leaves_the_good_one_in_force(tmp_path: Path) -> None:
    day = date(2024, 6, 3)
    windows = hourly_windows(day)
    store = SnapshotStore(tmp_path)
    with BinanceEmulator() as rest, BinanceArchiveEmulator() as archive_server:
        archive = BinanceVision(archive_server.url)
        fetch(rest, store, ["BTCUSDT"], windows, archive=archive)
        good = core_frame(store, windows)
        archive_server.reupload("BTCUSDT", day)
        archive_server.truncate("BTCUSDT", day)
        with pytest.raises(ArchiveError, match="fails its checksum"):
            fetch(rest, store, ["BTCUSDT"], windows, archive=archive)
    assert core_frame(store, windows).equals(good)


def test_archive_always_refuses_days_it_does_not_have_without_a_rest_request(
    tmp_path: Path,
) -> None:
    windows = hourly_windows(date(2026, 12, 5))  # not archived until later on the 6th
    now = NOW.timestamp()
    with BinanceEmulator() as rest, BinanceArchiveEmulator(now=lambda: now) as archive_server:
        with pytest.raises(ArchiveError, match="not published"):
            fetch(
                rest,
                SnapshotStore(tmp_path),
                ["BTCUSDT"],
                windows,
                archive=BinanceVision(archive_server.url),
                use=ArchiveUse.ALWAYS,
            )
        assert rest.request_log() == []


def test_massive_flat_file_day_equals_rest_unadjusted_bars_row_by_row(tmp_path: Path) -> None:
    """A session day with quiet minutes, from one day file holding 40 other tickers: the same
    rows as REST's adjusted=false minutes, every column but VWAP, which the files do not have."""
    day = date(2026, 1, 16)
    symbols = ["AAPL", "AMZN"]
    calendars = dict.fromkeys(symbols, "XNYS")
    windows = hourly_windows(day, range(14, 21))
    with (
        PolygonEmulator(api_keys={POLYGON_KEY}, calendars=calendars, calls_per_window=None) as rest,
        flat.MassiveFlatFiles(calendars, extra_tickers=40) as files,
    ):
        files.publish(day)
        fetch(rest, SnapshotStore(tmp_path / "rest"), symbols, windows)
        archive = MassiveFlatFiles(
            files.endpoint_url,
            access_key_id=files.access_key_id,
            secret_access_key=S3_SECRET,
        )
        requests_before = len(rest.request_log())
        by_archive = fetch(
            rest, SnapshotStore(tmp_path / "archive"), symbols, windows, archive=archive
        )
        assert len(rest.request_log()) == requests_before
    assert by_archive.archive is not None and by_archive.archive.files_downloaded == 1
    from_rest = core_frame(SnapshotStore(tmp_path / "rest"), windows)
    from_archive = core_frame(SnapshotStore(tmp_path / "archive"), windows)
    assert 0 < from_archive.height < 2 * 390  # quiet minutes have no bar
    assert from_archive.drop("vwap").equals(from_rest.drop("vwap"))
    assert from_archive.get_column("vwap").null_count() == from_archive.height
    assert from_rest.get_column("vwap").null_count() == 0
    kept = (tmp_path / "archive").rglob("*")
    assert not any(S3_SECRET.encode() in p.read_bytes() for p in kept if p.is_file())


def test_massive_day_file_replaced_upstream_is_fetched_again_and_a_cut_one_refused(
    tmp_path: Path,
) -> None:
    """A new ETag fetches the day again and its partitions get the new rows; a gzip cut short
    fails naming the key, and the version in force stays."""
    day = date(2026, 1, 15)
    calendars = {"AAPL": "XNYS"}
    windows = hourly_windows(day, range(14, 21))
    store = SnapshotStore(tmp_path)
    with (
        PolygonEmulator(api_keys={POLYGON_KEY}, calendars=calendars, calls_per_window=None) as rest,
        flat.MassiveFlatFiles(calendars, extra_tickers=5) as files,
    ):

        def archive() -> MassiveFlatFiles:
            return MassiveFlatFiles(
                files.endpoint_url,
                access_key_id=files.access_key_id,
                secret_access_key=files.secret_access_key,
            )

        files.publish(day)
        fetch(rest, store, ["AAPL"], windows, archive=archive())
        before = core_frame(store, windows)
        files.replace(day)
        again = fetch(rest, store, ["AAPL"], windows, archive=archive())
        after = core_frame(store, windows)
        files.put_truncated(day)
        with pytest.raises(ArchiveError, match=r"2026-01-15\.csv\.gz") as error:
            fetch(rest, store, ["AAPL"], windows, archive=archive())
    assert again.archive is not None and again.archive.files_replaced == 1
    assert not after.equals(before)
    assert "nothing is kept" in str(error.value)
    assert core_frame(store, windows).equals(after)


EQUITIES_YAML = """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: equities
  provider: polygon
  symbols: [AAPL, MSFT]
  calendar: XNYS
  base_url: "{rest}"
  api_key_env: ARCHIVE_TEST_POLYGON_KEY
  quota: {{requests: 600, window_seconds: 60}}
  partitions_start: "2026-01-02"
  archive:
    url: "{s3}"
    access_key_env: ARCHIVE_TEST_S3_ACCESS
    secret_key_env: ARCHIVE_TEST_S3_SECRET
"""


def test_a_backfill_from_the_ui_takes_archived_days_from_flat_files_and_the_rest_from_rest(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The story end to end through Dagster: a source declares Massive flat files; one range
    run over two session days gets the published day from its file (0 requests) and the day
    whose file is not there from REST; its metadata and manifests say which path filled what;
    a run forced onto the archive fails naming the missing file; no key lands anywhere."""
    calendars = {"AAPL": "XNYS", "MSFT": "XNYS"}
    access = "AKIA-ARCHIVE-TEST-NEVER-LOGGED"
    secrets = {
        "ARCHIVE_TEST_POLYGON_KEY": POLYGON_KEY,
        "ARCHIVE_TEST_S3_ACCESS": access,
        "ARCHIVE_TEST_S3_SECRET": S3_SECRET,
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    with (
        PolygonEmulator(api_keys={POLYGON_KEY}, calendars=calendars, calls_per_window=None) as rest,
        flat.MassiveFlatFiles(calendars, extra_tickers=10) as files,
    ):
        files.publish(date(2026, 1, 15))  # the 16th's file is not there
        source = tmp_path / "sources" / "equities"
        source.mkdir(parents=True)
        (source / "defs.yaml").write_text(
            EQUITIES_YAML.format(rest=rest.url, s3=files.endpoint_url)
        )
        env = {
            **secrets,
            "FIN_SOURCES_DIR": str(tmp_path / "sources"),
            "FIN_DATA_DIR": str(tmp_path / "data"),
            "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
        }
        defs = build_definitions(env)
        job = "equities__bars_hourly_job"
        first, last = "2026-01-15-14:00", "2026-01-16-20:00"
        ok = run_range(defs, job, first, last, instance=instance)
        forced = run_range(
            defs,
            job,
            "2026-01-16-14:00",
            "2026-01-16-20:00",
            instance=instance,
            run_config={"ops": {"raw__equities__bars": {"config": {"archive": "always"}}}},
        )
    assert ok.success, step_failure_messages(ok)
    raw = materialization_metadata(ok, ["raw", "equities", "bars"])
    assert raw["archive_files_downloaded"] == 1 and raw["archive_files_missing"] == 1
    assert raw["partitions_from_archive"] == 7
    assert raw["requests"] > 0  # the 16th, from REST
    store = SnapshotStore(tmp_path / "data")
    paths = {
        key: load_manifest(store, key, directory="equities__raw_bars").filled_by()
        for key in (first, last)
    }
    assert paths == {
        first: dict.fromkeys(calendars, "archive"),
        last: dict.fromkeys(calendars, "rest"),
    }
    core = ParquetWarehouse(tmp_path / "data" / "warehouse").read_partition(
        "equities__core_bars", first
    )
    assert core is not None and core.height > 0 and core["vwap"].null_count() == core.height
    assert not forced.success
    (failure,) = step_failure_messages(forced)
    assert "2026-01-16.csv.gz" in failure and "not published" in failure
    assert_secrets_nowhere(
        tuple(secrets.values()), data_dir=tmp_path, instance=instance, runs=(ok, forced)
    )
