"""Data-quality checks on core/bars and the daily tables, one evaluation per partition.

The logic is in ``resources/quality.py`` (pure polars); this module decides severity, blocking,
which window each check sees, and how a result reaches Dagster.

- **Blocking, ERROR** — corrupt data that must not propagate: OHLC invariants, unique keys,
  non-positive prices or negative volume (and, for returns, non-finite values). A failure fails
  the check step, so assets downstream *in the same run* do not execute, and
  ``blocking_checks_passed_in_every_dep_partition()`` keeps declarative automation from
  requesting a daily partition whose hours did not pass.
- **Non-blocking, WARN** — hints a human should look at: missing minutes (quiet minutes have no
  bar, DESIGN §3), price jumps, frozen prices; windows of the interval bars without a bar.

The interval bars' checks are evaluated once per run, not per partition (``build_quality_checks``
says why).

Why checks yield ``AssetCheckEvaluation``s instead of returning ``AssetCheckResult``s: our assets
run whole ranges in one run (``BackfillPolicy.single_run()``), and in Dagster 1.13 an
``AssetCheckResult`` emitted in a range run is recorded with no partition, so a partitioned
check would never pass or fail for any hour of a backfill. Each check therefore reads the
warehouse partitions of the run one by one and records one evaluation per partition, pointing
at that partition's latest materialization (what Dagster's automation compares against), then
emits the step outputs downstream steps wait for. One ``multi_asset_check`` per asset keeps that
to one step (one process under the multiprocess executor) instead of one per check.
"""

# No `from __future__ import annotations`: Dagster reads the check function's parameter
# annotations (context, resources) at decoration time and cannot resolve them as strings.

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any

import dagster as dg
import polars as pl

from fin_assets.dagster_internals.check_events import (
    EvaluationWriter,
    check_failed_error,
    target_materializations,
)
from fin_assets.lib.assets.actions import has_corporate_actions
from fin_assets.lib.assets.common import dagster_errors, partition_label
from fin_assets.lib.assets.ranges import run_partition_keys
from fin_assets.lib.partitions import SourcePartitions
from fin_assets.lib.progress import ProgressReporter
from fin_assets.lib.resources import UniverseResource, WarehouseResource
from fin_assets.lib.sources import Source
from resources.calendars import Sessions
from resources.quality import (
    FROZEN_MIN_BARS,
    FROZEN_PRICES,
    JUMP_K,
    JUMP_MIN_RETURNS,
    MISSING_MINUTES,
    OHLC_INVARIANTS,
    POSITIVE_PRICES,
    PRICE_JUMPS,
    CheckOutcome,
    check_finite,
    check_frozen,
    check_jumps,
    check_missing_minutes,
    check_ohlc,
    check_positive,
    check_unique,
    format_time,
    merge_outcomes,
    unique_check_name,
)
from resources.storage.base import Warehouse
from resources.tables.adjustment import (
    ADJUSTED_DAILY_TABLE,
    ADJUSTMENT_FACTORS_TABLE,
    CORPORATE_ACTIONS_TABLE,
    TOTAL_RETURNS_TABLE,
    splits_by_day,
)
from resources.tables.core import CORE_BARS_TABLE
from resources.tables.corporate import read_actions_table
from resources.tables.daily import DAILY_BARS_TABLE, DAILY_RETURNS_TABLE
from resources.tables.intervals import INTERVALS, interval_table


@dataclass(frozen=True)
class Window:
    """What a check sees for one partition."""

    partition_key: str
    start: datetime
    end: datetime
    frame: pl.DataFrame  # the partition's rows
    context: pl.DataFrame | None  # the previous partition's rows, if materialized
    symbols: tuple[str, ...]  # the universe
    sessions: Sessions  # when the market is open: only those minutes can hold bars
    # The source's splits (symbol, ex_date, ratio), for the jump a split explains; None: none.
    splits: pl.DataFrame | None = None

    @cached_property
    def with_context(self) -> pl.DataFrame:
        """The previous partition's rows then this one's; built once, shared by the rules."""
        if self.context is None or self.context.is_empty():
            return self.frame
        return pl.concat([self.context, self.frame], how="diagonal_relaxed")


