"""The documented migration (docs/corporate-actions.md): a data directory whose Polygon bars an
earlier version fetched ``adjusted=true`` becomes consistent, unadjusted, the provider's own
``adjusted=false`` bars row by row.

The earlier version is reproduced exactly as it wrote: the same aggregates request with
``adjusted=true``, snapshots under ``bars_1m``, manifests without ``adjustment``, and core and
daily tables built from them, around AAPL's 10-for-1 split of 2026-03-10 on the emulator of
Massive. Then ``fin-assets migrate-unadjusted`` runs on it as a user would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest

from resources.errors import StorageError
from resources.http.client import MarketApiClient
from resources.providers.base import ApiRequest
from resources.providers.polygon import PolygonAdapter
from resources.raw.ingest import fetch_raw_bars
from resources.raw.snapshots import SnapshotStore
from resources.storage.parquet import ParquetWarehouse
from resources.tables.core import build_core_bars
from resources.tables.daily import aggregate_daily, build_daily_table
from resources.windows import PartitionWindow
from tests.emulators.polygon import PolygonEmulator
from tests.helpers import dagster_home, hourly_windows, run_cli

KEY = "migrate-test-key"
DAYS = (date(2026, 3, 9), date(2026, 3, 10))  # AAPL's 10-for-1 split executes on the 10th
HOURS = range(13, 20)  # XNYS in March after DST: 13:30-20:00 UTC
SOURCE_YAML = """\
type: fin_assets.lib.components.MarketDataSource
attributes:
  name: eq
  provider: polygon
  symbols: [AAPL]
  calendar: XNYS
  base_url: "{url}"
  api_key_env: POLYGON_MIGRATE_KEY
  quota: {{requests: 100, window_seconds: 1}}
  partitions_start: "2026-03-02"
  max_quiet_minutes: 10
