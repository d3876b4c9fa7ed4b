"""Data-quality checks: pure functions over a polars frame of one window of a table (no Dagster).

Each check takes the rows of a window (one partition, or several) and returns a ``CheckOutcome``:
passed or not, how many rows fail, the count per symbol, the first offending (symbol, time)
examples with what is wrong, and a one-line summary a human can act on. ``fin_assets/lib/checks.py``
turns outcomes into Dagster asset-check evaluations and decides severity and blocking.

What each check means (DESIGN §7):

- ``check_ohlc``: high >= max(open, close), low <= min(open, close), every price and the volume
  present and finite. Corrupt data.
- ``check_unique``: one row per key, ``(symbol, ts)`` for bars, ``(symbol, date)`` for daily
  tables. Counts the surplus copies. Corrupt data.
- ``check_positive``: prices > 0 and volume >= 0 (``vwap`` too, where present). Corrupt data.
- ``check_missing_minutes``: minutes of the window with no bar, per symbol, reported as gaps.
  A quiet minute (no trades) produces no bar and is *not* missing data (DESIGN §3), so a gap is
  only a hint that a feed dropped out — a warning, never a reason to stop the pipeline.
- ``check_jumps``: 1-minute log returns of the close further than ``k`` robust deviations from
  the symbol's median (the deviation is 1.4826 x the median absolute deviation, MAD, of the
  symbol's returns in the window). A hint of a bad print or a split, not proof.
- ``check_frozen``: ``min_bars`` or more consecutive bars that only repeat the bar before them
  (same open, high, low, close *and* volume: a stale feed replaying its last bar) or are flat
  zero-volume fills at the previous close (a provider forward-filling a silent feed). Identical
  closes alone are not enough: an illiquid symbol can sit on one price for a quarter of an hour
  while still trading, and its volume or range then changes from bar to bar.

``since``: rows before it are context only. Jumps and frozen runs can straddle a partition
boundary, so the caller passes the previous partition's rows along and only rows at or after
``since`` are reported and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import polars as pl

DEFAULT_MAX_EXAMPLES = 10
JUMP_K = 8.0  # robust deviations; Gaussian noise essentially never goes past 6
JUMP_MIN_RETURNS = 30  # fewer returns than this and the MAD of a symbol means little
FROZEN_MIN_BARS = 15  # a quarter of an hour of identical bars
MAD_TO_SIGMA = 1.4826  # MAD x this estimates the standard deviation of normal data

PRICE_COLUMNS = ("open", "high", "low", "close")
TIME_FORMAT = "%Y-%m-%dT%H:%MZ"  # minute times in summaries, details and metadata

# Each rule's name, written once: the outcome carries it and the Dagster check is named by it.
OHLC_INVARIANTS = "ohlc_invariants"
POSITIVE_PRICES = "positive_prices"
FINITE_VALUES = "finite_values"
MISSING_MINUTES = "missing_minutes"
PRICE_JUMPS = "price_jumps"
FROZEN_PRICES = "frozen_prices"


def unique_check_name(keys: Sequence[str]) -> str:
    return "unique_" + "_".join(keys)


@dataclass(frozen=True)
class Offence:
    """One offending row (or one gap/run, for missing minutes and frozen prices)."""

    symbol: str
    at: datetime | date
    detail: str

    def label(self) -> str:
        return f"{self.symbol} {format_time(self.at)}: {self.detail}"


@dataclass(frozen=True)
class CheckOutcome:
    check: str
    passed: bool
    summary: str  # one line: what failed, in which symbols, from when
    failing_rows: int
    rows_checked: int
    by_symbol: dict[str, int] = field(default_factory=dict)  # most failures first
    examples: tuple[Offence, ...] = ()  # the first ones in time
    first_at: datetime | date | None = None  # earliest offending time
    last_at: datetime | date | None = None  # latest offending time
    what: str = ""  # what a failing row is, as in "<count> <what>" (merge_outcomes)


def format_time(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return value.strftime(TIME_FORMAT)
    return value.isoformat()


def _symbols_text(by_symbol: dict[str, int]) -> str:
    return ", ".join(f"{symbol} {count}" for symbol, count in by_symbol.items())


def _outcome(
    check: str,
    flagged: pl.DataFrame,
    *,
    rows_checked: int,
    time_col: str,
    what: str,
    ok: str,
    max_examples: int,
    passed: bool | None = None,
) -> CheckOutcome:
    """From ``flagged`` (symbol, <time_col>, detail, weight) to an outcome.

    ``weight`` is how many failing rows one flagged line stands for (a gap of 5 minutes is one
    line and 5 rows); ``what`` completes "<count> <what>" in the summary."""
    if flagged.is_empty():
        return CheckOutcome(
            check=check,
            passed=True if passed is None else passed,
            summary=ok,
            failing_rows=0,
            rows_checked=rows_checked,
            what=what,
        )
    flagged = flagged.sort([time_col, "symbol"])
    counts = (
        flagged.group_by("symbol")
        .agg(pl.col("weight").sum())
        .sort(["weight", "symbol"], descending=[True, False])
    )
    by_symbol = {s: int(n) for s, n in counts.iter_rows()}
    failing = sum(by_symbol.values())
    examples = tuple(
        Offence(symbol=row["symbol"], at=row[time_col], detail=row["detail"])
        for row in flagged.head(max_examples).iter_rows(named=True)
    )
    first_at = flagged.get_column(time_col).min()
    last_at = flagged.get_column(time_col).max()
    assert isinstance(first_at, date) and isinstance(last_at, date)  # datetime is a date too
    return CheckOutcome(
        check=check,
        passed=False if passed is None else passed,
        summary=_failed_summary(failing, what, by_symbol, examples[0]),
        failing_rows=failing,
        rows_checked=rows_checked,
        by_symbol=by_symbol,
        examples=examples,
        first_at=first_at,
        last_at=last_at,
        what=what,
    )


def _failed_summary(failing: int, what: str, by_symbol: dict[str, int], first: Offence) -> str:
    return (
        f"{failing} {what} in {len(by_symbol)} symbol(s) ({_symbols_text(by_symbol)}); "
        f"first {first.symbol} at {format_time(first.at)}: {first.detail}"
    )


def merge_outcomes(
    outcomes: Sequence[CheckOutcome], *, max_examples: int = DEFAULT_MAX_EXAMPLES
) -> CheckOutcome:
    """One outcome of a rule over several frames (the chunks of a run's partitions) from each
    frame's outcome: counts added, symbols' counts summed, the earliest examples kept, and
    passed only if every one passed."""
    if len(outcomes) == 1:
        return outcomes[0]
    first = outcomes[0]
    rows_checked = sum(o.rows_checked for o in outcomes)
    passed = all(o.passed for o in outcomes)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        for symbol, count in outcome.by_symbol.items():
            counts[symbol] = counts.get(symbol, 0) + count
    if not counts:
        if passed:
            summary = f"no {first.what} in {rows_checked} row(s) checked"
        else:  # failed without a failing row: a partition missing from the warehouse, say
            summary = "; ".join(o.summary for o in outcomes if not o.passed)
        return CheckOutcome(
            check=first.check,
            passed=passed,
            summary=summary,
            failing_rows=0,
            rows_checked=rows_checked,
            what=first.what,
        )
    by_symbol = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    examples = tuple(
        sorted(
            (e for o in outcomes for e in o.examples), key=lambda e: (format_time(e.at), e.symbol)
        )[:max_examples]
    )
    failing = sum(by_symbol.values())
    times = [t for o in outcomes for t in (o.first_at, o.last_at) if t is not None]
    return CheckOutcome(
        check=first.check,
        passed=passed,
        summary=_failed_summary(failing, first.what, by_symbol, examples[0]),
        failing_rows=failing,
        rows_checked=rows_checked,
        by_symbol=by_symbol,
        examples=examples,
        first_at=min(times),  # type: ignore[type-var]
        last_at=max(times),  # type: ignore[type-var]
        what=first.what,
    )


def _in_scope(frame: pl.DataFrame, time_col: str, since: datetime | None) -> pl.DataFrame:
    return frame if since is None else frame.filter(pl.col(time_col) >= since)


def _flag_rows(
    frame: pl.DataFrame,
    problems: Sequence[pl.Expr],
    *,
    time_col: str,
    detail_suffix: Sequence[pl.Expr] = (),
) -> pl.DataFrame:
    """The rows with at least one problem, as ``_outcome`` wants them (weight 1 per row).

    Each of ``problems`` is a text where the row has that problem and null where it does not;
    a row's detail is its problems joined by ", ", followed by ``detail_suffix``."""
    problems_text = pl.col("_problems").list.join(", ")
    return (
        frame.with_columns(pl.concat_list(problems).list.drop_nulls().alias("_problems"))
        .filter(pl.col("_problems").list.len() > 0)
        .select(
            "symbol",
            time_col,
            (
                pl.concat_str(problems_text, *detail_suffix) if detail_suffix else problems_text
            ).alias("detail"),
            pl.lit(1).alias("weight"),
        )
    )


def _prices_text(columns: Sequence[str]) -> pl.Expr:
    """'o=1.0 h=2.0 l=0.5 c=1.5' style text of the named columns, for offence details."""
    parts: list[pl.Expr] = []
    for i, name in enumerate(columns):
        parts.append(pl.lit(f"{'' if i == 0 else ' '}{name}="))
        parts.append(pl.col(name).cast(pl.String).fill_null("null"))
    return pl.concat_str(parts)


def check_ohlc(
    frame: pl.DataFrame, *, time_col: str = "ts", max_examples: int = DEFAULT_MAX_EXAMPLES
) -> CheckOutcome:
    """Bars (or daily rows) no market can print: high below the body, low above it, or a price
    or the volume missing or not finite."""
    problems = {
        "high below open/close": pl.col("high") < pl.max_horizontal("open", "close"),
        "low above open/close": pl.col("low") > pl.min_horizontal("open", "close"),
        "missing or non-finite value": ~pl.all_horizontal(
            pl.col(*PRICE_COLUMNS, "volume").is_finite().fill_null(False)
        ),
    }
    labels = [pl.when(expr.fill_null(False)).then(pl.lit(name)) for name, expr in problems.items()]
    flagged = _flag_rows(
        frame,
        labels,
        time_col=time_col,
        detail_suffix=(pl.lit(" ("), _prices_text([*PRICE_COLUMNS, "volume"]), pl.lit(")")),
    )
    return _outcome(
        OHLC_INVARIANTS,
        flagged,
        rows_checked=frame.height,
        time_col=time_col,
        what="row(s) break OHLC invariants",
        ok=f"OHLC invariants hold for all {frame.height} row(s)",
        max_examples=max_examples,
    )


def check_unique(
    frame: pl.DataFrame,
    *,
    keys: Sequence[str] = ("symbol", "ts"),
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> CheckOutcome:
    """Keys that occur more than once; failing rows are the surplus copies."""
    symbol_col, time_col = keys[0], keys[-1]
    flagged = (
        frame.group_by(list(keys))
        .agg(pl.len().alias("copies"))
        .filter(pl.col("copies") > 1)
        .select(
            pl.col(symbol_col).alias("symbol"),
            time_col,
            pl.format("{} rows with this key", pl.col("copies")).alias("detail"),
            (pl.col("copies") - 1).alias("weight"),
        )
    )
    key_text = "(" + ", ".join(keys) + ")"
    return _outcome(
        unique_check_name(keys),
        flagged,
        rows_checked=frame.height,
        time_col=time_col,
        what=f"duplicate row(s) on {key_text}",
        ok=f"{key_text} is unique over all {frame.height} row(s)",
        max_examples=max_examples,
    )


def check_positive(
    frame: pl.DataFrame,
    *,
    time_col: str = "ts",
    prices: Sequence[str] = (*PRICE_COLUMNS, "vwap"),
    volume: str = "volume",
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> CheckOutcome:
    """Prices at or below zero, or a negative volume. Absent price columns (a table without
    ``vwap``) are skipped; nulls are left to the OHLC check."""
    present = [c for c in prices if c in frame.columns]
    problems: list[pl.Expr] = [
        pl.when(pl.col(c) <= 0).then(pl.format(f"{c}={{}}", pl.col(c))) for c in present
    ]
    if volume in frame.columns:
        problems.append(
            pl.when(pl.col(volume) < 0).then(pl.format(f"{volume}={{}}", pl.col(volume)))
        )
    flagged = _flag_rows(frame, problems, time_col=time_col)
    return _outcome(
        POSITIVE_PRICES,
        flagged,
        rows_checked=frame.height,
        time_col=time_col,
        what="row(s) with a non-positive price or negative volume",
        ok=f"prices > 0 and volume >= 0 in all {frame.height} row(s)",
        max_examples=max_examples,
    )


def check_finite(
    frame: pl.DataFrame,
    *,
    columns: Sequence[str],
    non_negative: Sequence[str] = (),
    time_col: str = "date",
    name: str = FINITE_VALUES,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> CheckOutcome:
    """Values that are null, NaN or infinite (a division by a zero price, a log of a negative
    ratio), and, for ``non_negative`` columns such as a volatility, values below zero."""
    problems: list[pl.Expr] = [
        pl.when(~pl.col(c).is_finite().fill_null(False)).then(
            pl.format(f"{c}={{}}", pl.col(c).cast(pl.String).fill_null("null"))
        )
        for c in columns
    ]
    problems += [
        pl.when(pl.col(c) < 0).then(pl.format(f"{c}={{}} < 0", pl.col(c))) for c in non_negative
    ]
    flagged = _flag_rows(frame, problems, time_col=time_col)
    return _outcome(
        name,
        flagged,
        rows_checked=frame.height,
        time_col=time_col,
        what="row(s) with a missing, non-finite or negative value",
        ok=f"{', '.join(columns)} finite in all {frame.height} row(s)",
        max_examples=max_examples,
    )


def check_missing_minutes(
    frame: pl.DataFrame,
    *,
    start: datetime,
    end: datetime,
    symbols: Iterable[str] = (),
    interval: timedelta = timedelta(minutes=1),
    open_intervals: Sequence[tuple[datetime, datetime]] | None = None,
    max_missing_per_symbol: int = 0,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    check: str = MISSING_MINUTES,
    unit: str = "minute",
    per: timedelta | None = None,
) -> CheckOutcome:
    """Minutes in ``[start, end)`` without a bar, per symbol of ``symbols`` (the universe; a
    symbol with no bar at all misses every minute) and of the frame. Reported as gaps: one
    example per run of consecutive missing minutes. Passes when no symbol misses more than
    ``max_missing_per_symbol`` minutes. Remember: no trades, no bar — a gap may be quiet.

    ``open_intervals``: the parts of the window the market is open (an exchange session, an
    early close); only their minutes are expected. None: every minute. With a longer
    ``interval`` (bars of 5 minutes, say: ``unit="5m bar"``, ``check`` its name), the expected
    bars start every ``interval`` from each open interval's start. ``per``: the allowance
    ``max_missing_per_symbol`` is per symbol and period of this length (an hour, for a window
    of several hours) rather than over the whole window."""
    spans = [(start, end)] if open_intervals is None else list(open_intervals)
    grid = pl.concat(
        [
            pl.datetime_range(
                lo, hi, interval, closed="left", time_unit="us", time_zone="UTC", eager=True
            )
            for lo, hi in spans
        ]
        or [pl.Series([], dtype=pl.Datetime("us", "UTC"))]
    ).alias("ts")
    present = frame.select("symbol", pl.col("ts").cast(pl.Datetime("us", "UTC"))).unique()
    universe = sorted(set(symbols) | set(present.get_column("symbol").to_list()))
    expected = pl.DataFrame({"symbol": universe}, schema={"symbol": pl.String}).join(
        grid.to_frame(), how="cross"
    )
    missing = expected.join(present, on=["symbol", "ts"], how="anti").sort(["symbol", "ts"])
    period = [] if per is None else [pl.col("ts").dt.truncate(per).alias("_period")]
    counts = missing.group_by("symbol", *period).agg(pl.len().alias("n"))
    over = counts.filter(pl.col("n") > max_missing_per_symbol).get_column("symbol").to_list()
    step_us = interval // timedelta(microseconds=1)
    gaps = (
        missing.with_columns(
            (pl.col("ts").diff().over("symbol").dt.total_microseconds() != step_us)
            .fill_null(True)
            .cum_sum()
            .over("symbol")
            .alias("_gap")
        )
        .group_by(["symbol", "_gap"])
        .agg(pl.col("ts").first(), pl.col("ts").last().alias("_last"), pl.len().alias("weight"))
        .select(
            "symbol",
            "ts",
            pl.format(
                f"{{}} {unit}(s) without a bar, through {{}}",
                pl.col("weight"),
                pl.col("_last").dt.strftime(TIME_FORMAT),
            ).alias("detail"),
            "weight",
        )
    )
    minutes = grid.len()
    quiet = "quiet minutes have no bar either" if unit == "minute" else "nor has a quiet one"
    return _outcome(
        check,
        gaps,
        rows_checked=minutes * len(universe),
        time_col="ts",
        what=f"{unit}(s) without a bar ({quiet})",
        ok=f"every symbol has a bar in each of the {minutes} {unit}(s)",
        max_examples=max_examples,
        passed=not over,
    )


def check_jumps(
    frame: pl.DataFrame,
    *,
    k: float = JUMP_K,
    min_returns: int = JUMP_MIN_RETURNS,
    since: datetime | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    splits: pl.DataFrame | None = None,
) -> CheckOutcome:
    """Close-to-close log returns more than ``k`` robust deviations from the symbol's median.

    ``splits`` (symbol, ex_date, ratio = split_to / split_from; unadjusted bars): a return from
    a bar before a split's execution date to one on or after it is taken against the previous
    close divided by the ratio, so the jump the split explains is not a failure (a 10-for-1
    split is close / (previous / 10)); what the split does not explain still is. Days are UTC
    days, which for the calendars we support (sessions within a UTC day) are session days.

    Returns over a gap of several minutes are scaled by 1/sqrt(minutes) to a 1-minute
    equivalent, so a quiet stretch is not mistaken for a jump. Median and MAD are taken per
    symbol over every return of ``frame`` (the context before ``since`` included), and only
    returns ending at or after ``since`` are flagged; a symbol with fewer than ``min_returns``
    returns, or a MAD of zero (a mostly frozen price), is not judged."""
    minutes = (pl.col("ts").diff().over("symbol").dt.total_seconds() / 60.0).clip(lower_bound=1)
    ordered = (
        frame.select("symbol", "ts", "close")
        .sort(["symbol", "ts"])
        .with_columns(
            pl.col("close").shift(1).over("symbol").alias("_prev"),
            pl.col("ts").shift(1).over("symbol").alias("_prev_ts"),
        )
    )
    if splits is not None and splits.height:
        ordered = _split_explained(ordered, splits)
    returns = ordered.with_columns(
        ((pl.col("close") / pl.col("_prev")).log() / minutes.sqrt()).alias("_r")
    ).filter(pl.col("_r").is_finite())
    # The spread is judged over every return given (the previous hour's too), the offences
    # only among those in scope: an exchange's first session hour holds 30 minutes, too few
    # to judge alone, and its first return is the overnight one where a split shows.
    stats = returns.group_by("symbol").agg(
        pl.col("_r").median().alias("_med"),
        (pl.col("_r") - pl.col("_r").median()).abs().median().alias("_mad"),
        pl.len().alias("_n"),
    )
    judged = stats.filter((pl.col("_n") >= min_returns) & (pl.col("_mad") > 0))
    returns = _in_scope(returns, "ts", since)
    scored = returns.join(judged, on="symbol").with_columns(
        ((pl.col("_r") - pl.col("_med")) / (MAD_TO_SIGMA * pl.col("_mad"))).alias("_z")
    )
    flagged = scored.filter(pl.col("_z").abs() > k).select(
        "symbol",
        "ts",
        pl.format(
            "close {} -> {}: {} robust deviations (k={})",
            pl.col("_prev").round(6),
            pl.col("close").round(6),
            pl.col("_z").round(1),
            pl.lit(k),
        ).alias("detail"),
        pl.lit(1).alias("weight"),
    )
    return _outcome(
        PRICE_JUMPS,
        flagged,
        rows_checked=returns.height,
        time_col="ts",
        what=f"jump(s) beyond {k:g} robust deviations of 1-minute log returns",
        ok=f"no 1-minute return beyond {k:g} robust deviations "
        f"({judged.height} symbol(s) with >= {min_returns} returns judged)",
        max_examples=max_examples,
    )


def _split_explained(ordered: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
    """``_prev`` divided by the ratio of every split taking effect between the two bars."""
    days = ordered.select(
        "symbol", pl.col("_prev_ts").dt.date().alias("_from"), pl.col("ts").dt.date().alias("_to")
    ).unique()
    spanned = (
        days.join(splits.select("symbol", "ex_date", "ratio"), on="symbol")
        .filter((pl.col("ex_date") > pl.col("_from")) & (pl.col("ex_date") <= pl.col("_to")))
        .group_by("symbol", "_from", "_to")
        .agg(pl.col("ratio").product().alias("_ratio"))
    )
    if not spanned.height:
        return ordered
    return (
        ordered.with_columns(
            pl.col("_prev_ts").dt.date().alias("_from"), pl.col("ts").dt.date().alias("_to")
        )
        .join(spanned, on=["symbol", "_from", "_to"], how="left")
        .with_columns((pl.col("_prev") / pl.col("_ratio").fill_null(1.0)).alias("_prev"))
        .drop("_from", "_to", "_ratio")
    )


def check_frozen(
    frame: pl.DataFrame,
    *,
    min_bars: int = FROZEN_MIN_BARS,
    since: datetime | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> CheckOutcome:
    """Runs of ``min_bars`` or more identical bars per symbol (consecutive rows, gaps
    allowed): the first bar is genuine, the failing rows are the repeats after it — a bar equal
    to the previous one in open, high, low, close and volume, or a flat zero-volume bar at the
    previous close. One example per run."""
    prev = {c: pl.col(c).shift(1).over("symbol") for c in (*PRICE_COLUMNS, "volume")}
    replay = pl.all_horizontal([pl.col(c) == prev[c] for c in prev])
    flat_fill = (
        (pl.col("open") == pl.col("close"))
        & (pl.col("high") == pl.col("close"))
        & (pl.col("low") == pl.col("close"))
        & (pl.col("close") == prev["close"])
        & (pl.col("volume") == 0)
    )
    marked = (
        frame.select("symbol", "ts", *PRICE_COLUMNS, "volume")
        .sort(["symbol", "ts"])
        .with_columns((replay | flat_fill).fill_null(False).alias("_repeat"))
        .with_columns(
            # a new run starts at every row that is not a repeat
            (~pl.col("_repeat")).cast(pl.UInt32).cum_sum().over("symbol").alias("_run")
        )
    )
    runs = (
        marked.group_by(["symbol", "_run"])
        .agg(
            pl.len().alias("_bars"),  # the genuine first bar and its repeats
            pl.col("ts").first().alias("_start"),
            pl.col("ts").last().alias("_last"),
            pl.col("close").first().alias("_close"),
            pl.col("volume").last().alias("_volume"),
        )
        .filter(pl.col("_bars") >= min_bars)
    )
    # Repeats inside the scope: a run that began in the context partition still counts here.
    in_scope = _in_scope(marked.filter(pl.col("_repeat")), "ts", since)
    scoped = in_scope.group_by(["symbol", "_run"]).agg(pl.col("ts").min(), pl.len().alias("weight"))
    flagged = scoped.join(runs, on=["symbol", "_run"]).select(
        "symbol",
        "ts",
        pl.format(
            "{} identical bars from {} through {} (close {}, volume {})",
            pl.col("_bars"),
            pl.col("_start").dt.strftime(TIME_FORMAT),
            pl.col("_last").dt.strftime(TIME_FORMAT),
            pl.col("_close"),
            pl.col("_volume"),
        ).alias("detail"),
        "weight",
    )
    rows = _in_scope(frame, "ts", since).height
    return _outcome(
        FROZEN_PRICES,
        flagged,
        rows_checked=rows,
        time_col="ts",
        what=f"repeated bar(s) in runs of >= {min_bars} identical bars",
        ok=f"no run of {min_bars} identical bars in {rows} row(s)",
        max_examples=max_examples,
    )