@dataclass(frozen=True)
class QualityRule:
    name: str
    description: str
    blocking: bool  # blocking rules report ERROR, the others WARN
    evaluate: Callable[[Window], CheckOutcome]
    thresholds: dict[str, float | int] = field(default_factory=dict)

    @property
    def severity(self) -> dg.AssetCheckSeverity:
        return dg.AssetCheckSeverity.ERROR if self.blocking else dg.AssetCheckSeverity.WARN


# Partitions whose evaluations are looked up and recorded together: a week of hours.
CHECK_CHUNK = 168
MAX_FAILURES_LOGGED = 20

BLOCKING_NOTE = " Blocking: a failure holds back downstream assets."
WARN_NOTE = " Warning only, never blocks."


# The blocking rules shared by the hourly and the daily tables, which differ only in their time
# column ("ts" or "date") and what one row is called in the description.
def _ohlc_rule(time_col: str, row: str) -> QualityRule:
    return QualityRule(
        OHLC_INVARIANTS,
        f"Every {row} has high >= max(open, close), low <= min(open, close) and finite prices "
        "and volume." + BLOCKING_NOTE,
        blocking=True,
        evaluate=lambda w: check_ohlc(w.frame, time_col=time_col),
    )


def _unique_rule(time_col: str, row: str) -> QualityRule:
    keys = ("symbol", time_col)
    return QualityRule(
        unique_check_name(keys),
        f"One {row} per ({', '.join(keys)})." + BLOCKING_NOTE,
        blocking=True,
        evaluate=lambda w: check_unique(w.frame, keys=keys),
    )


def _positive_rule(time_col: str) -> QualityRule:
    return QualityRule(
        POSITIVE_PRICES,
        "Open, high, low, close and vwap > 0, volume >= 0." + BLOCKING_NOTE,
        blocking=True,
        evaluate=lambda w: check_positive(w.frame, time_col=time_col),
    )


def _bar_rules() -> tuple[QualityRule, ...]:
    """The blocking rules of every table of bars (1-minute and interval)."""
    return (_ohlc_rule("ts", "bar"), _unique_rule("ts", "bar"), _positive_rule("ts"))


def core_bars_rules(source: Source) -> tuple[QualityRule, ...]:
    """The rules of core/bars; the missing-minutes rule counts only the source's session
    minutes (early closes included) and tolerates its quiet minutes."""
    return (
        *_bar_rules(),
        QualityRule(
            MISSING_MINUTES,
            "Minutes of the hour without a bar, per symbol of the universe, reported as gaps. "
            "A minute without trades has no bar, so a gap can be a quiet market rather than "
            "missing data." + WARN_NOTE,
            blocking=False,
            evaluate=lambda w: check_missing_minutes(
                w.frame,
                start=w.start,
                end=w.end,
                symbols=w.symbols,
                open_intervals=w.sessions.intervals(w.start, w.end),
                max_missing_per_symbol=source.max_quiet_minutes,
            ),
        ),
        QualityRule(
            PRICE_JUMPS,
            f"1-minute close-to-close log returns more than {JUMP_K:g} robust deviations "
            "(1.4826 x MAD) from the symbol's median in the hour; returns over a gap are scaled to "
            "one minute, and the previous hour's last bar is included so a jump at the boundary "
            "counts. A bad print or real news; on unadjusted bars a jump at a split's execution "
            "date that the split's ratio explains is not one (core/corporate_actions)." + WARN_NOTE,
            blocking=False,
            evaluate=lambda w: check_jumps(w.with_context, since=w.start, splits=w.splits),
            thresholds={"k": JUMP_K, "min_returns": JUMP_MIN_RETURNS},
        ),
        QualityRule(
            FROZEN_PRICES,
            f"Runs of {FROZEN_MIN_BARS} or more identical bars: repeats of the previous bar (same "
            "OHLC and volume) or flat zero-volume fills at the previous close — a stale feed. "
            "Identical closes alone are not flagged: an illiquid symbol can keep its price while "
            "trading." + WARN_NOTE,
            blocking=False,
            evaluate=lambda w: check_frozen(w.with_context, since=w.start),
            thresholds={"min_bars": FROZEN_MIN_BARS},
        ),
    )


DAILY_BARS_RULES: tuple[QualityRule, ...] = (
    _ohlc_rule("date", "day"),
    _unique_rule("date", "row"),
    _positive_rule("date"),
)

