"""Every job of the code location: the hourly bars, the daily tables, and re-running the
quality checks of partitions already materialized."""

from __future__ import annotations

import dagster as dg

from fin_assets.assets.bars import core_bars
from fin_assets.assets.daily import core_daily_bars, core_daily_returns
from fin_assets.assets.raw import RAW_BARS_KEY

bars_hourly_job = dg.define_asset_job(
    "bars_hourly_job",
    selection=dg.AssetSelection.assets(RAW_BARS_KEY, core_bars),
    description="Fetch and process one hour of 1-minute bars for the whole universe.",
)

daily_tables_job = dg.define_asset_job(
    "daily_tables_job",
    selection=dg.AssetSelection.assets(core_daily_bars, core_daily_returns),
    description="Aggregate one UTC day of core/bars into the daily tables.",
)

# Re-run the checks of already materialized partitions without fetching or rebuilding them:
# `dagster job launch -j core_bars_checks_job --tags '{"dagster/asset_partition_range_start":
# "2026-01-05-00:00", "dagster/asset_partition_range_end": "2026-01-05-23:00"}'`.
core_bars_checks_job = dg.define_asset_job(
    "core_bars_checks_job",
    selection=dg.AssetSelection.checks_for_assets(core_bars),
    description="Run the data-quality checks of core/bars on a partition or range, "
    "without rematerializing it.",
)

daily_checks_job = dg.define_asset_job(
    "daily_checks_job",
    selection=dg.AssetSelection.checks_for_assets(core_daily_bars, core_daily_returns),
    description="Run the data-quality checks of the daily tables on a partition or range, "
    "without rematerializing them.",
)
