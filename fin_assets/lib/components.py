"""``MarketDataSource``: the Dagster component a source is declared with, one YAML file each.

``fin_assets/defs/<name>/defs.yaml``::

    type: fin_assets.lib.components.MarketDataSource
    attributes:
      name: us_equities
      provider: polygon
      symbols: [AAPL, MSFT]
      calendar: XNYS                 # or "24/7"
      quota: {requests: 5, window_seconds: 60}   # or "learn", or "documented" (the provider's);
                                                 # omitted: FIN_QUOTA_*, else the provider's
      base_url: https://api.massive.com          # omitted: the provider's default
      api_key_env: POLYGON_API_KEY   # the NAME of the variable holding the key, never the key
      partitions_start: "2026-01-01"
      freshness: {fail_minutes: 90, warn_minutes: 75, daily_deadline_cron: "0 2 * * *"}
                                     # each omitted: FIN_FRESHNESS_*, else 90 / 75 / 0 2 * * *
      max_quiet_minutes: 2           # minutes without a bar per symbol and hour, not a warning

Adding a source is a new file and no Python. ``dg check yaml`` validates every file against
this model (provider, symbols, calendar and the key variable's name are constrained in its
schema, so a bad file is refused with its file, line and field); ``dg list defs`` lists every
source's assets. Shared settings (warehouse, quota store, retries, alerting) stay in the
``FIN_*`` variables (``fin_assets/lib/settings.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import dagster as dg
import yaml
from pydantic import Field

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
if TYPE_CHECKING:
    ProviderName = str
else:
    ProviderName = Literal[tuple(provider_names())]
CALENDAR_PATTERN = r"^(24/7|[A-Z0-9]{3,6})$"
ANY_SYMBOL_PATTERN = "|".join(
    f"(?:{rule.pattern})" for rule in (SYMBOL_RE, *PROVIDER_SYMBOL_RE.values())
)


TYPE_NAME = "fin_assets.lib.components.MarketDataSource"
# The FIN_* variables that are every source's defaults, by the YAML field that overrides them.
QUOTA_DEFAULTS = ("FIN_QUOTA_REQUESTS", "FIN_QUOTA_WINDOW_SECONDS", "FIN_QUOTA_BURST")
FRESHNESS_DEFAULTS = {
    "fail_minutes": "FIN_FRESHNESS_HOURLY_FAIL_MINUTES",
    "warn_minutes": "FIN_FRESHNESS_HOURLY_WARN_MINUTES",
    "daily_deadline_cron": "FIN_FRESHNESS_DAILY_DEADLINE_CRON",
}


class QuotaModel(dg.Model, dg.Resolvable):
    requests: float = Field(gt=0, description="Requests (or weight) per window.")
    window_seconds: float = Field(gt=0, description="The quota's window.")
    burst: int = Field(default=1, ge=1, description="Requests allowed back to back.")


class FreshnessModel(dg.Model, dg.Resolvable):
    """Each field omitted: the FIN_FRESHNESS_* default (fin_assets/lib/settings.py)."""

    fail_minutes: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="An hour not landed after this."
    )
    # The bound is on the number: on `float | None` pydantic applies it to null too and fails
    # with a TypeError that names no field.
    warn_minutes: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Warn after this; null: never."
    )
    daily_deadline_cron: str | None = Field(
        default=None, description="By when the daily tables are rebuilt (cron, UTC)."
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
    quota: QuotaModel | Literal["learn", "documented"] | None = Field(
        default=None,
        description="The provider's quota, 'learn', 'documented' (the provider's own), or "
        "omitted: FIN_QUOTA_REQUESTS if set, else the provider's own.",
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

    def to_source(self, defaults: Settings) -> Source:
        """The source this declaration describes; what it leaves out comes from ``defaults``
        (the FIN_* variables: quota and freshness)."""
        try:
            symbols = parse_symbols(self.symbols, provider=self.provider)
        except InvalidInputError as exc:
            raise InvalidInputError(f"source {self.name}: symbols: {exc}") from None
        if isinstance(self.quota, QuotaModel):
            quota: QuotaPolicy | None = QuotaPolicy(
                self.quota.requests, self.quota.window_seconds, self.quota.burst
            )
            learn = False
        elif self.quota is None:
            quota, learn = defaults.configured_quota, defaults.learn_quota
        else:
            quota, learn = None, self.quota == "learn"
        given = self.freshness.model_fields_set
        fresh = defaults.freshness
        overrides = {v for f, v in FRESHNESS_DEFAULTS.items() if f in given}
        if self.quota is not None:
            overrides |= set(QUOTA_DEFAULTS)
        return Source(
            name=self.name,
            provider=self.provider,
            symbols=symbols,
            base_url=self.base_url or get_adapter(self.provider).default_base_url,
            calendar=self.calendar,
            api_key_env=self.api_key_env,
            quota=quota,
            learn_quota=learn,
            partitions_start=date.fromisoformat(self.partitions_start),
            freshness=replace(
                fresh,
                hourly_fail_minutes=self.freshness.fail_minutes or fresh.hourly_fail_minutes,
                hourly_warn_minutes=self.freshness.warn_minutes
                if "warn_minutes" in given
                else fresh.hourly_warn_minutes,
                daily_deadline_cron=self.freshness.daily_deadline_cron or fresh.daily_deadline_cron,
            ),
            max_quiet_minutes=self.max_quiet_minutes,
            overrides=frozenset(overrides),
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Shared settings come from the environment, read by the one reader of configuration.
        env = dict(os.environ)
        settings = Settings.from_env(env)
        source = replace(self.to_source(settings), origin=str(context.path / "defs.yaml"))
        return build_source_definitions(source, settings, env)


def resolve_source(
    attributes: Mapping[str, Any], defaults: Settings, *, origin: str, where: str
) -> Source:
    """A source from a declaration's attributes, validated and resolved as Dagster resolves a
    component (templates such as ``{{ env(...) }}``); a bad field raises naming ``where``."""
    try:
        component = MarketDataSource.resolve_from_yaml(yaml.safe_dump(dict(attributes)))
        return replace(component.to_source(defaults), origin=origin)
    except Exception as exc:
        raise InvalidInputError(f"{where}: {exc}") from exc


def load_source_files(directory: Path, defaults: Settings, *, label: str = "") -> list[Source]:
    """The sources declared as ``<name>/defs.yaml`` under ``directory``, loaded and validated as
    Dagster loads a component (a bad file names itself and its field). ``label``: how errors
    name the directory (``FIN_SOURCES_DIR=...``)."""
    label = label or str(directory)
    paths = sorted(directory.glob("*/defs.yaml"))
    if not paths:
        raise InvalidInputError(f"{label}: no <source>/defs.yaml in it")
    sources = []
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"source file {path}: {exc}") from exc
        if not str(document.get("type", "")).endswith("MarketDataSource"):
            raise InvalidInputError(f"source file {path}: type: expected {TYPE_NAME}")
        attributes = document.get("attributes") or {}
        sources.append(
            resolve_source(attributes, defaults, origin=str(path), where=f"source file {path}")
        )
    names = [s.name for s in sources]
    for name in set(names):
        if names.count(name) > 1:
            raise InvalidInputError(f"{label}: two sources named {name}")
    return sources
