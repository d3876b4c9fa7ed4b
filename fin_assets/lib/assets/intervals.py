"""Core layer, intervals: the specs and tables of the 5-minute, 15-minute and hourly bars a
source declares (``intervals: [5m, 1h]`` in its YAML).

They are assets of the core/bars step (``fin_assets/lib/assets/bars.py``), with its hourly
partitions: every interval divides an hour and every supported calendar's zone is a whole number
of hours from UTC, so each window lies inside one partition of the minutes it is built from, and
a partition is built from that partition alone (resources/tables/intervals.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from fin_assets.lib.partitions import SourcePartitions
from fin_assets.lib.sources import Source
from resources.tables.core import CORE_BARS_TABLE
from resources.tables.intervals import INTERVALS, IntervalTables, interval_table


def interval_table_name(interval: str) -> str:
    """The base name of ``interval``'s table (``Source.table`` adds the source)."""
    return interval_table(CORE_BARS_TABLE, interval)


def interval_spec(source: Source, interval: str, core_key: dg.AssetKey) -> dg.AssetSpec:
    """core/<source>/bars_<interval>: built from core/bars of the same hour."""
    table = source.table(interval_table_name(interval))
    return dg.AssetSpec(
        source.key("core", f"bars_{interval}"),
        group_name=source.group("core"),
        deps=[core_key],
        kinds={"polars", "parquet"},
        description=f"{interval} bars per symbol — symbol, ts (the window's start, UTC), open, "
        "high, low, close, volume, trades, vwap (volume-weighted) and the number of 1-minute "
        "bars — built from core/bars of the same hour, in its step. Windows are on the clock as "
        "the providers align theirs (Massive: Eastern Time; Binance: UTC), cut at session "
        "boundaries and early closes; an interval without a trade has no bar. Hourly UTC "
        f"partitions like core/bars. Source {source.label}; table {table}.",
    )


def interval_tables(
    source: Source, partitions: SourcePartitions, intervals: Sequence[str]
) -> IntervalTables:
    """What builds ``intervals`` of ``source``: their tables, minutes and the sessions."""
    sessions = None if partitions.sessions.always_open else partitions.sessions.intervals
    return IntervalTables(
        {source.table(interval_table_name(iv)): INTERVALS[iv] for iv in intervals},
        sessions=sessions,
    )
