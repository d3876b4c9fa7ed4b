"""What a step that builds a table reports, whatever the table (daily, interval bars)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TableResult:
    """Rows written and the symbols they hold, over every partition of one step."""

    rows: int = 0
    symbols: set[str] = field(default_factory=set)
