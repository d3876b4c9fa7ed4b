"""Our adjustment against the provider's own, over the simulator's splits and dividends.

The simulator serves what Massive documents: unadjusted bars (``adjusted=false``), bars
split-adjusted as of the request (``adjusted=true``), and the splits and dividends endpoints.
The pipeline's layers (the same functions the assets call) fetch the raw bars and the actions,
build core and daily bars, the typed actions and the adjusted series; every row is then compared
with what the provider answers for the same symbol and day.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest

from fin_assets.lib.checks import ADJUSTED_TABLE_RULES, Window
from resources.calendars import load_sessions
from resources.http.client import MarketApiClient
from resources.providers.polygon import PolygonAdapter
from resources.quality import check_jumps, check_ohlc, check_positive, check_unique
from resources.raw.actions import fetch_corporate_actions
from resources.raw.ingest import fetch_raw_bars
from resources.raw.snapshots import SnapshotStore
from resources.simulator.adapter import SimulatorAdapter
from resources.simulator.server import MarketSimulator, SimulatorConfig
from resources.storage.parquet import ParquetWarehouse
from resources.tables.adjustment import splits_by_day
from resources.tables.core import build_core_bars
from resources.tables.corporate import build_actions_table, build_adjusted_tables
from resources.tables.daily import aggregate_daily, build_daily_table
from resources.windows import PartitionWindow
from tests.emulators.polygon import PolygonEmulator
from tests.helpers import hourly_windows

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA")
WHERE = "source eq (provider simulator)"


@dataclass(frozen=True)
class Built:
    sim: MarketSimulator
    warehouse: ParquetWarehouse
    days: tuple[date, ...]
    actions: pl.DataFrame


def provider_bars(sim: MarketSimulator, symbol: str, day: date, *, adjusted: bool) -> pl.DataFrame:
    """The provider's 1-minute bars of one UTC day, every page, as it sends them."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    params = {
        "symbol": symbol,
        "start": f"{start:%Y-%m-%dT%H:%M:%SZ}",
        "end": f"{start + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}",
        "adjusted": "true" if adjusted else "false",
    }
    rows = []
    with httpx.Client(base_url=sim.url) as http:
        while True:
            page = http.get("/v1/bars", params=params).raise_for_status().json()
            rows += page["bars"]
            if page["next_cursor"] is None:
                break
            params = {**params, "cursor": page["next_cursor"]}
            params.pop("start", None)
    if not rows:  # a holiday
        return pl.DataFrame(
            schema={
                "t": pl.String(),
                **{k: pl.Float64() for k in "ohlcv"},
                "n": pl.Int64(),
                "vw": pl.Float64(),
                "ts": pl.Datetime("us", "UTC"),
            }
        )
    return pl.DataFrame(rows).with_columns(
        pl.col("t").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC").alias("ts")
    )


def provider_actions(sim: MarketSimulator, kind: str) -> list[dict[str, object]]:
    # The simulator computes the actions of every symbol's history on demand: seconds on a
    # busy host, longer than httpx's default 5 s read timeout.
    with httpx.Client(base_url=sim.url, timeout=60.0) as http:
        answer = http.get(
            f"/stocks/v1/{kind}", params={"ticker.any_of": ",".join(SYMBOLS), "limit": "5000"}
        )
        return answer.raise_for_status().json()["results"]


def pick_days(sim: MarketSimulator) -> tuple[date, ...]:
    """Session days around the simulator's first 10-for-1 split, first 1-for-5 reverse split
    and a dividend of 2026 among the symbols: the day before, the day itself, the day after."""
    splits = [s for s in provider_actions(sim, "splits") if str(s["execution_date"]) >= "2026"]
    forward = min(
        (s for s in splits if (s["split_from"], s["split_to"]) == (1.0, 10.0)),
        key=lambda s: str(s["execution_date"]),
    )
    reverse = min(
        (s for s in splits if (s["split_from"], s["split_to"]) == (5.0, 1.0)),
        key=lambda s: str(s["execution_date"]),
    )
    dividends = [
        d for d in provider_actions(sim, "dividends") if str(d["ex_dividend_date"]) >= "2026"
    ]
    dividend = min(dividends, key=lambda d: str(d["ex_dividend_date"]))
    days: set[date] = set()
    for action_day in (
        date.fromisoformat(str(forward["execution_date"])),
        date.fromisoformat(str(reverse["execution_date"])),
        date.fromisoformat(str(dividend["ex_dividend_date"])),
    ):
        days |= sessions_around(action_day)
    return tuple(sorted(days))


