"""A loopback HTTP server base for vendor-API emulators used in tests.

The server plumbing and the ``start()``/``stop()``/``with`` life cycle are the simulator's
(``resources/simulator/loopback.py``): daemon threads, a 128-deep listen backlog, no reverse
DNS, Nagle off, no access log, keep-alive connections dropped on ``stop()``.

Subclasses implement :meth:`LoopbackEmulator.handle` (pure request -> response) and
:meth:`LoopbackEmulator.is_data_path`; the base class does parsing, injection of canned
responses, the request log and the generic counters.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from resources.simulator.loopback import LoopbackHTTPServer, LoopbackService, QuietHandler
from resources.simulator.protocol import dumps  # compact JSON, as the real vendors send it

__all__ = ["Clock", "LoopbackEmulator", "Reply", "dumps"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
# (status, headers, body) as returned by handle().
Reply = tuple[int, dict[str, str], bytes]

_MAX_QUERY_FIELDS = 64


class _Handler(QuietHandler):
    server: LoopbackHTTPServer[LoopbackEmulator]

    def version_string(self) -> str:
        return self.server.owner.server_header

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        # Bodies are never used by the emulated GET endpoints; drain a small one so the
        # keep-alive stream stays in sync, otherwise close the connection afterwards.
        raw_len = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
        elif raw_len:
            try:
                length = int(raw_len)
            except ValueError:
                length = -1
            if 0 <= length <= 64 * 1024:
                self.rfile.read(length)
            else:
                self.close_connection = True
        status, headers, body = self.server.owner._serve(method, self.path, self.headers)
        self.send_response(status)
        names = {name.lower() for name in headers}
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class LoopbackEmulator(LoopbackService, ABC):
    """An emulated vendor API on ``http://127.0.0.1:<port>``; ``start()`` serves it.

    ``clock`` (default ``time.time``) is the emulator's notion of epoch seconds: rate-limit
    windows, bans, Retry-After values and request-log timestamps all use it, so tests can
    compress or freeze time without sleeping.
    """

    kind = "emulator"
    handler = _Handler
    server_header = "Emulator/1.0"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        log_size: int = 50_000,
    ) -> None:
        super().__init__(host, port)
        self.clock: Clock = clock if clock is not None else time.time
        self._lock = threading.RLock()
        self._log_size = log_size
        self._injections: collections.deque[Reply] = collections.deque()
        self._clear_base_stats()

    # -- test controls -----------------------------------------------------------------

    def inject(
        self,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` data-endpoint requests with this canned response.

        Injections queue FIFO behind earlier ones. Injected replies skip the emulator's own
        logic (auth, quotas, parameters) but are logged and counted by status; subclasses
        may react to them (see ``_on_injected``).
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        reply: Reply = (int(status), dict(headers or {}), bytes(body))
        with self._lock:
            self._injections.extend([reply] * count)

    def pending_injections(self) -> int:
        with self._lock:
            return len(self._injections)

    def reset(self) -> None:
        """Forget injections, counters, the request log and all quota/ban state."""
        with self._lock:
            self._injections.clear()
            self._clear_base_stats()
            self._reset_state()

    def request_log(self) -> list[dict[str, Any]]:
        """``{t, path, status, client}`` per request, oldest first (bounded)."""
        with self._lock:
            return [
                {"t": t, "path": path, "status": status, "client": client}
                for t, path, status, client in self._log
            ]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "injected": self._injected,
                "by_status": dict(self._by_status),
            }

    # -- subclass hooks ----------------------------------------------------------------

    @abstractmethod
    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Message
    ) -> Reply:
        """Answer one request: ``(status, headers, body)``. Called from handler threads."""

    @abstractmethod
    def is_data_path(self, path: str) -> bool:
        """Whether ``path`` is the data endpoint that ``inject()`` applies to."""

    def _on_injected(self, reply: Reply) -> Reply:
        """Called (under the lock) when an injected reply is served; may amend it."""
        return reply

    def _reset_state(self) -> None:
        """Clear subclass counters and quota state (called under the lock)."""
        return None

    # -- internals ---------------------------------------------------------------------

    def _clear_base_stats(self) -> None:
        self._requests = 0
        self._injected = 0
        self._by_status: collections.Counter[int] = collections.Counter()
        self._log: collections.deque[tuple[float, str, int, str]] = collections.deque(
            maxlen=self._log_size
        )

    def _serve(self, method: str, target: str, headers: Message) -> Reply:
        split = urlsplit(target)
        path = split.path
        reply: Reply | None = None
        if self.is_data_path(path):
            with self._lock:
                if self._injections:
                    reply = self._on_injected(self._injections.popleft())
                    self._injected += 1
        if reply is None:
            try:
                query = parse_qs(
                    split.query, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS
                )
            except ValueError:
                reply = (400, {}, dumps({"error": "too many query parameters"}))
            else:
                try:
                    reply = self.handle(method, path, query, headers)
                except Exception:
                    logger.exception("emulator failed handling %s %s", method, path)
                    reply = (500, {}, dumps({"error": "internal emulator error"}))
        status = reply[0]
        client = headers.get("X-Client-Id") or ""
        with self._lock:
            self._requests += 1
            self._by_status[status] += 1
            self._log.append((self.clock(), path, status, str(client)))
        return reply
