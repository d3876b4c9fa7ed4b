"""The pure parts: an asset's lag, and the counters summed over the event log (what each step
spent on the API, rows written, attempts and their outcomes)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg

from fin_assets.lib.assets.attempts import ATTEMPT_OUTCOME
from fin_assets.tools.metrics.location import CodeLocation, source_of
from resources.metrics.catalog import Sample

logger = logging.getLogger("fin_assets.tools.metrics")


# -- the pure parts --------------------------------------------------------------------------------
def lag_seconds(
    partitions: dg.TimeWindowPartitionsDefinition, newest: str | None, now: datetime
) -> float:
    """Seconds since the first closed window after ``newest`` (the newest partition landed)
    closed; 0 when the newest closed window has landed (or none has closed)."""
    with dg.partition_loading_context(effective_dt=now):
        last_closed = partitions.get_last_partition_key()
        if last_closed is None:
            return 0.0
        # Time partition keys ("2026-01-05-13:00", "2026-01-05") sort as their windows do.
        if newest is not None and newest >= last_closed:
            return 0.0
        first_missing = (
            partitions.get_next_partition_key(newest)
            if newest is not None
            else partitions.get_first_partition_key()
        )
        if first_missing is None:
            return 0.0
        closed = partitions.time_window_for_partition_key(first_missing).end
    return max(0.0, (now - closed).total_seconds())


def _number(metadata: Mapping[str, Any], name: str) -> float:
    value = metadata.get(name)
    value = getattr(value, "value", value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _text(metadata: Mapping[str, Any], name: str) -> str | None:
    value = metadata.get(name)
    value = getattr(value, "value", value)
    return str(value) if value is not None else None


@dataclass
class ApiTotals:
    requests: float = 0.0
    throttled: float = 0.0  # ClientStats.throttled: 429s, in-body throttles and bans
    banned: float = 0.0  # of which bans (418)
    retries: float = 0.0
    wait_s: float = 0.0
    bytes: float = 0.0

    def add(self, metadata: Mapping[str, Any]) -> None:
        self.requests += _number(metadata, "requests")
        self.throttled += _number(metadata, "throttled_429")
        self.banned += _number(metadata, "banned_418")
        self.retries += _number(metadata, "retries")
        self.wait_s += _number(metadata, "seconds_waited")
        self.bytes += _number(metadata, "bytes_received")


@dataclass
class ArchiveTotals:
    downloaded: float = 0.0
    reused: float = 0.0
    missing: float = 0.0
    bytes: float = 0.0
    checksum_failures: float = 0.0

    def add(self, metadata: Mapping[str, Any]) -> None:
        self.downloaded += _number(metadata, "archive_files_downloaded")
        self.reused += _number(metadata, "archive_files_reused")
        self.missing += _number(metadata, "archive_files_missing")
        self.bytes += _number(metadata, "archive_bytes_downloaded")
        self.checksum_failures += _number(metadata, "archive_checksum_failures")


@dataclass
class EventTotals:
    """What the event log has said so far, summed (the counters), and the cursors."""

    materialization_cursor: int = 0
    observation_cursor: int = 0
    api: dict[tuple[str, str], ApiTotals] = field(default_factory=dict)  # (source, provider)
    archive: dict[tuple[str, str], ArchiveTotals] = field(default_factory=dict)
    attempts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    materializations: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Summed as floats (metadata figures are read by ``_number``): a Counter is typed for ints.
    rows: dict[tuple[str, str], float] = field(default_factory=dict)
    newest_partition: dict[dg.AssetKey, str] = field(default_factory=dict)
    last_materialized: dict[dg.AssetKey, float] = field(default_factory=dict)

    def materialized(self, record: dg.EventLogRecord) -> None:
        entry = record.event_log_entry
        materialization = entry.asset_materialization
        if materialization is None:
            return
        key, partition = materialization.asset_key, materialization.partition
        metadata = materialization.metadata
        source = _text(metadata, "source") or source_of(key)
        asset = key.to_user_string()
        self.materializations[source, asset] += 1
        self.last_materialized[key] = max(self.last_materialized.get(key, 0.0), entry.timestamp)
        if partition is not None and partition > self.newest_partition.get(key, ""):
            self.newest_partition[key] = partition
        # A range run records one set of figures for its whole step, on every partition: count
        # it once, on the step's last partition.
        last = _text(metadata, "last_partition")
        if last is not None and partition is not None and partition != last:
            return
        self.attempts[source, asset, "materialized"] += 1
        self.rows[source, asset] = self.rows.get((source, asset), 0.0) + _number(metadata, "rows")
        if "requests" in metadata:
            provider = _text(metadata, "provider") or "unknown"
            self.api.setdefault((source, provider), ApiTotals()).add(metadata)
        self._archived(source, metadata)

    def _archived(self, source: str, metadata: Mapping[str, Any]) -> None:
        if "archive_files_planned" in metadata:
            provider = _text(metadata, "provider") or "unknown"
            self.archive.setdefault((source, provider), ArchiveTotals()).add(metadata)

    def observed(self, record: dg.EventLogRecord) -> None:
        observation = record.event_log_entry.asset_observation
        if observation is None:
            return
        metadata = observation.metadata
        outcome = _text(metadata, ATTEMPT_OUTCOME)
        if outcome is None:
            return  # not an attempt's spending
        key = observation.asset_key
        source = _text(metadata, "source") or source_of(key)
        self.attempts[source, key.to_user_string(), outcome] += 1
        provider = _text(metadata, "provider") or "unknown"
        self.api.setdefault((source, provider), ApiTotals()).add(metadata)
        self._archived(source, metadata)

    def samples(self, location: CodeLocation) -> list[Sample]:
        out = []
        for (source, provider), api in sorted(self.api.items()):
            labels = {"source": source, "provider": provider}
            out += [
                Sample("fin_assets_api_requests_total", api.requests, labels),
                Sample(
                    "fin_assets_api_throttled_total",
                    api.throttled - api.banned,
                    {**labels, "reason": "rate_limited"},
                ),
                Sample(
                    "fin_assets_api_throttled_total", api.banned, {**labels, "reason": "banned"}
                ),
                Sample("fin_assets_api_retries_total", api.retries, labels),
                Sample("fin_assets_api_wait_seconds_total", api.wait_s, labels),
                Sample("fin_assets_api_received_bytes_total", api.bytes, labels),
            ]
        for (source, provider), files in sorted(self.archive.items()):
            labels = {"source": source, "provider": provider}
            out += [
                *(
                    Sample("fin_assets_archive_files_total", value, {**labels, "result": result})
                    for result, value in (
                        ("downloaded", files.downloaded),
                        ("reused", files.reused),
                        ("missing", files.missing),
                    )
                ),
                Sample("fin_assets_archive_downloaded_bytes_total", files.bytes, labels),
                Sample(
                    "fin_assets_archive_checksum_failures_total", files.checksum_failures, labels
                ),
            ]
        for (source, asset, outcome), count in sorted(self.attempts.items()):
            out.append(
                Sample(
                    "fin_assets_step_attempts_total",
                    count,
                    {"source": source, "asset": asset, "outcome": outcome},
                )
            )
        # Every asset of the code location has its counters from the start, at 0 if need be,
        # so that rate() and increase() see the first materialization.
        known = {(a.source, a.key.to_user_string()) for a in location.assets}
        for source, asset in sorted(known | set(self.materializations)):
            labels = {"source": source, "asset": asset}
            out += [
                Sample(
                    "fin_assets_asset_materializations_total",
                    self.materializations[source, asset],
                    labels,
                ),
                Sample("fin_assets_asset_rows_total", self.rows.get((source, asset), 0.0), labels),
            ]
        return out


# -- reading the instance ------------------------------------------------------------------------