"""


class EarlierPolygon(PolygonAdapter):
    """What the previous version sent: split-adjusted bars, kept under ``bars_1m``."""

    bars_dataset = "bars_1m"

    def bars_request(self, symbol: str, *, start: datetime, end: datetime) -> ApiRequest:
        request = super().bars_request(symbol, start=start, end=end)
        return request.with_params(adjusted="true")


def windows(day: date) -> list[PartitionWindow]:
    return hourly_windows(day, HOURS)


@pytest.fixture
def emulator() -> Iterator[PolygonEmulator]:
    with PolygonEmulator(
        api_keys={KEY}, calls_per_window=None, calendars={"AAPL": "XNYS"}
    ) as polygon:
        yield polygon


def earlier_version(root: Path, url: str) -> None:
    store = SnapshotStore(root / "data")
    warehouse = ParquetWarehouse(root / "lake")
    with MarketApiClient(EarlierPolygon(), base_url=url, api_key=KEY) as client:
        for day in DAYS:
            fetch_raw_bars(client, store, ["AAPL"], windows(day), manifests="eq__raw_bars")
            build_core_bars(
                store,
                warehouse,
                windows(day),
                table="eq__core_bars",
                manifests="eq__raw_bars",
                adapter=EarlierPolygon(),
            )
            build_daily_table(
                warehouse,
                [
                    PartitionWindow(
                        f"{day}",
                        windows(day)[0].start,
                        windows(day)[-1].end,
                        tuple(w.key for w in windows(day)),
                    )
                ],
                source="eq__core_bars",
                table="eq__core_daily_bars",
                compute=aggregate_daily,
            )
    # The earlier manifests said nothing of adjustment.
    for path in (root / "data" / "manifests" / "eq__raw_bars").glob("*.json"):
        manifest = json.loads(path.read_text())
        manifest.pop("adjustment")
        path.write_text(json.dumps(manifest))


def provider_unadjusted(url: str, day: date) -> pl.DataFrame:
    first = datetime(day.year, day.month, day.day, tzinfo=UTC)
    start = int(first.timestamp() * 1000)
    end = int((first + timedelta(days=1)).timestamp() * 1000) - 1
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        body = http.get(
            f"/v2/aggs/ticker/AAPL/range/1/minute/{start}/{end}",
            params={"adjusted": "false", "limit": "50000", "sort": "asc"},
        ).raise_for_status()
    return pl.DataFrame(body.json()["results"]).with_columns(
        pl.from_epoch(pl.col("t"), time_unit="ms").dt.replace_time_zone("UTC").alias("ts")
    )


@pytest.mark.slow(20)
def test_migration_refetches_unadjusted_and_leaves_a_consistent_table(
    emulator: PolygonEmulator, tmp_path: Path
) -> None:
    earlier_version(tmp_path, emulator.url)
    before = pl.read_parquet(sorted((tmp_path / "lake" / "eq__core_bars").glob("*.parquet")))
    # Adjusted as of today, every later split included (the 1-for-5 and 1-for-2 reverse splits
    # of July and November too): both days on one basis, while what traded fell to a tenth.
    adjusted_close = dict(
        before.group_by(pl.col("ts").dt.date().alias("day")).agg(pl.col("close").last()).iter_rows()
    )
    assert 0.8 < adjusted_close[DAYS[1]] / adjusted_close[DAYS[0]] < 1.25
    traded = provider_unadjusted(emulator.url, DAYS[1]).get_column("c")[-1]
    assert adjusted_close[DAYS[1]] == pytest.approx(traded * 10, rel=1e-3)
    # The new version refuses to build on them, naming the command.
    with pytest.raises(StorageError, match="fin-assets migrate-unadjusted"):
        build_core_bars(
            SnapshotStore(tmp_path / "data"),
            ParquetWarehouse(tmp_path / "lake"),
            windows(DAYS[0]),
            table="eq__core_bars",
            manifests="eq__raw_bars",
        )

    (tmp_path / "sources" / "eq").mkdir(parents=True)
    (tmp_path / "sources" / "eq" / "defs.yaml").write_text(SOURCE_YAML.format(url=emulator.url))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FIN_")}
    env = {
        **inherited,
        "DAGSTER_HOME": str(dagster_home(tmp_path / "home")),
        "FIN_SOURCES_DIR": str(tmp_path / "sources"),
        "FIN_DATA_DIR": str(tmp_path / "data"),
        "FIN_WAREHOUSE_URL": str(tmp_path / "lake"),
        "FIN_QUOTA_STORE": str(tmp_path / "quota.sqlite"),
        "POLYGON_MIGRATE_KEY": KEY,
        # The migration's runs are the job's own; in the run's process, each is one Python
        # process instead of one per step (what is checked is the data they leave).
        "FIN_EXECUTOR": "in_process",
    }
    dry = run_cli(["fin-assets", "migrate-unadjusted", "eq", "--dry-run"], env=env, timeout=240)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "14 partition(s) of raw/bars hold snapshots fetched adjusted" in dry.stdout
    assert "raw/eq/bars,core/eq/bars 2026-03-09-13:00...2026-03-10-19:00" in dry.stdout

    done = run_cli(["fin-assets", "migrate-unadjusted", "eq"], env=env, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every partition of raw/bars is unadjusted now" in done.stdout
    assert KEY not in done.stdout + done.stderr

    after = pl.read_parquet(sorted((tmp_path / "lake" / "eq__core_bars").glob("*.parquet")))
    for day in DAYS:
        ours = after.filter(pl.col("ts").dt.date() == day).sort("ts")
        theirs = provider_unadjusted(emulator.url, day)
        assert ours.get_column("ts").to_list() == theirs.get_column("ts").to_list()
        for column, field in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c")):
            assert ours.get_column(column).to_list() == theirs.get_column(field).to_list()
        assert ours.get_column("volume").to_list() == theirs.get_column("v").to_list()
    # The daily table is rebuilt from the unadjusted bars: the split shows as a tenth.
    daily = pl.read_parquet(sorted((tmp_path / "lake" / "eq__core_daily_bars").glob("*.parquet")))
    closes = dict(daily.select("date", "close").iter_rows())
    expected = aggregate_daily(
        after.filter(pl.col("ts").dt.date() == DAYS[1]), day=datetime(2026, 3, 10, tzinfo=UTC)
    )
    assert closes[DAYS[1]] == expected.get_column("close")[0]
    assert 0.05 < closes[DAYS[1]] / closes[DAYS[0]] < 0.2
    # Nothing names an adjusted snapshot any more; the old files stay, never read.
    for path in (tmp_path / "data" / "manifests" / "eq__raw_bars").glob("*.json"):
        manifest = json.loads(path.read_text())
        assert (manifest["dataset"], manifest["adjustment"]) == ("bars_1m_unadjusted", "none")
    assert any((tmp_path / "data" / "raw").glob("*/bars_1m/AAPL/*.json"))
    again = run_cli(["fin-assets", "migrate-unadjusted", "eq"], env=env, timeout=240)
    assert again.returncode == 0 and "nothing to migrate" in again.stdout