def sessions_around(day: date) -> set[date]:
    """The XNYS session before ``day``, ``day`` and the session after."""
    sessions = xnys_sessions()
    before = max(s for s in sessions if s < day)
    after = min(s for s in sessions if s > day)
    return {before, day, after}


def xnys_sessions() -> list[date]:
    sessions = load_sessions(
        "XNYS", first=date(2025, 6, 1), last=date(2027, 12, 31), cache_dir=None
    )
    return sorted({opened.date() for opened in sessions.opens})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root: Path = tmp_path_factory.mktemp("actions")
    config = SimulatorConfig(port=0, calendars=dict.fromkeys(SYMBOLS, "XNYS"))
    with MarketSimulator(config) as sim:
        days = pick_days(sim)
        store = SnapshotStore(root / "data")
        warehouse = ParquetWarehouse(root / "lake")
        with MarketApiClient(SimulatorAdapter(), base_url=sim.url) as client:
            for day in days:
                windows = hourly_windows(day)
                fetch_raw_bars(client, store, SYMBOLS, windows)
                build_core_bars(store, warehouse, windows, table="eq__core_bars")
                build_daily_table(
                    warehouse,
                    [
                        PartitionWindow(
                            f"{day}",
                            windows[0].start,
                            windows[-1].end,
                            tuple(w.key for w in windows),
                        )
                    ],
                    source="eq__core_bars",
                    table="eq__core_daily_bars",
                    compute=aggregate_daily,
                )
            fetch_corporate_actions(client, store, SYMBOLS)
        build_actions_table(
            store,
            warehouse,
            SimulatorAdapter(),
            manifests="corporate_actions",
            table="eq__core_corp_actions",
            symbols=SYMBOLS,
            where=WHERE,
        )
        build_adjusted_tables(
            warehouse,
            daily_table="eq__core_daily_bars",
            actions_table="eq__core_corp_actions",
            factors_table="eq__core_adj_factors",
            adjusted_table="eq__core_adj_daily",
            returns_table="eq__core_total_returns",
            as_of=datetime.now(UTC).date(),
            where=WHERE,
            sessions=xnys_sessions(),
        )
        actions = warehouse.read_table("eq__core_corp_actions")
        assert actions is not None
        yield Built(sim, warehouse, days, actions)


def test_unadjusted_bars_equal_the_providers_adjusted_false_bars_row_by_row(built: Built) -> None:
    ours = built.warehouse.scan("eq__core_bars").collect()
    compared = 0
    for symbol in SYMBOLS:
        for day in built.days:
            theirs = provider_bars(built.sim, symbol, day, adjusted=False)
            mine = ours.filter((pl.col("symbol") == symbol) & (pl.col("ts").dt.date() == day)).sort(
                "ts"
            )
            assert mine.get_column("ts").to_list() == theirs.get_column("ts").to_list()
            for column, source in (
                ("open", "o"),
                ("high", "h"),
                ("low", "l"),
                ("close", "c"),
                ("volume", "v"),
                ("vwap", "vw"),
                ("trades", "n"),
            ):
                assert mine.get_column(column).to_list() == theirs.get_column(source).to_list(), (
                    symbol,
                    day,
                    column,
                )
            compared += mine.height
    assert compared > 1000


def test_split_adjusted_daily_closes_equal_the_providers_adjusted_true_closes(built: Built) -> None:
    adjusted = built.warehouse.read_table("eq__core_adj_daily")
    assert adjusted is not None
    checked = 0
    for symbol in SYMBOLS:
        for day in built.days:
            theirs = provider_bars(built.sim, symbol, day, adjusted=True)
            if theirs.is_empty():
                continue  # a holiday
            row = adjusted.filter((pl.col("symbol") == symbol) & (pl.col("date") == day))
            assert row.height == 1, (symbol, day)
            close, high, low, volume = row.select("close", "high", "low", "volume").row(0)
            assert close == pytest.approx(theirs.get_column("c")[-1], rel=1e-12), (symbol, day)
            assert high == pytest.approx(theirs.get_column("h").max(), rel=1e-12)
            assert low == pytest.approx(theirs.get_column("l").min(), rel=1e-12)
            assert volume == pytest.approx(theirs.get_column("v").sum(), rel=1e-9)
            checked += 1
    assert checked >= 3 * len(SYMBOLS)