FINITE_RETURNS = "finite_returns"
RETURN_COLUMNS = ("return_oc", "log_return_oc", "realized_vol", "realized_vol_annualized")


def _finite_rule(
    name: str, description: str, columns: tuple[str, ...], non_negative: tuple[str, ...]
) -> QualityRule:
    """A blocking rule: ``columns`` present and finite, ``non_negative`` of them >= 0."""
    return QualityRule(
        name,
        description + BLOCKING_NOTE,
        blocking=True,
        evaluate=lambda w: check_finite(
            w.frame, name=name, columns=columns, non_negative=non_negative
        ),
    )


DAILY_RETURNS_RULES: tuple[QualityRule, ...] = (
    _unique_rule("date", "row"),
    _finite_rule(
        FINITE_RETURNS,
        "Returns and volatilities present and finite, volatilities >= 0.",
        RETURN_COLUMNS,
        ("realized_vol", "realized_vol_annualized"),
    ),
)


def _metadata(rule: QualityRule, outcome: CheckOutcome, partition_key: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "partition": partition_key,
        "rows_checked": outcome.rows_checked,
        "failing_rows": outcome.failing_rows,
        "failing_symbols": dg.MetadataValue.json(outcome.by_symbol),
        "examples": dg.MetadataValue.json(
            [
                {"symbol": o.symbol, "at": format_time(o.at), "detail": o.detail}
                for o in outcome.examples
            ]
        ),
    }
    if outcome.first_at is not None:
        metadata["first_at"] = format_time(outcome.first_at)
    if outcome.last_at is not None:
        metadata["last_at"] = format_time(outcome.last_at)
    if rule.thresholds:
        metadata["thresholds"] = dg.MetadataValue.json(dict(rule.thresholds))
    return metadata


