"""``PartitionWindow``: one partition of a run as the layers see it, free of Dagster."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PartitionWindow:
    """A partition key and its UTC window ``[start, end)``; ``parts`` are the keys of the finer
    partitions it is made of (a day's 24 hours), where a layer reads them."""

    key: str
    start: datetime
    end: datetime
    parts: tuple[str, ...] = ()

    @property
    def day(self) -> str:
        """The UTC day of the partition: ``2026-01-05`` for ``2026-01-05-03:00``."""
        return self.key[:10]