def test_our_factors_equal_the_providers_historical_adjustment_factors(built: Built) -> None:
    factors = built.warehouse.read_table("eq__core_adj_factors")
    assert factors is not None
    actions = built.actions.filter(pl.col("ex_date").is_in(list(built.days)))
    assert {"split", "dividend"} <= set(actions.get_column("kind").to_list())
    for action in actions.to_dicts():
        day_before = factors.filter(
            (pl.col("symbol") == action["symbol"]) & (pl.col("date") < action["ex_date"])
        ).sort("date")
        if day_before.is_empty():
            continue
        last = day_before.row(-1, named=True)
        # The factor of the day before an action's date is what the provider states for it
        # (rounded to 6 decimals, as Massive does), for splits and dividends alike.
        if action["kind"] == "split":
            assert last["split_factor"] == pytest.approx(action["provider_factor"], abs=6e-7)
        else:
            # Later dividends whose previous session this test did not build are priced from
            # the provider's six-decimal factors (adjustment._dividend_ratios): their rounding
            # adds up to a few millionths.
            assert last["dividend_factor"] == pytest.approx(action["provider_factor"], abs=1e-5)


def test_returns_across_each_action_are_the_ordinary_ones(built: Built) -> None:
    returns = built.warehouse.read_table("eq__core_total_returns")
    daily = built.warehouse.scan("eq__core_daily_bars").collect()
    assert returns is not None
    in_window = built.actions.filter(pl.col("ex_date").is_in(list(built.days)))
    seen = 0
    for (symbol, day), _ in in_window.group_by("symbol", "ex_date"):
        row = returns.filter((pl.col("symbol") == symbol) & (pl.col("date") == day))
        if row.is_empty():
            continue  # the symbol's first day in the window: no previous close
        r = row.row(0, named=True)
        closes = dict(daily.filter(pl.col("symbol") == symbol).select("date", "close").iter_rows())
        prev, close = closes[r["prev_date"]], closes[day]
        # Every action since the previous close this table holds (days not built are a gap).
        actions = built.actions.filter(
            (pl.col("symbol") == symbol)
            & (pl.col("ex_date") > r["prev_date"])
            & (pl.col("ex_date") <= day)
        )
        # Hand-computed from first principles: one share held from the previous close; a split
        # multiplies the shares, a dividend pays cash per share held on its ex-date (a split of
        # the same day first: the cash is per post-split share).
        shares, cash = 1.0, 0.0
        for action in actions.sort("ex_date", "kind", descending=[False, True]).to_dicts():
            if action["kind"] == "split":
                shares *= action["split_to"] / action["split_from"]
            else:
                cash += shares * action["cash_amount"]
        assert r["price_return"] == pytest.approx(close * shares / prev - 1, rel=1e-12)
        assert r["total_return"] == pytest.approx((close * shares + cash) / prev - 1, rel=1e-12)
        # Not the -90 % (or +400 %) the unadjusted closes show: an ordinary day's move.
        assert abs(r["price_return"]) < 0.2, (symbol, day, r)
        seen += 1
    assert seen >= 2