def _chunks(keys: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def _previous_key(partitions_def: dg.TimeWindowPartitionsDefinition, start: datetime) -> str | None:
    first = partitions_def.start
    if start <= first:
        return None
    return partitions_def.get_partition_key_for_timestamp(
        (start - timedelta(seconds=1)).timestamp()
    )


@dataclass(frozen=True)
class CheckTarget:
    """One asset a check step evaluates: its table, its rules, whether they see the previous
    partition too, and the source's corporate actions table, whose splits explain jumps."""

    asset_key: dg.AssetKey
    table: str
    rules: Sequence[QualityRule]
    with_previous_partition: bool = False
    splits_table: str | None = None
    # One evaluation per check and run, over every partition of the run, instead of one per
    # partition: for tables nothing is automated from (the interval bars), where an event per
    # partition and check would cost more than building the table (see build_quality_checks).
    per_run: bool = False


def build_partition_checks(
    *,
    name: str,
    targets: Sequence[CheckTarget],
    partitions: SourcePartitions,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    universe_key: str,
) -> dg.AssetChecksDefinition:
    """One step that evaluates each target's rules on each partition of the run: core/bars and
    the interval bars built in its step are checked in one step (one process, one read of the
    instance per chunk), as they are built in one."""
    specs = [
        dg.AssetCheckSpec(
            rule.name,
            asset=target.asset_key,
            description=rule.description,
            blocking=rule.blocking,
            partitions_def=None if target.per_run else partitions_def,
            metadata={"severity": rule.severity.value, "evaluated": _evaluated(target)},
        )
        for target in targets
        for rule in target.rules
    ]
    label = ", ".join(target.asset_key.to_user_string() for target in targets)

    @dg.multi_asset_check(
        name=name,
        specs=specs,
        can_subset=True,
        description=f"Data-quality checks on {label}, one evaluation per partition.",
        required_resource_keys={universe_key, "warehouse"},
    )
    def _checks(
        context: dg.AssetCheckExecutionContext,
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        selected = {
            target.asset_key: [
                rule
                for rule in target.rules
                if dg.AssetCheckKey(target.asset_key, rule.name)
                in context.selected_asset_check_keys
            ]
            for target in targets
        }
        running = [target for target in targets if selected[target.asset_key]]
        step = ", ".join(target.asset_key.to_user_string() for target in running)
        if not (context.has_partition_key or context.has_partition_key_range):
            raise dg.Failure(
                description=f"{name}: {step} is partitioned; run its checks for a partition "
                "or a partition range",
                allow_retries=False,
            )
        keys = run_partition_keys(context, partitions_def, asset=step, step=f"{step} checks")
        failures: list[str] = []
        writer = EvaluationWriter(context)
        reporter = ProgressReporter(context.log.info, asset=f"{step} checks", total=len(keys))
        checked = 0
        with dagster_errors(asset=f"{step} checks"):
            warehouse: WarehouseResource = context.resources.warehouse
            wh = warehouse.warehouse()
            universe: UniverseResource = getattr(context.resources, universe_key)
            symbols = universe.list()
            splits = {
                target.asset_key: splits_by_day(read_actions_table(wh, target.splits_table))
                for target in running
                if target.splits_table
            }
            previous: dict[dg.AssetKey, pl.DataFrame | None] = {}
            first = partitions_def.time_window_for_partition_key(keys[0])
            before = _previous_key(partitions_def, first.start)
            for target in running:
                if target.with_previous_partition and before:
                    previous[target.asset_key] = wh.read_partition(target.table, before)
            per_run = {target.asset_key: _RunOutcomes(target, wh) for target in running}
            for chunk in _chunks(keys, CHECK_CHUNK):
                evaluations: list[dg.AssetCheckEvaluation] = []
                for target in running:
                    if target.per_run:
                        per_run[target.asset_key].add(
                            selected[target.asset_key],
                            chunk,
                            partitions=partitions,
                            partitions_def=partitions_def,
                            symbols=symbols,
                        )
                        continue
                    evaluations += _evaluate(
                        context,
                        target,
                        selected[target.asset_key],
                        chunk,
                        wh=wh,
                        partitions=partitions,
                        partitions_def=partitions_def,
                        symbols=symbols,
                        splits=splits.get(target.asset_key),
                        previous=previous,
                        failures=failures,
                    )
                yield from writer.write(evaluations)
                checked += len(chunk)
                reporter.update(checked, final=checked == len(keys))
            yield from writer.write(
                [
                    evaluation
                    for target in running
                    if target.per_run
                    for evaluation in per_run[target.asset_key].evaluations(
                        context, selected[target.asset_key], keys, failures
                    )
                ]
            )
        # Each line is an event: a deep range with a recurring warning names the first ones only.
        for failure in failures[:MAX_FAILURES_LOGGED]:
            context.log.warning("%s", failure)
        context.log.info(
            "%s: %d check(s) on %s, %d failing evaluation(s)%s",
            step,
            sum(len(rules) for rules in selected.values()),
            partition_label(keys),
            len(failures),
            f" ({MAX_FAILURES_LOGGED} listed above; every one is in the check's history)"
            if len(failures) > MAX_FAILURES_LOGGED
            else "",
        )
        # The outputs downstream steps of the run wait for (blocking checks gate on them); a
        # failed blocking evaluation above makes Dagster fail this step after they are emitted.
        output_names = {
            spec.key: output for output, spec in _checks.check_specs_by_output_name.items()
        }
        for target in running:
            for rule in selected[target.asset_key]:
                check_key = dg.AssetCheckKey(target.asset_key, rule.name)
                yield dg.Output(None, output_name=output_names[check_key])
        if writer.blocking_failures:
            # What Dagster raises for a yielded blocking failure (it did not see the batched ones).
            failed: dict[str, set[str]] = {}
            for evaluation in writer.blocking_failures:
                asset = evaluation.asset_key.to_user_string()
                failed.setdefault(asset, set()).add(evaluation.check_name)
            count = len(writer.blocking_failures)
            raise check_failed_error(
                f"{count} blocking asset check{'s' if count > 1 else ''} failed with ERROR "
                "severity:\n"
                + "\n".join(
                    f"{asset}: {','.join(sorted(names))}" for asset, names in failed.items()
                )
            )

    return _checks


def _evaluated(target: CheckTarget) -> str:
    return "once per run, over its partitions" if target.per_run else "per partition"


class _RunOutcomes:
    """A per-run target's outcomes, chunk after chunk of the run's partitions (each chunk's
    partitions read as one frame: the compacted days where the warehouse has them)."""

    def __init__(self, target: CheckTarget, wh: Warehouse) -> None:
        self.target = target
        self.wh = wh
        self.outcomes: dict[str, list[CheckOutcome]] = {}
        self.present: set[str] | None = None

    def add(
        self,
        rules: Sequence[QualityRule],
        chunk: Sequence[str],
        *,
        partitions: SourcePartitions,
        partitions_def: dg.TimeWindowPartitionsDefinition,
        symbols: tuple[str, ...],
    ) -> None:
        table, label = self.target.table, self.target.asset_key.to_user_string()
        if self.present is None:
            self.present = set(self.wh.partition_keys(table))
        missing = [key for key in chunk if key not in self.present]
        if missing:
            for rule in rules:
                self.outcomes.setdefault(rule.name, []).append(
                    CheckOutcome(
                        check=rule.name,
                        passed=False,
                        summary=f"{table} partition(s) not in the warehouse: "
                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: "
                        f"materialize {label} for them first",
                        failing_rows=0,
                        rows_checked=0,
                    )
                )
            return
        window = Window(
            partition_key=f"{chunk[0]}...{chunk[-1]}",
            start=partitions_def.time_window_for_partition_key(chunk[0]).start,
            end=partitions_def.time_window_for_partition_key(chunk[-1]).end,
            frame=self.wh.scan(table, list(chunk)).collect(),
            context=None,
            symbols=symbols,
            sessions=partitions.sessions,
        )
        for rule in rules:
            self.outcomes.setdefault(rule.name, []).append(rule.evaluate(window))

    def evaluations(
        self,
        context: dg.AssetCheckExecutionContext,
        rules: Sequence[QualityRule],
        keys: Sequence[str],
        failures: list[str],
    ) -> list[dg.AssetCheckEvaluation]:
        """One evaluation per rule over the run, pointing at the run's last partition's
        materialization."""
        asset_key = self.target.asset_key
        target = target_materializations(context.instance, asset_key, [keys[-1]]).get(keys[-1])
        span = partition_label(list(keys))
        evaluations = []
        for rule in rules:
            outcome = merge_outcomes(self.outcomes[rule.name])
            if not outcome.passed:
                failures.append(
                    f"{asset_key.to_user_string()}: {rule.name} {span}: {outcome.summary}"
                )
            metadata = _metadata(rule, outcome, span)
            metadata["partitions"] = len(keys)
            metadata["first_partition"], metadata["last_partition"] = keys[0], keys[-1]
            evaluations.append(
                dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=rule.name,
                    passed=outcome.passed,
                    metadata=metadata,
                    target_materialization_data=target,
                    severity=rule.severity,
                    description=outcome.summary,
                    blocking=rule.blocking,
                )
            )
        return evaluations


def _evaluate(
    context: dg.AssetCheckExecutionContext,
    target: CheckTarget,
    rules: Sequence[QualityRule],
    chunk: Sequence[str],
    *,
    wh: Warehouse,
    partitions: SourcePartitions,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    symbols: tuple[str, ...],
    splits: pl.DataFrame | None,
    previous: dict[dg.AssetKey, pl.DataFrame | None],
    failures: list[str],
) -> list[dg.AssetCheckEvaluation]:
    """``rules`` of ``target`` on each partition of ``chunk``; failures listed in ``failures``."""
    asset_key, table = target.asset_key, target.table
    label = asset_key.to_user_string()
    targets = target_materializations(context.instance, asset_key, chunk)
    evaluations: list[dg.AssetCheckEvaluation] = []
    for key in chunk:
        time_window = partitions_def.time_window_for_partition_key(key)
        frame = wh.read_partition(table, key)
        # One window per partition: the rules that read the context share one concat.
        window = (
            None
            if frame is None
            else Window(
                partition_key=key,
                start=time_window.start,
                end=time_window.end,
                frame=frame,
                context=previous.get(asset_key) if target.with_previous_partition else None,
                symbols=symbols,
                sessions=partitions.sessions,
                splits=splits,
            )
        )
        for rule in rules:
            if window is None:
                outcome = CheckOutcome(
                    check=rule.name,
                    passed=False,
                    summary=f"{table} partition {key} is not in the warehouse: "
                    f"materialize {label} for it first",
                    failing_rows=0,
                    rows_checked=0,
                )
            else:
                outcome = rule.evaluate(window)
            if not outcome.passed:
                failures.append(f"{label}: {rule.name} {key}: {outcome.summary}")
            evaluations.append(
                dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=rule.name,
                    passed=outcome.passed,
                    metadata=_metadata(rule, outcome, key),
                    target_materialization_data=targets.get(key),
                    severity=rule.severity,
                    description=outcome.summary,
                    blocking=rule.blocking,
                    partition=key,
                )
            )
        previous[asset_key] = frame
    return evaluations


