"""Each window is materialized a few minutes after it closes.

Both schedules start STOPPED: switch them on in the UI (Automation tab) or with
``dagster schedule start`` once the provider is reachable, so a fresh ``dagster dev`` does not
fire runs at an API that is not there.
"""

from __future__ import annotations

import dagster as dg

from fin_assets.jobs import bars_hourly_job, daily_tables_job

# Five minutes after the hour: late prints from the provider have settled.
bars_hourly_schedule = dg.build_schedule_from_partitioned_job(
    bars_hourly_job, name="bars_hourly_schedule", minute_of_hour=5
)

# 00:30 UTC: after the 23:00 hour's run (00:05) has had time to land.
daily_tables_schedule = dg.build_schedule_from_partitioned_job(
    daily_tables_job, name="daily_tables_schedule", hour_of_day=0, minute_of_hour=30
)
