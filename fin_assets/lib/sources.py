"""A source: one provider, credential, symbol list, exchange calendar, quota and freshness
windows, and every name that follows from it, so two sources can never collide.

Sources are declared in YAML, one file per source (``fin_assets/defs/<name>/defs.yaml``, an
instance of the ``MarketDataSource`` component in ``fin_assets/lib/components.py``). The
environment-variable configuration (``FIN_PROVIDER``, ``FIN_SYMBOLS``, ``FIN_API_BASE_URL``) is a
shorthand for one source: it keeps today's names (``raw/bars``, table ``core_bars``, pool
``provider_<name>``), so existing deployments, commands and dashboards see no change.

Names of a declared source ``crypto``: asset keys ``raw/crypto/bars``, ``core/crypto/bars``,
``core/crypto/daily_bars``, ``core/crypto/daily_returns`` (group ``crypto``); tables
``crypto__core_bars`` ...; manifests under ``manifests/crypto__raw_bars/``; jobs
``crypto__bars_hourly_job`` ...; resources ``market_api__crypto`` and ``universe__crypto``.
Source names are ``[a-z][a-z0-9_]*`` without ``__``, so ``<source>__<table>`` is unique, and at
most ``MAX_NAME_LENGTH`` (43) characters, so that ``<source>__core_daily_returns`` fits the 63
characters of a PostgreSQL identifier (a longer name loaded, then failed every daily run).

A source is checked when it is made, before any request or write: a bad field raises a
``SourceFieldError`` naming the field, which ``fin_assets/lib/components.py`` turns into the
file and line it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import dagster as dg

from fin_assets.lib.freshness import FreshnessSettings
from resources.calendars import TWENTY_FOUR_SEVEN, validate_calendar_name
from resources.endpoints import endpoint_of
from resources.errors import InvalidInputError
from resources.ratelimit.policy import QuotaPolicy
from resources.raw.actions import ACTIONS_MANIFESTS_DIR
from resources.raw.manifest import MANIFESTS_DIR
from resources.tables.adjustment import (
    ADJUSTED_DAILY_TABLE,
    ADJUSTMENT_FACTORS_TABLE,
    CORPORATE_ACTIONS_TABLE,
    TOTAL_RETURNS_TABLE,
)
from resources.tables.core import CORE_BARS_TABLE
from resources.tables.daily import DAILY_BARS_TABLE, DAILY_RETURNS_TABLE
from resources.validation import MAX_IDENTIFIER_LENGTH, validate_http_url

SOURCE_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Every table a source writes is "<name>__<base>" (its manifests' folder too); the longest base
# bounds the name.
SOURCE_TABLES = (
    CORE_BARS_TABLE,
    DAILY_BARS_TABLE,
    DAILY_RETURNS_TABLE,
    MANIFESTS_DIR,
    ACTIONS_MANIFESTS_DIR,
    CORPORATE_ACTIONS_TABLE,
    ADJUSTMENT_FACTORS_TABLE,
    ADJUSTED_DAILY_TABLE,
    TOTAL_RETURNS_TABLE,
)
LONGEST_TABLE = max(SOURCE_TABLES, key=len)
MAX_NAME_LENGTH = MAX_IDENTIFIER_LENGTH - len("__") - len(LONGEST_TABLE)


class SourceFieldError(InvalidInputError):
    """A source's field refused: ``field`` is its name in the YAML (``attributes.<field>``),
    ``reason`` what is wrong with it and what to do instead."""

    def __init__(self, label: str, field: str, reason: str) -> None:
        super().__init__(f"source {label}: {field}: {reason}")
        self.field = field
        self.reason = reason


ARCHIVE_USES = ("auto", "always", "never")


@dataclass(frozen=True)
class ArchiveSettings:
    """A source's bulk archive (``resources/raw/archive.py``): which days come from it, where
    it is (None: the provider's own), and the NAMES of the variables holding its S3 keys."""

    use: str = "auto"  # auto | always | never
    url: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    access_key_env: str | None = None
    secret_key_env: str | None = None


@dataclass(frozen=True)
class Source:
    name: str | None  # None: the one source of the FIN_* variables (today's names)
    provider: str
    symbols: tuple[str, ...]
    base_url: str
    calendar: str = TWENTY_FOUR_SEVEN
    api_key_env: str | None = None  # the NAME of the variable holding the key, never the key
    quota: QuotaPolicy | None = None  # None: the provider's documented quota (or learned)
    learn_quota: bool = False
    partitions_start: date = date(2026, 1, 1)
    freshness: FreshnessSettings = FreshnessSettings()
    max_quiet_minutes: int = 0  # minutes without a bar per symbol and hour, not a warning
    # The interval tables built from its 1-minute bars ("5m", "1h": resources/tables/intervals.py).
    intervals: tuple[str, ...] = ()
    # The provider's bulk archive for history (None: REST alone).
    archive: ArchiveSettings | None = None
    origin: str | None = None  # where it was declared (a defs.yaml), for error messages
    # The FIN_* defaults its declaration overrides (quota, freshness): a default every source
    # overrides would be read and ignored, which fin_assets/lib/catalog.py refuses.
    overrides: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        checks = (
            ("name", lambda name: name is None or check_source_name(name)),
            ("api_key_env", _check_env_var_name),
            ("base_url", validate_http_url),
            ("calendar", validate_calendar_name),
        )
        for field, check in checks:
            try:
                check(getattr(self, field))
            except InvalidInputError as exc:
                raise SourceFieldError(self.label, field, str(exc)) from None
        if self.archive is not None:
            self._check_archive(self.archive)

    def _check_archive(self, archive: ArchiveSettings) -> None:
        from resources.providers.archives import ARCHIVE_PROVIDERS

        def refuse(reason: str) -> None:
            raise SourceFieldError(self.label, "archive", reason)

        if self.provider not in ARCHIVE_PROVIDERS:
            refuse(
                f"provider {self.provider} has no bulk archive (archives exist for "
                f"{', '.join(ARCHIVE_PROVIDERS)}): remove the archive block"
            )
        if archive.use not in ARCHIVE_USES:
            refuse(f"use {archive.use!r}: expected one of {', '.join(ARCHIVE_USES)}")
        if archive.url is not None:
            try:
                validate_http_url(archive.url)
            except InvalidInputError as exc:
                refuse(f"url: {exc}")
        for name in ("access_key_env", "secret_key_env"):
            try:
                _check_env_var_name(getattr(archive, name))
            except InvalidInputError as exc:
                refuse(f"{name}: {exc}")
        if (archive.access_key_env is None) != (archive.secret_key_env is None):
            refuse("access_key_env and secret_key_env go together (an S3 key pair)")
        if self.provider == "binance" and archive.access_key_env:
            refuse("Binance public data needs no keys: remove access_key_env/secret_key_env")

    @property
    def label(self) -> str:
        return self.name or "default"

    @property
    def where(self) -> str:
        """How an error names the source: its name and the file it was declared in."""
        return f"source {self.label}" + (f" ({self.origin})" if self.origin else "")

    @property
    def is_shorthand(self) -> bool:
        return self.name is None

    def key(self, layer: str, name: str) -> dg.AssetKey:
        return dg.AssetKey([layer, name] if self.name is None else [layer, self.name, name])

    def group(self, layer: str) -> str:
        return layer if self.name is None else self.name

    def table(self, base: str) -> str:
        return base if self.name is None else f"{self.name}__{base}"

    def job_name(self, base: str) -> str:
        return base if self.name is None else f"{self.name}__{base}"

    def resource_key(self, base: str) -> str:
        return base if self.name is None else f"{base}__{self.name}"

    @property
    def pool(self) -> str:
        """The concurrency pool of the API-calling step: one per provider, credential and
        endpoint, so sources calling different APIs never queue behind each other."""
        if self.name is None:
            return f"provider_{self.provider}"
        endpoint = endpoint_of(self.base_url)  # host[:port]: never a user or password
        return f"{self.provider}:{(self.api_key_env or 'public').lower()}@{endpoint}"


def check_source_name(name: str) -> str:
    """``name`` if it can name a source: its asset keys, jobs and tables."""
    if not SOURCE_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid source name {name!r}: expected lower-case letters, digits and single "
            "underscores, starting with a letter (e.g. us_equities)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(
            f"source name {name!r} is {len(name)} characters: at most {MAX_NAME_LENGTH}, because "
            f"its longest table, {name}__{LONGEST_TABLE}, must fit the {MAX_IDENTIFIER_LENGTH} "
            "characters of a PostgreSQL identifier; choose a shorter name"
        )
    return name


def _check_env_var_name(name: str | None) -> None:
    if name is not None and not ENV_VAR_NAME.fullmatch(name):
        raise InvalidInputError(
            "expected the NAME of the environment variable holding the key (e.g. "
            "POLYGON_API_KEY), never the key itself"
        )