MISSING_BARS = "missing_bars"


def interval_bars_rules(source: Source, interval: str) -> tuple[QualityRule, ...]:
    """The rules of an interval table: the blocking ones of core/bars, and its windows in
    session time without a bar (a window of quiet minutes only has none either)."""
    minutes = INTERVALS[interval]
    # Quiet minutes tolerated per hour, as windows: only a window quiet throughout has no bar.
    tolerated = source.max_quiet_minutes // minutes
    return (
        *_bar_rules(),
        QualityRule(
            MISSING_BARS,
            f"{interval} windows of the hour in session time without a bar, per symbol of the "
            "universe, reported as gaps (the window of a session's open or early close counts, "
            "cut as the bars are). A window of quiet minutes only has no bar, so a gap can be a "
            "quiet market rather than missing data." + WARN_NOTE,
            blocking=False,
            evaluate=lambda w: check_missing_minutes(
                w.frame,
                start=w.start,
                end=w.end,
                symbols=w.symbols,
                interval=timedelta(minutes=minutes),
                open_intervals=_window_starts(w.sessions.intervals(w.start, w.end), minutes),
                max_missing_per_symbol=tolerated,
                check=MISSING_BARS,
                unit=f"{interval} window",
                per=timedelta(hours=1),
            ),
            thresholds={"minutes": minutes, "max_missing_per_symbol": tolerated},
        ),
    )


