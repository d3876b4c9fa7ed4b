"""Serving: one reading shared by concurrent scrapes, cached ``FIN_METRICS_CACHE_SECONDS``, on
prometheus_client's HTTP server until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping

import dagster as dg
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from fin_assets.tools.metrics.location import CodeLocation, describe_in_child
from fin_assets.tools.metrics.readings import InstanceMetrics
from resources.logfields import log_fields
from resources.metrics.catalog import Sample, families

logger = logging.getLogger("fin_assets.tools.metrics")

logger = logging.getLogger("fin_assets.tools.metrics")

DEFAULT_PORT = 9465


# -- serving ---------------------------------------------------------------------------------------
class CachedCollector(Collector):
    """Serves the latest reading; reads again when it is older than ``cache_s`` seconds."""

    def __init__(
        self,
        read: Callable[[], list[Sample]],
        *,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._families: list[Metric] | None = None
        self._at = 0.0

    def describe(self) -> list[Metric]:
        return families([])  # the names, without a reading (the registry asks at register)

    def collect(self) -> list[Metric]:
        with self._lock:  # concurrent scrapes share one reading
            if self._families is None or self._clock() - self._at >= self._cache_s:
                self._families = families(self._read())
                self._at = self._clock()
            return self._families


def serve(
    *,
    host: str,
    port: int,
    cache_s: float | None,
    env: Mapping[str, str],
    stop: threading.Event | None = None,
) -> int:
    """Read the instance named by DAGSTER_HOME and serve /metrics until SIGTERM or ``stop``;
    ``cache_s`` None: FIN_METRICS_CACHE_SECONDS."""
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    if not env.get("DAGSTER_HOME"):
        logger.error("fin-assets metrics: DAGSTER_HOME is not set: point it at the instance")
        return 2
    began = time.monotonic()
    location: CodeLocation | None = None
    try:
        location = describe_in_child(env)
    except Exception as exc:
        # A broken code location is no reason to stop reporting on the instance: the
        # daemon's heartbeat and the runs still page someone.
        logger.error("metrics: the definitions did not load (%s); serving the instance only", exc)
    instance = dg.DagsterInstance.get()
    metrics = InstanceMetrics(
        instance, location, quota_store=location.quota_store if location else None
    )
    if location is None:
        metrics.errors["definitions"] += 1
    if cache_s is None:
        cache_s = location.cache_s if location and location.cache_s is not None else 5.0
    collector = CachedCollector(metrics.read, cache_s=cache_s)
    collector.collect()  # the history is read once, before the first scrape
    logger.info(
        "metrics: definitions and event log read in %.2f s; serving http://%s:%d/metrics%s",
        time.monotonic() - began,
        host,
        port,
        log_fields(cache_s=float(cache_s)),
    )
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, ...
    server, thread = start_http_server(port, addr=host, registry=registry)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
        metrics.close()
        instance.dispose()
    return 0
