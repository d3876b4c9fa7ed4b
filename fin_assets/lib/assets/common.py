"""What every fin-assets asset does the same way: turn our errors into Dagster outcomes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from resources.errors import (
    ArchiveError,
    FinAssetsError,
    NotYetPublishedError,
    ProviderError,
    SchemaError,
    WaitBudgetExceededError,
)
from resources.secrets import redact
from resources.windows import PartitionWindow

# A step whose wait exceeds its budget asks Dagster to run it again later, this many times.
MAX_RESCHEDULES = 5


@dataclass(frozen=True)
class LateDataRetries:
    """How long a step waits for a provider to publish a window: ``retries`` x ``wait_s``;
    ``attempt`` is the step's retry number (0 on the first try)."""

    retries: int
    wait_s: float
    attempt: int


@contextlib.contextmanager
def dagster_errors(*, asset: str, late_data: LateDataRetries | None = None) -> Iterator[None]:
    """Map fin-assets errors to Dagster: reschedule long waits, fail the rest with one message.

    ``Failure`` carries our message (which already names provider, symbol, partition, field)
    as the description, so the UI shows one clear line instead of a stack of wrappers. With
    ``late_data``, a window the provider has not published yet is tried again later, that many
    times, before the step fails naming the provider's watermark.
    """
    try:
        yield
    except WaitBudgetExceededError as exc:
        raise dg.RetryRequested(
            max_retries=MAX_RESCHEDULES, seconds_to_wait=exc.seconds_to_wait
        ) from None
    except NotYetPublishedError as exc:
        if late_data is not None and late_data.attempt < late_data.retries:
            raise dg.RetryRequested(
                max_retries=late_data.retries, seconds_to_wait=late_data.wait_s
            ) from exc
        # The last try fails with our message (the watermark), not "Exceeded max_retries".
        tries = 1 + (late_data.attempt if late_data else 0)
        raise dg.Failure(
            description=f"{asset}: {exc} (tried {tries} time{'s' if tries > 1 else ''})",
            metadata={
                "asset": asset,
                "error": type(exc).__name__,
                "provider": exc.provider,
                "watermark": exc.watermark.isoformat(),
            },
            allow_retries=False,
        ) from None
    except FinAssetsError as exc:
        metadata: dict[str, str] = {"asset": asset, "error": type(exc).__name__}
        if isinstance(exc, ProviderError):
            metadata["provider"] = exc.provider
        if isinstance(exc, ArchiveError):
            metadata["file"] = exc.file
        if isinstance(exc, SchemaError):
            for name in ("symbol", "partition", "field"):
                value = getattr(exc, name)
                if value is not None:
                    metadata[name] = str(value)
        raise dg.Failure(
            description=f"{asset}: {exc}", metadata=metadata, allow_retries=False
        ) from None
    except Exception as exc:
        # Anything else is Dagster's to report, with its stack, unless its message holds a
        # secret of this process (a library quoting a URL, say): then only the redacted line.
        text = str(exc)
        if redact(text) == text:
            raise
        raise dg.Failure(
            description=f"{asset}: {type(exc).__name__}: {redact(text)}", allow_retries=False
        ) from None


def window_metadata(context: dg.AssetExecutionContext) -> dict[str, Any]:
    window = context.partition_time_window
    keys = context.partition_keys
    return {
        "time_window": f"{window.start.isoformat()} .. {window.end.isoformat()}",
        "partitions": len(keys),
        "first_partition": keys[0],
        "last_partition": keys[-1],
    }


def table_figures(
    rows: int, symbols: Iterable[str], *, location: str, table: str
) -> dict[str, Any]:
    """What a step that wrote a table reports: rows, symbols and where the table is."""
    names = sorted(symbols)
    return {
        "rows": rows,
        "symbols": ", ".join(names),
        "symbol_count": len(names),
        "table": dg.MetadataValue.path(f"{location}/{table}"),
    }


def range_result(
    context: dg.AssetExecutionContext,
    figures: Mapping[str, Any],
    *,
    common: Mapping[str, Any] | None = None,
    asset_key: dg.AssetKey | None = None,
) -> dg.MaterializeResult:
    """The step's materialization: one per partition of its range, as Dagster records it.

    The step's ``figures`` (rows, requests, bytes ... of the whole range) go on the range's
    last partition only, next to ``window_metadata``; every partition carries ``common`` and
    where its range begins and ends. Dagster would copy a range's metadata to each of its
    partitions: kilobytes per hour written, serialized and held by ``dagster asset
    materialize`` for years of hours, and figures that read as the hour's own when they are
    not. The metrics exporter counts a range's figures once, on its last partition, as here.
    ``asset_key``: which asset of a multi-asset step the result is for."""
    keys = context.partition_keys
    span: dict[str, Any] = {
        "partitions": len(keys),
        "first_partition": keys[0],
        "last_partition": keys[-1],
    }
    every = {**(common or {}), **span}
    whole = {**window_metadata(context), **every, **figures}
    if len(keys) == 1:
        return dg.MaterializeResult(asset_key=asset_key, metadata=whole)
    context.add_asset_metadata(whole, asset_key=asset_key, partition_key=keys[-1])
    return dg.MaterializeResult(asset_key=asset_key, metadata=every)


def partition_label(keys: list[str] | tuple[str, ...]) -> str:
    """How error messages name the partitions a step was filling."""
    return f"partition {keys[0]}" if len(keys) == 1 else f"partitions {keys[0]}...{keys[-1]}"


def partition_windows(
    context: dg.AssetExecutionContext,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    *,
    parts: dg.TimeWindowPartitionsDefinition | None = None,
) -> list[PartitionWindow]:
    """The run's partitions as the layers in ``resources/`` take them, in time order; with
    ``parts``, each window also lists the finer partitions it is made of."""
    windows = []
    for key in context.partition_keys:
        window = partitions_def.time_window_for_partition_key(key)
        finer = tuple(parts.get_partition_keys_in_time_window(window)) if parts else ()
        windows.append(PartitionWindow(key, window.start, window.end, finer))
    return windows


def retry_number(context: dg.AssetExecutionContext) -> int:
    """The step's retry number (0 on its first try); 0 for a context built outside a run
    (``dg.build_asset_context``, which has no step to count)."""
    try:
        return context.retry_number
    except AttributeError:
        return 0