def _window_starts(
    open_intervals: Sequence[tuple[datetime, datetime]], minutes: int
) -> list[tuple[datetime, datetime]]:
    """The open intervals with each start put back to its window's start on the clock, where
    the bar holding the open minutes is labelled (9:30 ET opens the 9:00 ET hour bar)."""
    step = timedelta(minutes=minutes)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return [(opened - (opened - epoch) % step, closed) for opened, closed in open_intervals]


def build_quality_checks(
    source: Source, partitions: SourcePartitions
) -> list[dg.AssetChecksDefinition]:
    """Every data-quality check of one source: wire into ``dg.Definitions(asset_checks=)``.

    Jobs selecting an asset (``AssetSelection.assets``) pick up its checks, so the hourly and
    daily jobs run them after the asset, on the same partitions.

    The interval bars (5m, 15m, 1h) are checked in core/bars' check step, as they are built in
    its step, but once per run over the run's partitions rather than once per partition: with
    three intervals and four rules an hour would add twelve evaluations to the event log, more
    than building the tables costs (``make bench-intervals``), and nothing is automated from
    them (the daily tables wait on core/bars' per-partition checks). An hourly run still gets
    an evaluation of its hour; a backfill's evaluation names its first and last partition, and
    its failures name the symbols and times, as per-partition ones do."""
    universe_key = source.resource_key("universe")
    return [
        build_partition_checks(
            name=source.job_name("core_bars_quality"),
            targets=[
                CheckTarget(
                    source.key("core", "bars"),
                    source.table(CORE_BARS_TABLE),
                    core_bars_rules(source),
                    with_previous_partition=True,
                    splits_table=source.table(CORPORATE_ACTIONS_TABLE)
                    if has_corporate_actions(source)
                    else None,
                ),
                *(
                    CheckTarget(
                        source.key("core", f"bars_{interval}"),
                        source.table(interval_table(CORE_BARS_TABLE, interval)),
                        interval_bars_rules(source, interval),
                        per_run=True,
                    )
                    for interval in source.intervals
                ),
            ],
            partitions=partitions,
            partitions_def=partitions.hourly,
            universe_key=universe_key,
        ),
        build_partition_checks(
            name=source.job_name("core_daily_bars_quality"),
            targets=[
                CheckTarget(
                    source.key("core", "daily_bars"),
                    source.table(DAILY_BARS_TABLE),
                    DAILY_BARS_RULES,
                )
            ],
            partitions=partitions,
            partitions_def=partitions.daily,
            universe_key=universe_key,
        ),
        build_partition_checks(
            name=source.job_name("core_daily_returns_quality"),
            targets=[
                CheckTarget(
                    source.key("core", "daily_returns"),
                    source.table(DAILY_RETURNS_TABLE),
                    DAILY_RETURNS_RULES,
                )
            ],
            partitions=partitions,
            partitions_def=partitions.daily,
            universe_key=universe_key,
        ),
    ]


