"""What a step attempt that did not materialize spent on the API, kept in the event log.

A materialization records the requests, 429s and waits of the attempt that produced it. An
attempt that ends otherwise (rescheduled because its wait exceeded the budget — a 429 storm —
or failed) would take its figures with it, and the 429 counters of the metrics exporter would
miss exactly the storms they are for. So such an attempt leaves an ``AssetObservation`` of
its asset (the step's last partition) with the same figures and ``ATTEMPT_OUTCOME``: an
observation, because Dagster's freshness reads only materializations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

# A type only: the metrics exporter reads ATTEMPT_OUTCOME without loading the API client.
if TYPE_CHECKING:
    from resources.http.client import ClientStats
    from resources.raw.archive import ArchiveStats

ATTEMPT_OUTCOME = "attempt_outcome"  # metadata key: "rescheduled" or "failed"
RESCHEDULED, FAILED = "rescheduled", "failed"


@dataclass
class AttemptSpending:
    """The client statistics of one step attempt (set once the client exists)."""

    context: dg.AssetExecutionContext
    asset_key: dg.AssetKey
    source: str
    provider: str
    stats: ClientStats | None = None
    # What the provider's bulk archive gave this attempt (downloads, checksum failures).
    archive: ArchiveStats | None = None

    @contextlib.contextmanager
    def recorded(self) -> Iterator[AttemptSpending]:
        """Around the attempt's Dagster outcome: an attempt that raises (a ``RetryRequested``
        reschedule, a ``Failure``) records what it spent before it goes."""
        try:
            yield self
        except BaseException as exc:
            archived = self.archive is not None and (
                self.archive.files_downloaded or self.archive.checksum_failures
            )
            if self.stats is not None and (self.stats.requests or archived):
                outcome = RESCHEDULED if isinstance(exc, dg.RetryRequested) else FAILED
                keys = self.context.partition_keys
                self.context.log_event(
                    dg.AssetObservation(
                        asset_key=self.asset_key,
                        partition=keys[-1] if keys else None,
                        metadata={
                            ATTEMPT_OUTCOME: outcome,
                            "source": self.source,
                            "provider": self.provider,
                            "first_partition": keys[0] if keys else "",
                            "last_partition": keys[-1] if keys else "",
                            **self.stats.as_metadata(),
                            **(self.archive.as_metadata() if self.archive is not None else {}),
                        },
                    )
                )
            raise
