"""The partitions a step fills, refused before its first request or write when the run asked
for keys that are not its asset's.

Dagster starts such a run: ``dagster asset materialize --partition-range
2026-01-05-00:30...2026-01-05-01:30`` passes its own check (``has_partition_key`` takes a key
inside an hour) and the step's ``context.partition_keys`` are then the whole hours after it
(01:00 and 02:00), written as if asked for; a reversed range gives no key at all, and the step
would end in an IndexError. The run's range tags, as given, are checked here instead.
"""

from __future__ import annotations

import dagster as dg

from fin_assets.lib.assets.common import dagster_errors
from fin_assets.lib.partitions import partition_range_keys
from resources.errors import InvalidInputError


def run_partition_keys(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    partitions_def: dg.PartitionsDefinition,
    *,
    asset: str,
    step: str | None = None,
) -> list[str]:
    """The run's partition keys of ``asset``, in time order; a bound of the run's range that is
    not one of them fails the step (``dg.Failure`` naming ``step``, the key and the nearest
    valid keys) before anything is fetched or written."""
    span = context.partition_key_range
    where = (
        f"partition {span.start} of this run"
        if span.start == span.end
        else f"partition range {span.start}...{span.end} of this run"
    )
    with dagster_errors(asset=step or asset):
        try:
            return partition_range_keys(
                partitions_def, span.start, span.end, asset=asset, where=where
            )
        except InvalidInputError as exc:
            stop = "" if str(exc).endswith("?") else "."
            raise InvalidInputError(
                f"{exc}{stop} The step stopped before any request or write: launch the run "
                f"again with partition keys of {asset}"
            ) from None
