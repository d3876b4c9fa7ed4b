"""Thin Dagster ``ConfigurableResource`` wrappers over the plain classes in ``resources/``.

Each one holds typed configuration and hands out the plain object, so the real logic can be
used and tested without Dagster. Values come from ``fin_assets/definitions.py``, the only
place that reads environment variables.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from resources.http.client import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_WAIT_S,
    DEFAULT_TIMEOUT_S,
    MarketApiClient,
)
from resources.notify.alert import Notifier, PayloadFormat
from resources.notify.webhook import WebhookNotifier
from resources.providers import get_adapter
from resources.providers.archives import archive_format
from resources.providers.base import ProviderAdapter
from resources.ratelimit.pacer import SharedPacer
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import MemoryQuotaStore, QuotaStore, SQLiteQuotaStore, quota_key
from resources.raw.archive import ArchiveFormat
from resources.raw.ingest import DEFAULT_LATE_DATA_RETRIES, DEFAULT_LATE_DATA_RETRY_S
from resources.raw.snapshots import SnapshotStore
from resources.simulator.adapter import SimulatorAdapter
from resources.storage.base import Warehouse
from resources.storage.warehouse import warehouse_from_url
from resources.validation import parse_symbols


class MarketApiResource(dg.ConfigurableResource):
    """The rate-limit-aware market-data API client for one provider."""

    provider: str = Field(default="simulator", description="Provider adapter name.")
    base_url: str = Field(
        default=SimulatorAdapter.default_base_url, description="Provider base URL."
    )
    api_key: str | None = Field(default=None, description="API key (pass via dg.EnvVar).")
    quota_requests: float | None = Field(
        default=None,
        description="Quota in requests (or weight) per quota_window_s; None = the provider's "
        "documented quota, or learned from the server's rate-limit headers if it has none.",
    )
    quota_window_s: float = Field(default=1.0, description="Quota window in seconds.")
    quota_burst: int = Field(default=1, description="Requests allowed back to back.")
    learn_quota: bool = Field(
        default=False, description="Ignore configured/documented quotas; learn from headers."
    )
    quota_store: str = Field(
        default="",
        description="Where the quota state shared by every process and run lives: a SQLite file "
        "(one host), a postgresql:// URL (several hosts; keep the password in PGPASSWORD or "
        "~/.pgpass, not in the URL), or empty = this process only.",
    )
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_wait_s: float = Field(
        default=DEFAULT_MAX_WAIT_S,
        description="Retry/throttle seconds one step may wait; a longer wait reschedules it.",
    )
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    late_data_retries: int = Field(
        default=DEFAULT_LATE_DATA_RETRIES,
        description="Times a window the provider has not published yet is tried again.",
    )
    late_data_retry_s: float = Field(
        default=DEFAULT_LATE_DATA_RETRY_S, description="Seconds between those tries."
    )
    _adapter: ProviderAdapter | None = PrivateAttr(default=None)

    def adapter(self) -> ProviderAdapter:
        """The provider's adapter, looked up (and the name checked) once."""
        if self._adapter is None:
            self._adapter = get_adapter(self.provider)
        return self._adapter

    def policy(self) -> QuotaPolicy | None:
        if self.learn_quota:
            return None
        if self.quota_requests:
            return QuotaPolicy(self.quota_requests, self.quota_window_s, self.quota_burst)
        return self.adapter().default_quota

    def pacer(self) -> SharedPacer:
        store: QuotaStore
        if not self.quota_store:
            store = MemoryQuotaStore()
        elif self.quota_store.startswith(("postgresql://", "postgres://")):
            # Imported here: a SQLite or in-memory quota does not need psycopg2, and loading the
            # definitions (every run worker and code server) should not pay for it.
            from resources.ratelimit.postgres import PostgresQuotaStore

            store = PostgresQuotaStore(self.quota_store)
        else:
            store = SQLiteQuotaStore(Path(self.quota_store))
        key = quota_key(self.provider, self.base_url, self.api_key)
        return SharedPacer(store, key, policy=self.policy())

    def client(
        self, *, max_attempts: int | None = None, max_wait_s: float | None = None
    ) -> MarketApiClient:
        """A client; a sensor's cheap probe passes small caps so a down provider skips fast."""
        return MarketApiClient(
            self.adapter(),
            base_url=self.base_url,
            api_key=self.api_key,
            timeout_s=self.timeout_s,
            max_attempts=max_attempts or self.max_attempts,
            max_wait_s=self.max_wait_s if max_wait_s is None else max_wait_s,
            max_body_bytes=self.max_body_bytes,
            pacer=self.pacer(),
        )


class ArchiveResource(dg.ConfigurableResource):
    """A provider's bulk archive (Binance public data, Massive flat files): history without
    spending API quota (``resources/raw/archive.py``)."""

    provider: str = Field(description="The provider whose archive this is.")
    use: str = Field(
        default="auto",
        description="auto: archived days from the archive, the rest from REST; always: the "
        "archive only; never: REST only.",
    )
    url: str | None = Field(default=None, description="Archive base URL or S3 endpoint.")
    bucket: str | None = Field(default=None, description="S3 bucket (Massive flat files).")
    prefix: str | None = Field(default=None, description="S3 key prefix (Massive flat files).")
    access_key: str | None = Field(default=None, description="S3 access key (dg.EnvVar).")
    secret_key: str | None = Field(default=None, description="S3 secret key (dg.EnvVar).")

    def format(self) -> ArchiveFormat:
        return archive_format(
            self.provider,
            url=self.url,
            bucket=self.bucket,
            prefix=self.prefix,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
        )


class SnapshotStoreResource(dg.ConfigurableResource):
    """Where raw API responses are kept verbatim."""

    root: str

    def store(self) -> SnapshotStore:
        return SnapshotStore(Path(self.root))


class WarehouseResource(dg.ConfigurableResource):
    """Processed tables; the URL selects the backend (a directory = Parquet lake,
    postgresql://user@host:5432/db = PostgreSQL)."""

    url: str
    _warehouse: Warehouse | None = PrivateAttr(default=None)

    def warehouse(self) -> Warehouse:
        """One warehouse object for every call in a step, so a PostgreSQL warehouse connects
        once per step instead of once per partition."""
        if self._warehouse is None:
            self._warehouse = warehouse_from_url(self.url)
        return self._warehouse

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster builds the resource for each step's process (the multiprocess executor) or
        # once per run (in-process), and tears it down after: the warehouse's connections end
        # with the step instead of idling in the database. The Parquet lake has none to close.
        warehouse, self._warehouse = self._warehouse, None
        close = getattr(warehouse, "close", None)
        if close is not None:
            close()


class UniverseResource(dg.ConfigurableResource):
    """The symbols every market-data asset covers (comma-separated)."""

    symbols: str
    provider: str | None = Field(
        default=None,
        description="The provider they are fetched from: its own ticker forms (Polygon's X:, "
        "C:, I:, O:) are accepted for it only.",
    )

    def list(self) -> tuple[str, ...]:
        return parse_symbols(self.symbols, provider=self.provider)


class AlertingResource(dg.ConfigurableResource):
    """Where alerts go: a webhook (Slack-compatible JSON by default, or plain JSON)."""

    webhook_url: str | None = Field(default=None, description="Pass via dg.EnvVar.")
    payload_format: PayloadFormat = Field(default="slack", description="'slack' or 'plain'.")

    def notifier(self) -> Notifier:
        return WebhookNotifier(self.webhook_url, fmt=self.payload_format)
