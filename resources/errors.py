"""Errors a fin-assets user can meet, each naming what went wrong and where.

The tree::

    FinAssetsError
    ├── InvalidInputError           a symbol, provider, partition key or table name refused
    │                               before it became a request, a path or an identifier
    ├── ProviderError               anything about talking to a provider (has .provider)
    │   ├── FatalResponseError      a 4xx other than 429, or a body we refuse (too large):
    │   │   │                       retrying cannot help, the message says what to fix
    │   │   └── MissingApiKeyError  a provider that needs a key has none (also an
    │   │                           InvalidInputError: refused before any request)
    │   ├── RetriesExhaustedError   429/5xx/timeouts kept coming until the attempt cap
    │   ├── NotYetPublishedError    the provider has not published the whole window yet;
    │   │                           carries its watermark (how far its data goes)
    │   ├── WaitBudgetExceededError the next wait would pass the total-wait budget; carries
    │   │                           seconds_to_wait so the caller can reschedule instead of sleep
    │   ├── ResponseFormatError     a body that is not what the provider documents
    │   │   └── SchemaError         a field missing or of the wrong type (names provider,
    │   │                           symbol, partition and field)
    │   └── ArchiveError            a bulk-archive file that fails its checksum, is cut short,
    │                               does not parse or is not published where it must be (has
    │                               .file); nothing is kept from it
    ├── DataValidationError         parsed rows that break an invariant (OHLC, prices)
    ├── StorageError                a snapshot or warehouse partition that is missing or corrupt
    └── BrokerUnreachableError      the Celery broker (FIN_EXECUTOR=celery) cannot be reached:
                                    the run stops, naming the broker (has .broker, redacted)
"""

from __future__ import annotations

from datetime import datetime


class FinAssetsError(Exception):
    """Base class of every error fin-assets raises on purpose."""


class InvalidInputError(FinAssetsError, ValueError):
    """A value was refused before it could become a request, a path or an identifier."""


class ProviderError(FinAssetsError):
    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


class FatalResponseError(ProviderError):
    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message, provider=provider)
        self.status = status


class MissingApiKeyError(FatalResponseError, InvalidInputError):
    pass


class RetriesExhaustedError(ProviderError):
    pass


class NotYetPublishedError(ProviderError):
    def __init__(self, message: str, *, provider: str, watermark: datetime) -> None:
        super().__init__(message, provider=provider)
        self.watermark = watermark


class WaitBudgetExceededError(ProviderError):
    def __init__(self, message: str, *, provider: str, seconds_to_wait: float) -> None:
        super().__init__(message, provider=provider)
        self.seconds_to_wait = seconds_to_wait


class ResponseFormatError(ProviderError):
    """A response that does not parse. ``body`` (when the client gave up on one) is the last
    unparseable body as received, and ``url`` the redacted URL it came from: the raw layer
    keeps it in the quarantine for a human to inspect."""

    def __init__(
        self, message: str, *, provider: str, body: bytes | None = None, url: str | None = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.body = body
        self.url = url


class SchemaError(ResponseFormatError):
    def __init__(
        self,
        message: str,
        *,
        provider: str,
        symbol: str | None = None,
        partition: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.symbol = symbol
        self.partition = partition
        self.field = field


class ArchiveError(ProviderError):
    def __init__(self, message: str, *, provider: str, file: str, checksum: bool = False) -> None:
        super().__init__(message, provider=provider)
        self.file = file
        self.checksum = checksum  # the file's checksum (or ETag) did not match


class DataValidationError(FinAssetsError):
    pass


class StorageError(FinAssetsError):
    pass


class BrokerUnreachableError(FinAssetsError):
    def __init__(self, message: str, *, broker: str) -> None:
        super().__init__(message)
        self.broker = broker
