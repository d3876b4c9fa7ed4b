"""A loopback webhook receiver: records every JSON body POSTed to it."""

from __future__ import annotations

import json
import threading
from typing import Any

from resources.simulator.loopback import LoopbackHTTPServer, LoopbackService, QuietHandler


class _Handler(QuietHandler):
    server: LoopbackHTTPServer[WebhookReceiver]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.owner.record(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookReceiver(LoopbackService):
    kind = "webhook receiver"
    handler = _Handler

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 0)
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{super().url}/hook"

    def record(self, alert: dict[str, Any]) -> None:
        with self._lock:
            self.received.append(alert)

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)
