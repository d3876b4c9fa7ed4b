"""``read_bars``: a source's bars read back, from the Parquet lake or the PostgreSQL warehouse
alike, as one lazy polars frame (``fin-assets read`` is its command line).

    from fin_assets.lib.read import read_bars
    bars = read_bars("us_equities", ["AAPL", "MSFT"], date(2026, 1, 16), date(2026, 1, 21),
                     interval="1m", adjustment="splits").collect()

The source is looked up among the sources in force (``fin_assets/lib/catalog.py``), the
warehouse is the one of ``FIN_WAREHOUSE_URL``; what is read and how is
``resources/tables/read.py``. Everything a caller can get wrong is refused before any read with
an ``InvalidInputError`` naming it: an undeclared source (the declared ones listed), a symbol
the source does not hold, a reversed or empty range (both bounds), an unknown interval or
adjustment (the valid ones), and an adjustment of a source without corporate actions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import date, datetime

import polars as pl

from fin_assets.lib.assets.actions import has_corporate_actions
from fin_assets.lib.catalog import sources_in_force
from fin_assets.lib.settings import Settings
from fin_assets.lib.sources import Source
from resources.errors import InvalidInputError
from resources.storage.warehouse import warehouse_from_url
from resources.tables.intervals import INTERVALS as BAR_INTERVALS
from resources.tables.read import (
    ADJUSTMENTS,
    DEFAULT_ADJUSTMENT,
    DEFAULT_INTERVAL,
    check_request,
    scan_bars,
)


def read_bars(
    source: str | None,
    symbols: str | Sequence[str],
    start: date | datetime,
    end: date | datetime,
    *,
    interval: str = DEFAULT_INTERVAL,
    adjustment: str = DEFAULT_ADJUSTMENT,
    env: Mapping[str, str] | None = None,
) -> pl.LazyFrame:
    """The bars of ``symbols`` (a list, or comma-separated) of ``source`` over ``[start,
    end)`` — start included, end excluded, a date meaning its UTC midnight — sorted by (symbol,
    ts), or (symbol, date) at ``interval="1d"``; ``adjustment`` is ``none``, ``splits`` or
    ``splits_and_dividends``. ``source`` None (or ``default``) is the one source of the FIN_*
    variables. ``env`` is ``os.environ`` by default. A partition never materialized inside the
    range has no rows: it is not an error."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    found = find_source(sources_in_force(env, settings), source)
    check_request(start, end, interval=interval, adjustment=adjustment)
    wanted = check_symbols(found, symbols)
    if interval in BAR_INTERVALS and interval not in found.intervals:
        declared = ", ".join(found.intervals) or "none"
        raise InvalidInputError(
            f"interval {interval!r}: source {found.label} builds no {interval} bars (its "
            f"intervals: {declared}); add it to `intervals:` in its YAML, or read 1m or 1d"
        )
    factors_asset = found.key("core", "adjustment_factors").to_user_string()
    if ADJUSTMENTS[adjustment] is not None and not has_corporate_actions(found):
        raise InvalidInputError(
            f"adjustment {adjustment!r}: source {found.label} has no corporate actions "
            f"(adjustment is for equities sources); read it with adjustment 'none'"
        )
    return scan_bars(
        warehouse_from_url(settings.warehouse_url),
        table=found.table,
        symbols=wanted,
        start=start,
        end=end,
        interval=interval,
        adjustment=adjustment,
        factors_hint=f"materialize {factors_asset}",
    )


def find_source(sources: Sequence[Source], name: str | None) -> Source:
    """The source called ``name`` (None or ``default``: the shorthand source), or an
    ``InvalidInputError`` listing the declared ones."""
    for source in sources:
        if source.name == name or (name in (None, source.label) and source.is_shorthand):
            return source
    declared = ", ".join(s.label for s in sources) or "none"
    if name is None:
        raise InvalidInputError(f"no source named: name one of the declared sources ({declared})")
    raise InvalidInputError(f"unknown source {name!r}: the declared sources are {declared}")


def check_symbols(source: Source, symbols: str | Sequence[str]) -> list[str]:
    """``symbols`` without repeats, if ``source`` holds every one; else an
    ``InvalidInputError`` naming the first it does not hold, and the source."""
    items = symbols.split(",") if isinstance(symbols, str) else list(symbols)
    wanted = list(dict.fromkeys(s.strip() for s in items if s.strip()))
    if not wanted:
        raise InvalidInputError(
            f"no symbols given: name at least one of source {source.label}'s "
            f"({', '.join(source.symbols)})"
        )
    held = set(source.symbols)
    for symbol in wanted:
        if symbol not in held:
            raise InvalidInputError(
                f"symbol {symbol!r} is not held by source {source.label} "
                f"(its symbols: {', '.join(source.symbols)})"
            )
    return wanted