def test_both_tables_pass_the_quality_checks_and_an_unexplained_jump_still_fails(
    built: Built,
) -> None:
    bars = built.warehouse.scan("eq__core_bars").collect()
    splits = splits_by_day(built.actions)
    split_days = set(built.actions.filter(pl.col("kind") == "split").get_column("ex_date"))
    around = [d for d in built.days if d in split_days]
    assert around, "a split in the window"
    for day in around:
        window = bars.filter(
            (pl.col("ts") >= datetime.combine(day - timedelta(days=4), datetime.min.time(), UTC))
            & (pl.col("ts") < datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC))
        )
        since = datetime.combine(day, datetime.min.time(), UTC)
        assert not check_jumps(window, since=since).passed  # the split, unexplained
        assert check_jumps(window, since=since, splits=splits).passed
        # A 50 % jump nobody explains, an hour into the split day: still a failure.
        planted = window.with_columns(
            pl.when(pl.col("ts") >= since + timedelta(hours=15))
            .then(pl.col("close") * 1.5)
            .otherwise(pl.col("close"))
            .alias("close")
        )
        failed = check_jumps(planted, since=since, splits=splits)
        assert not failed.passed and failed.failing_rows >= 1
    # Every rule the adjusted tables' checks evaluate (fin_assets/lib/checks.py), on the tables.
    for name, (base, rules) in ADJUSTED_TABLE_RULES.items():
        frame = built.warehouse.read_table(f"eq__{base}")
        assert frame is not None, name
        window = Window(
            partition_key="",
            start=datetime.combine(min(built.days), datetime.min.time(), UTC),
            end=datetime.combine(max(built.days), datetime.min.time(), UTC),
            frame=frame,
            context=None,
            symbols=SYMBOLS,
            sessions=None,  # type: ignore[arg-type]  # the table rules never read it
        )
        for rule in rules:
            outcome = rule.evaluate(window)
            assert outcome.passed, (name, outcome.summary)
    adjusted = built.warehouse.read_table("eq__core_adj_daily")
    assert adjusted is not None
    for outcome in (
        check_ohlc(adjusted, time_col="date"),
        check_unique(adjusted, keys=("symbol", "date")),
        check_positive(adjusted, time_col="date"),
    ):
        assert outcome.passed, outcome.summary
    daily = built.warehouse.scan("eq__core_daily_bars").collect()
    assert check_ohlc(daily, time_col="date").passed


def test_the_massive_emulators_actions_read_through_the_polygon_adapter(tmp_path: Path) -> None:
    """The same reader against the emulator written from Massive's documentation: every split
    and dividend it lists for a stock arrives typed, field for field."""
    key = "actions-emulator-key"
    with PolygonEmulator(
        api_keys={key}, calls_per_window=None, calendars={"AAPL": "XNYS"}
    ) as polygon:
        with MarketApiClient(PolygonAdapter(), base_url=polygon.url, api_key=key) as client:
            result = fetch_corporate_actions(client, SnapshotStore(tmp_path), ["AAPL", "X:BTCUSD"])
        with httpx.Client(base_url=polygon.url, headers={"Authorization": f"Bearer {key}"}) as http:
            listed = {
                kind: http.get(f"/stocks/v1/{kind}", params={"ticker": "AAPL", "limit": "5000"})
                .raise_for_status()
                .json()["results"]
                for kind in ("splits", "dividends")
            }
    assert result.symbols == ("AAPL",)
    assert (result.splits, result.dividends) == (len(listed["splits"]), len(listed["dividends"]))
    warehouse = ParquetWarehouse(tmp_path / "lake")
    build_actions_table(
        SnapshotStore(tmp_path),
        warehouse,
        PolygonAdapter(),
        manifests="corporate_actions",
        table="eq__core_corp_actions",
        symbols=["AAPL"],
        where="source eq (provider polygon)",
    )
    table = warehouse.read_table("eq__core_corp_actions")
    assert table is not None
    splits = table.filter(pl.col("kind") == "split").sort("ex_date").to_dicts()
    for ours, theirs in zip(
        splits, sorted(listed["splits"], key=lambda s: s["execution_date"]), strict=True
    ):
        assert str(ours["ex_date"]) == theirs["execution_date"]
        assert (ours["split_from"], ours["split_to"]) == (theirs["split_from"], theirs["split_to"])
        assert ours["provider_factor"] == theirs["historical_adjustment_factor"]
        assert ours["provider_id"] == theirs["id"]
    dividends = table.filter(pl.col("kind") == "dividend").sort("ex_date").to_dicts()
    ordered = sorted(listed["dividends"], key=lambda d: d["ex_dividend_date"])
    for ours, theirs in zip(dividends, ordered, strict=True):
        assert str(ours["ex_date"]) == theirs["ex_dividend_date"]
        assert ours["cash_amount"] == theirs["cash_amount"]
        assert ours["currency"] == theirs["currency"]
        assert str(ours["pay_date"]) == theirs["pay_date"]
