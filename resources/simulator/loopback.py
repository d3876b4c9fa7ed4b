"""Loopback HTTP plumbing shared by the simulator (``resources/simulator/``) and the vendor
emulators of the tests (``tests/emulators/``).

``LoopbackService`` is what they all are: ``start()``/``stop()`` (or ``with``), and their
``port`` and ``url`` while they serve. Underneath, a ``ThreadingHTTPServer`` on daemon threads
with a 128-deep listen backlog (many worker processes connect at once; the default of 5 drops
connection attempts, which clients see as a one-second SYN retry), no reverse DNS in
``server_bind``, and keep-alive connections dropped on stop so handler threads exit promptly;
a handler with keep-alive, Nagle off, no access log and no request line in error pages (either
may carry an API key).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

logger = logging.getLogger(__name__)

OwnerT = TypeVar("OwnerT")


class LoopbackHTTPServer(ThreadingHTTPServer, Generic[OwnerT]):
    """Serves ``handler`` for ``owner`` (what the handler answers for: ``self.server.owner``)."""

    request_queue_size = 128
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        owner: OwnerT,
        *,
        label: str = "loopback server",
    ) -> None:
        self.owner = owner
        self.label = label  # names the server in its log lines
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # stall for seconds in sandboxes; we never use server_name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections so they exit."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            # Clients hanging up mid-response is routine (timeouts, fault tests).
            logger.debug("%s client disconnected: %s", self.label, type(exc).__name__)
        else:
            logger.exception("%s request handler failed", self.label)

    def serve_in_thread(self, name: str) -> threading.Thread:
        """Serve from a daemon thread; ``stop_serving`` ends it."""
        # Short poll so stop_serving (which waits for the loop to notice) is quick in tests.
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        thread.start()
        return thread

    def stop_serving(self, thread: threading.Thread | None) -> None:
        self.shutdown()
        self.server_close()
        self.drop_connections()
        if thread is not None:
            thread.join(timeout=5)


class QuietHandler(BaseHTTPRequestHandler):
    # Keep-alive, like real APIs behind their CDNs: HTTP/1.0 would open a socket per request
    # and pile up TIME_WAIT entries when a client pages through thousands of requests.
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client's
    # delayed ACK stalls every response by ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # The default writes the request line (which may carry ?apikey=...) to stderr.
        return

    def version_string(self) -> str:
        # The default appends the Python version; a fake vendor has no reason to leak it.
        return self.server_version

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stock error page quotes the raw request line, which may carry a key; answer
        # with the bare status phrase instead.
        super().send_error(code)


class LoopbackService:
    """Something served on loopback from a daemon thread: ``start()`` and ``stop()``, or a
    ``with`` block; ``port`` and ``url`` while it serves (``port`` 0 = an ephemeral one)."""

    kind = "loopback server"  # names it in errors and log lines
    # Answers its requests; it finds this object as ``self.server.owner``.
    handler: type[BaseHTTPRequestHandler]

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.requested_port = port
        self._server: LoopbackHTTPServer[Self] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{self.kind} already started")
        server = LoopbackHTTPServer(
            (self.host, self.requested_port), self.handler, self, label=self.kind
        )
        self._server = server
        self._thread = server.serve_in_thread(f"{type(self).__name__}-{server.server_port}")
        logger.info("%s listening on %s", self.kind, self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.stop_serving(thread)
        logger.info("%s stopped", self.kind)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.kind} not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        host = self.host
        # A wildcard bind is reachable on loopback; hand out an address clients can use.
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
