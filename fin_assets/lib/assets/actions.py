"""Corporate actions and the adjusted series of an equities source.

- ``raw/<source>/corporate_actions``: every split and cash dividend of the source's stocks, as
  the provider sent them (verbatim pages and a manifest), refreshed daily by a schedule;
- ``core/<source>/corporate_actions``: the typed table built from those pages;
- ``core/<source>/adjustment_factors``, ``core/<source>/adjusted_daily_bars``,
  ``core/<source>/daily_total_returns``: rebuilt together whenever the actions or the daily bars
  change (declarative automation), without touching raw or unadjusted tables.

A source whose provider has no corporate actions (crypto) or that trades around the clock has
none of these assets (``has_corporate_actions``).
"""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations
# (config class, resources) at decoration time and cannot resolve them as strings.

from datetime import UTC, date, datetime

import dagster as dg

from fin_assets.lib.assets.attempts import AttemptSpending
from fin_assets.lib.assets.common import dagster_errors
from fin_assets.lib.automation import rebuild_when_inputs_change
from fin_assets.lib.partitions import SourcePartitions
from fin_assets.lib.resources import (
    MarketApiResource,
    SnapshotStoreResource,
    UniverseResource,
    WarehouseResource,
)
from fin_assets.lib.sources import Source
from resources.calendars import TWENTY_FOUR_SEVEN
from resources.logfields import log_context
from resources.providers import get_adapter
from resources.raw.actions import ACTIONS_MANIFESTS_DIR, action_symbols, fetch_corporate_actions
from resources.tables.adjustment import (
    ADJUSTED_DAILY_TABLE,
    ADJUSTMENT_FACTORS_TABLE,
    CORPORATE_ACTIONS_TABLE,
    TOTAL_RETURNS_TABLE,
)
from resources.tables.corporate import build_actions_table, build_adjusted_tables
from resources.tables.daily import DAILY_BARS_TABLE

# The whole tables of an equities source (the corporate actions and the adjusted series).
EQUITIES_TABLES = (
    CORPORATE_ACTIONS_TABLE,
    ADJUSTMENT_FACTORS_TABLE,
    ADJUSTED_DAILY_TABLE,
    TOTAL_RETURNS_TABLE,
)
RAW_DOC = (
    "Every split and cash dividend of the source's stocks exactly as {provider} sent them "
    "(its splits and dividends endpoints, the whole history of each symbol), one snapshot file "
    "per response page, through the same client and shared quota as the bars; the "
    "materialization is the manifest of one fetch. Unpartitioned, refreshed daily by "
    "{schedule}: a newly announced action lands here without refetching any bar."
)
CORE_DOC = (
    "One typed row per corporate action — symbol, ex_date (a split's execution date or a "
    "dividend's ex-dividend date), kind (split or dividend), action_type, split_from and "
    "split_to, cash_amount and currency (as paid, not split-adjusted), declaration, record and "
    "pay dates, frequency, the provider's own cumulative factor and id — built from the newest "
    "raw fetch. Refused whole, naming symbol, date and field, if a split ratio is 0 or a "
    "dividend is not positive, or an action is for a symbol the source does not hold."
)
FACTORS_DOC = (
    "Adjustment factors per symbol and session day, cumulative as of the latest action that "
    "has taken effect: split_factor (the product of split_from/split_to of every later split; "
    "adjusted price = price x split_factor, as the provider's historical_adjustment_factor), "
    "dividend_factor (the product of 1 - dividend / previous close of every later dividend) and "
    "total_factor = split_factor x dividend_factor."
)
ADJUSTED_DOC = (
    "Daily bars on today's share basis: open, high, low, close and vwap x split_factor, volume / "
    "split_factor (trades and bar count unchanged), plus adj_close = close x total_factor "
    "(splits and dividends, the convention of every chart's 'Adj Close')."
)
RETURNS_DOC = (
    "Close-to-close returns per symbol and session day beside the open-to-close ones of "
    "core/daily_returns: price_return = close x split_ratio / previous close - 1 and "
    "total_return = (close + dividend) x split_ratio / previous close - 1 (CRSP's holding-period "
    "return: across a 10-for-1 split, close x 10 against the previous close; across a dividend, "
    "the dividend included), with the unadjusted closes, the split ratio and the dividend used."
)


def has_corporate_actions(source: Source) -> bool:
    """An equities source: on an exchange calendar, at a provider with corporate actions, with
    at least one symbol that can have them (a stock, not a pair or an index)."""
    adapter = get_adapter(source.provider)
    return (
        source.calendar != TWENTY_FOUR_SEVEN
        and adapter.corporate_actions is not None
        and bool(action_symbols(adapter, source.symbols))
    )


def build_corporate_action_assets(
    source: Source, partitions: SourcePartitions
) -> list[dg.AssetsDefinition]:
    """The raw and typed corporate actions and the adjusted series of one equities source."""
    sessions = tuple(sorted({opened.date() for opened in partitions.sessions.opens}))
    return [_raw_actions(source), _core_actions(source), _adjusted(source, sessions)]


