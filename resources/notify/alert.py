"""An alert: what a human is told, and how it is rendered (Slack-compatible text or plain JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

# httpx is imported where a webhook is posted, not here: the alert sensor imports this module
# whenever Dagster loads the definitions (every run worker and code server), and most of those
# processes never send an alert (benchmarks/startup.py).
if TYPE_CHECKING:
    pass


AlertKind = Literal["failure", "recovery"]

PayloadFormat = Literal["slack", "plain"]


@dataclass(frozen=True)
class Alert:
    key: str  # what the alert is about, e.g. "freshness:core/bars", "check:core/bars:ohlc"
    kind: AlertKind
    subject: str  # an asset key, a check, or a run
    title: str
    detail: str
    timestamp: float

    def text(self) -> str:
        icon = ":red_circle:" if self.kind == "failure" else ":large_green_circle:"
        return f"{icon} fin-assets {self.kind}: {self.title}\n{self.detail}"

    def payload(self, fmt: PayloadFormat) -> dict[str, object]:
        if fmt == "plain":
            return asdict(self)
        return {"text": self.text()}