# The unpartitioned tables of an equities source (fin_assets/lib/assets/actions.py): the same
# blocking rules as the daily tables, over the whole table.
FINITE_FACTORS = "finite_factors"
ADJUSTED_TABLE_RULES: dict[str, tuple[str, tuple[QualityRule, ...]]] = {
    "adjusted_daily_bars": (ADJUSTED_DAILY_TABLE, DAILY_BARS_RULES),
    "daily_total_returns": (
        TOTAL_RETURNS_TABLE,
        (
            _unique_rule("date", "row"),
            _finite_rule(
                FINITE_RETURNS,
                "Returns present and finite, closes and split ratios >= 0.",
                (
                    "price_return",
                    "total_return",
                    "log_total_return",
                    "close",
                    "prev_close",
                    "split_ratio",
                ),
                ("close", "prev_close", "split_ratio"),
            ),
        ),
    ),
    "adjustment_factors": (
        ADJUSTMENT_FACTORS_TABLE,
        (
            _unique_rule("date", "row"),
            _finite_rule(
                FINITE_FACTORS,
                "Factors present, finite and >= 0.",
                ("split_factor", "dividend_factor", "total_factor"),
                ("split_factor", "dividend_factor", "total_factor"),
            ),
        ),
    ),
}


def build_adjusted_checks(source: Source) -> list[dg.AssetChecksDefinition]:
    """One check step per adjusted table of an equities source, over the whole table."""
    return [
        _whole_table_checks(source, name, table, rules)
        for name, (table, rules) in ADJUSTED_TABLE_RULES.items()
    ]


def _whole_table_checks(
    source: Source, name: str, base: str, rules: Sequence[QualityRule]
) -> dg.AssetChecksDefinition:
    asset_key = source.key("core", name)
    table = source.table(base)
    universe_key = source.resource_key("universe")
    label = asset_key.to_user_string()

    @dg.multi_asset_check(
        name=source.job_name(f"core_{name}_quality"),
        specs=[
            dg.AssetCheckSpec(
                rule.name,
                asset=asset_key,
                description=rule.description,
                blocking=rule.blocking,
                metadata={"severity": rule.severity.value},
            )
            for rule in rules
        ],
        can_subset=True,
        description=f"Data-quality checks on {label}, over the whole table.",
        required_resource_keys={universe_key, "warehouse"},
    )
    def _checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        warehouse: WarehouseResource = context.resources.warehouse
        universe: UniverseResource = getattr(context.resources, universe_key)
        with dagster_errors(asset=f"{label} checks"):
            frame = warehouse.warehouse().read_table(table)
            symbols = universe.list()
        for rule in rules:
            if dg.AssetCheckKey(asset_key, rule.name) not in context.selected_asset_check_keys:
                continue
            if frame is None:
                outcome = CheckOutcome(
                    check=rule.name,
                    passed=False,
                    summary=f"{table} is not in the warehouse: materialize {label} first",
                    failing_rows=0,
                    rows_checked=0,
                )
            else:
                days = [d for d in frame.get_column("date").to_list() if isinstance(d, date)]
                first, last = (min(days), max(days)) if days else (date.min, date.min)
                window = Window(
                    partition_key="",
                    start=datetime.combine(first, time(), UTC),
                    end=datetime.combine(last, time(), UTC) + timedelta(days=1),
                    frame=frame,
                    context=None,
                    symbols=symbols,
                    sessions=None,  # type: ignore[arg-type]  # the daily rules never read it
                )
                outcome = rule.evaluate(window)
            yield dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=rule.name,
                passed=outcome.passed,
                severity=rule.severity,
                description=outcome.summary,
                metadata=_metadata(rule, outcome, "all"),
            )

    return _checks
