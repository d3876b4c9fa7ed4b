"""Declarative automation of the daily tables: they follow every hourly window (backfills
too), once every hour of their day has landed and passed its blocking quality checks.

``automation_sensor`` evaluates the conditions; it is declared (not left to Dagster's implicit
default sensor, which starts stopped) with ``default_status=RUNNING``.
"""

from __future__ import annotations

import dagster as dg


def blocking_checks_passed_in_every_dep_partition() -> dg.AutomationCondition:
    """True for a partition when, in *every* partition of every dependency it maps to, each
    blocking check has passed against that partition's latest materialization.

    Dagster's ``AutomationCondition.all_deps_blocking_checks_passed()`` maps the passing dep
    partitions back down, so a daily partition counts as passed when *any one* of its 24 hours
    passed: a failed hour does not hold the day back. Negating "some dep partition has a
    blocking check that has not passed" gives the all-hours semantics. A partition whose checks
    never ran (materialized before the checks existed) also holds its day back: run the checks
    for it (``core_bars_checks_job``)."""
    return ~dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.any_checks_match(
            ~dg.AutomationCondition.check_passed(), blocking_only=True
        )
    ).with_label("blocking_checks_passed_in_every_dep_partition")


def daily_automation_condition() -> dg.AutomationCondition:
    """For the daily assets: eager on every time window (backfilled days too, DESIGN §7), and
    only once every hour of the day passed its blocking checks."""
    return (
        dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())
        & blocking_checks_passed_in_every_dep_partition()
    )


def build_automation_sensor(
    *, minimum_interval_seconds: int
) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Materializes the daily tables once all hours of their day have landed.",
    )


def rebuild_when_inputs_change() -> dg.AutomationCondition:
    """For the unpartitioned tables of corporate actions and the adjusted series: rebuilt once
    any input has a new materialization (a day of daily bars, a fetch of actions), when none of
    them is still being written. Not ``eager()``: that also waits for every input partition to
    exist, and a daily table with days not yet backfilled would hold them back for ever."""
    return (
        dg.AutomationCondition.any_deps_updated()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("rebuild_when_inputs_change")
