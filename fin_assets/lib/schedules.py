"""Each window is materialized a few minutes after it closes; on an exchange calendar, only the
hours and days of its sessions (the partitions' exclusions skip the rest).

The schedules start STOPPED: switch them on in the UI (Automation tab) or with
``dagster schedule start`` once the provider is reachable, so a fresh ``dagster dev`` does not
fire runs at an API that is not there.
"""

from __future__ import annotations

import dagster as dg

from fin_assets.lib.jobs import SourceJobs
from fin_assets.lib.sources import Source


def build_schedules(
    source: Source, jobs: SourceJobs
) -> list[dg.ScheduleDefinition | dg.UnresolvedPartitionedAssetScheduleDefinition]:
    return [
        # Five minutes after the hour: late prints from the provider have settled.
        dg.build_schedule_from_partitioned_job(
            jobs.bars_hourly, name=source.job_name("bars_hourly_schedule"), minute_of_hour=5
        ),
        # 00:30 UTC: after the 23:00 hour's run (00:05) has had time to land.
        dg.build_schedule_from_partitioned_job(
            jobs.daily_tables,
            name=source.job_name("daily_tables_schedule"),
            hour_of_day=0,
            minute_of_hour=30,
        ),
    ]
