"""An alert: what a human is told, and how it is rendered (Slack-compatible text or plain JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol, get_args

# "killed": a run whose worker (or a step process) was killed or died — SIGKILL, the kernel's
# OOM killer, run monitoring's "worker died" — told apart from a failure on bad data.
AlertKind = Literal["failure", "killed", "recovery"]
ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)
PayloadFormat = Literal["slack", "plain"]
PAYLOAD_FORMATS: tuple[str, ...] = get_args(PayloadFormat)


@dataclass(frozen=True)
class Alert:
    key: str  # what the alert is about, e.g. "freshness:core/bars", "check:core/bars:ohlc"
    kind: AlertKind
    subject: str  # an asset key, a check, or a run
    title: str
    detail: str
    timestamp: float
    # Machine-readable facts (a killed run's run_id, partitions, signal, ...): in the plain
    # payload as they are; the Slack text says them in ``detail``.
    facts: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        icon = {"failure": ":red_circle:", "killed": ":skull:"}.get(
            self.kind, ":large_green_circle:"
        )
        return f"{icon} fin-assets {self.kind}: {self.title}\n{self.detail}"

    def payload(self, fmt: PayloadFormat) -> dict[str, object]:
        if fmt == "plain":
            return asdict(self)
        return {"text": self.text()}


class Notifier(Protocol):
    """An alert channel. ``send`` never raises: False means "not delivered, try again later"
    (the alert sensor keeps it in its cursor for the next tick)."""

    def send(self, alert: Alert) -> bool: ...

    def close(self) -> None: ...
