"""Time-window partitions: hourly for bars (each hour is fetched once it closes), daily for
daily tables. All UTC. The start date bounds what a backfill can ask for."""

from __future__ import annotations

import dagster as dg

PARTITIONS_START = "2026-01-01"

hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=f"{PARTITIONS_START}-00:00", timezone="UTC"
)
daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