def _raw_actions(source: Source) -> dg.AssetsDefinition:
    market_key = source.resource_key("market_api")
    universe_key = source.resource_key("universe")
    key = source.key("raw", "corporate_actions")

    @dg.asset(
        key=key,
        group_name=source.group("raw"),
        pool=source.pool,
        kinds={"json"},
        required_resource_keys={market_key, universe_key, "snapshots"},
        description=RAW_DOC.format(
            provider=source.provider, schedule=source.job_name("corporate_actions_schedule")
        )
        + f" Source {source.label}.",
    )
    def raw_corporate_actions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        market_api: MarketApiResource = getattr(context.resources, market_key)
        universe: UniverseResource = getattr(context.resources, universe_key)
        snapshots: SnapshotStoreResource = context.resources.snapshots
        asset = key.to_user_string()
        spending = AttemptSpending(context, key, source.label, source.provider)
        with (
            spending.recorded(),
            dagster_errors(asset=asset),
            log_context(source=source.label),
        ):
            symbols = universe.list()
            store = snapshots.store()
            with market_api.client() as client:
                spending.stats = client.stats
                result = fetch_corporate_actions(
                    client, store, symbols, manifests=source.table(ACTIONS_MANIFESTS_DIR)
                )
        context.log.info(
            "%s: %d symbol(s): %d split(s), %d dividend(s), %d page(s), %d request(s)",
            asset,
            len(result.symbols),
            result.splits,
            result.dividends,
            result.snapshots_written,
            result.client.requests,
        )
        return dg.MaterializeResult(
            metadata={
                "source": source.label,
                "provider": result.provider,
                "symbols": ", ".join(result.symbols),
                "symbol_count": len(result.symbols),
                "splits": result.splits,
                "dividends": result.dividends,
                "snapshots_written": result.snapshots_written,
                "manifest": result.manifest.key,
                "snapshot_feed": result.feed,
                "actions_digest": result.digest,
                **result.client.as_metadata(),
            },
            # The same actions give the same version, whatever the pages' request ids.
            data_version=dg.DataVersion(result.digest),
        )

    return raw_corporate_actions


def _core_actions(source: Source) -> dg.AssetsDefinition:
    universe_key = source.resource_key("universe")
    key = source.key("core", "corporate_actions")
    table = source.table(CORPORATE_ACTIONS_TABLE)

    @dg.asset(
        key=key,
        group_name=source.group("core"),
        deps=[source.key("raw", "corporate_actions")],
        kinds={"polars", "parquet"},
        automation_condition=rebuild_when_inputs_change(),
        required_resource_keys={universe_key, "snapshots", "warehouse"},
        description=f"{CORE_DOC} Source {source.label}; table {table}.",
    )
    def core_corporate_actions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        universe: UniverseResource = getattr(context.resources, universe_key)
        snapshots: SnapshotStoreResource = context.resources.snapshots
        warehouse: WarehouseResource = context.resources.warehouse
        wh = warehouse.warehouse()
        with dagster_errors(asset=key.to_user_string()):
            result = build_actions_table(
                snapshots.store(),
                wh,
                get_adapter(source.provider),
                manifests=source.table(ACTIONS_MANIFESTS_DIR),
                table=table,
                symbols=universe.list(),
                where=f"source {source.label} (provider {source.provider})",
            )
        return dg.MaterializeResult(
            metadata={
                "rows": result.rows,
                "splits": result.splits,
                "dividends": result.dividends,
                "symbols": ", ".join(result.symbols),
                "fetched_at": result.fetched_at,
                "table": dg.MetadataValue.path(f"{wh.location}/{table}"),
            },
            data_version=dg.DataVersion(result.digest),
        )

    return core_corporate_actions


def _adjusted(source: Source, sessions: tuple[date, ...]) -> dg.AssetsDefinition:
    universe_key = source.resource_key("universe")
    keys = {
        "adjustment_factors": (ADJUSTMENT_FACTORS_TABLE, FACTORS_DOC),
        "adjusted_daily_bars": (ADJUSTED_DAILY_TABLE, ADJUSTED_DOC),
        "daily_total_returns": (TOTAL_RETURNS_TABLE, RETURNS_DOC),
    }
    inputs = [source.key("core", "daily_bars"), source.key("core", "corporate_actions")]
    specs = [
        dg.AssetSpec(
            source.key("core", name),
            group_name=source.group("core"),
            deps=inputs,
            kinds={"polars", "parquet"},
            automation_condition=rebuild_when_inputs_change(),
            description=f"{doc} Unpartitioned: every symbol and day, rebuilt whole from "
            f"core/daily_bars and core/corporate_actions. Source {source.label}; table "
            f"{source.table(base)}.",
        )
        for name, (base, doc) in keys.items()
    ]

    @dg.multi_asset(
        name=source.job_name("adjusted_series"),
        specs=specs,
        required_resource_keys={universe_key, "warehouse"},
    )
    def adjusted_series(context: dg.AssetExecutionContext):  # type: ignore[no-untyped-def]
        warehouse: WarehouseResource = context.resources.warehouse
        wh = warehouse.warehouse()
        with dagster_errors(asset=source.key("core", "adjusted_daily_bars").to_user_string()):
            result = build_adjusted_tables(
                wh,
                daily_table=source.table(DAILY_BARS_TABLE),
                actions_table=source.table(CORPORATE_ACTIONS_TABLE),
                factors_table=source.table(ADJUSTMENT_FACTORS_TABLE),
                adjusted_table=source.table(ADJUSTED_DAILY_TABLE),
                returns_table=source.table(TOTAL_RETURNS_TABLE),
                as_of=datetime.now(UTC).date(),
                where=f"source {source.label} (provider {source.provider})",
                sessions=sessions,
            )
        rows = {
            "adjustment_factors": result.factors_rows,
            "adjusted_daily_bars": result.adjusted_rows,
            "daily_total_returns": result.returns_rows,
        }
        for name, (base, _) in keys.items():
            yield dg.MaterializeResult(
                asset_key=source.key("core", name),
                metadata={
                    "rows": rows[name],
                    "symbols": ", ".join(result.symbols),
                    "days": result.days,
                    "as_of": str(result.as_of),
                    "actions_applied": result.actions_applied,
                    "table": dg.MetadataValue.path(f"{wh.location}/{source.table(base)}"),
                },
            )

    return adjusted_series
