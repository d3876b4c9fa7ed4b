"""``MarketDataSource``: the Dagster component a source is declared with, one YAML file each.

``fin_assets/defs/<name>/defs.yaml``::

    type: fin_assets.lib.components.MarketDataSource
    attributes:
      name: us_equities
      provider: polygon
      symbols: [AAPL, MSFT]
      calendar: XNYS                 # or "24/7"
      quota: {requests: 5, window_seconds: 60}   # or "learn"; omitted: the provider's own
      base_url: https://api.massive.com          # omitted: the provider's default
      api_key_env: POLYGON_API_KEY   # the NAME of the variable holding the key, never the key
      partitions_start: "2026-01-01"
      freshness: {fail_minutes: 90, warn_minutes: 75}
      max_quiet_minutes: 2           # minutes without a bar per symbol and hour, not a warning

Adding a source is a new file and no Python. ``dg check yaml`` validates every file against
this model (provider, symbols, calendar and the key variable's name are constrained in its
schema, so a bad file is refused with its file, line and field); ``dg list defs`` lists every
source's assets. Shared settings (warehouse, quota store, retries, alerting) stay in the
``FIN_*`` variables (``fin_assets/lib/settings.py``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Annotated, Literal, get_args

import dagster as dg
import yaml
from pydantic import Field

from fin_assets.lib.catalog import DEFS_DIR, declared_markets  # noqa: F401 - re-exported
from fin_assets.lib.freshness import FreshnessSettings
from fin_assets.lib.pipeline import build_source_definitions
from fin_assets.lib.settings import Settings
from fin_assets.lib.sources import ENV_VAR_NAME, SOURCE_NAME, Source
from resources.calendars import TWENTY_FOUR_SEVEN
from resources.errors import InvalidInputError
from resources.providers import get_adapter, provider_names
from resources.ratelimit.policy import QuotaPolicy
from resources.validation import PROVIDER_SYMBOL_RE, SYMBOL_RE, parse_symbols

# The providers a source may name, from the registry (resources/providers/__init__.py): a
# Literal, so that the schema `dg check yaml` validates against lists them.
ProviderName = Literal[tuple(provider_names())]  # type: ignore[valid-type]
CALENDAR_PATTERN = r"^(24/7|[A-Z0-9]{3,6})$"
ANY_SYMBOL_PATTERN = "|".join(
    f"(?:{rule.pattern})" for rule in (SYMBOL_RE, *PROVIDER_SYMBOL_RE.values())
)


TYPE_NAME = "fin_assets.lib.components.MarketDataSource"


class QuotaModel(dg.Model, dg.Resolvable):
    requests: float = Field(gt=0, description="Requests (or weight) per window.")
    window_seconds: float = Field(gt=0, description="The quota's window.")
    burst: int = Field(default=1, ge=1, description="Requests allowed back to back.")


class FreshnessModel(dg.Model, dg.Resolvable):
    fail_minutes: float = Field(default=90, gt=0, description="An hour not landed after this.")
    # The bound is on the number: on `float | None` pydantic applies it to null too and fails
    # with a TypeError that names no field.
    warn_minutes: Annotated[float, Field(gt=0)] | None = Field(
        default=75, description="Warn after this; null: never."
    )


class MarketDataSource(dg.Component, dg.Model, dg.Resolvable):
    """A market-data source: one provider, credential, symbol list and exchange calendar."""

    name: str = Field(
        pattern=SOURCE_NAME.pattern,
        description="The source's name: asset keys, tables, jobs.",
        json_schema_extra={"pattern": SOURCE_NAME.pattern},
    )
    provider: ProviderName = Field(
        description="Provider adapter.", json_schema_extra={"enum": list(get_args(ProviderName))}
    )
    symbols: list[str] = Field(
        min_length=1,
        description="The symbols, e.g. [AAPL, MSFT] or [BTCUSDT].",
        # The loosest form any provider accepts; each provider's own rule is checked at load.
        json_schema_extra={"items": {"type": "string", "pattern": ANY_SYMBOL_PATTERN}},
    )
    calendar: str = Field(
        default=TWENTY_FOUR_SEVEN,
        pattern=CALENDAR_PATTERN,
        description="'24/7' or an exchange code of exchange_calendars (XNYS, XNAS, XLON, ...).",
        json_schema_extra={"pattern": CALENDAR_PATTERN},
    )
    quota: QuotaModel | Literal["learn"] | None = Field(
        default=None, description="The provider's quota, 'learn', or omitted: its documented one."
    )
    base_url: str | None = Field(default=None, description="Omitted: the provider's default.")
    api_key_env: str | None = Field(
        default=None,
        pattern=ENV_VAR_NAME.pattern,
        description="The NAME of the environment variable holding the API key (never the key).",
        json_schema_extra={"pattern": ENV_VAR_NAME.pattern},
    )
    partitions_start: str = Field(
        default="2026-01-01", pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="First day."
    )
    freshness: FreshnessModel = Field(default_factory=FreshnessModel)
    max_quiet_minutes: int = Field(
        default=0, ge=0, description="Minutes without a bar per symbol and hour, not a warning."
    )

    def to_source(self) -> Source:
        try:
            symbols = parse_symbols(self.symbols, provider=self.provider)
        except InvalidInputError as exc:
            raise InvalidInputError(f"source {self.name}: symbols: {exc}") from None
        quota = (
            QuotaPolicy(self.quota.requests, self.quota.window_seconds, self.quota.burst)
            if isinstance(self.quota, QuotaModel)
            else None
        )
        return Source(
            name=self.name,
            provider=self.provider,
            symbols=symbols,
            base_url=self.base_url or get_adapter(self.provider).default_base_url,
            calendar=self.calendar,
            api_key_env=self.api_key_env,
            quota=quota,
            learn_quota=self.quota == "learn",
            partitions_start=date.fromisoformat(self.partitions_start),
            freshness=FreshnessSettings(
                hourly_fail_minutes=self.freshness.fail_minutes,
                hourly_warn_minutes=self.freshness.warn_minutes,
            ),
            max_quiet_minutes=self.max_quiet_minutes,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Shared settings come from the environment, read by the one reader of configuration.
        env = dict(os.environ)
        source = replace(self.to_source(), origin=str(context.path / "defs.yaml"))
        return build_source_definitions(source, Settings.from_env(env), env)


def load_source_files(directory: Path) -> list[Source]:
    """The sources declared as ``<name>/defs.yaml`` under ``directory`` (FIN_SOURCES_DIR),
    loaded and validated as Dagster loads a component (a bad file names itself and its field)."""
    paths = sorted(directory.glob("*/defs.yaml"))
    if not paths:
        raise InvalidInputError(f"FIN_SOURCES_DIR={directory}: no <source>/defs.yaml in it")
    sources = []
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text()) or {}
            if not str(document.get("type", "")).endswith("MarketDataSource"):
                raise InvalidInputError(f"type: expected {TYPE_NAME}")
            # Resolved as Dagster resolves a component (templates such as {{ env(...) }}).
            attributes = yaml.safe_dump(document.get("attributes") or {})
            component = MarketDataSource.resolve_from_yaml(attributes)
            sources.append(replace(component.to_source(), origin=str(path)))
        except Exception as exc:
            raise InvalidInputError(f"source file {path}: {exc}") from exc
    names = [s.name for s in sources]
    for name in set(names):
        if names.count(name) > 1:
            raise InvalidInputError(f"FIN_SOURCES_DIR={directory}: two sources named {name}")
    return sources
