"""The shared quota as the exporter reports it: every key's state, read without writing.

The quota stores (``resources/ratelimit/stores.py``, ``postgres.py``) are built to book slots:
opening one creates and migrates its table. The exporter only looks, so it reads the rows
itself (a read-only SQLite connection, a plain SELECT in PostgreSQL) and maps them with the
stores' own ``STATE_COLUMNS`` and ``state_from_row``: a field the stores gain is read the way
they read it. A store written by an older version (a column missing) is read with what it has.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resources.endpoints import endpoint_of, public_url
from resources.metrics.catalog import Sample
from resources.ratelimit.gcra import QuotaState
from resources.ratelimit.learning import in_force
from resources.ratelimit.policy import QuotaPolicy
from resources.ratelimit.stores import STATE_COLUMNS, state_from_row

SQLITE_TABLE = "quota_state"  # SQLiteQuotaStore's table


@dataclass(frozen=True)
class Ceiling:
    """What a source's client paces under before the server says otherwise: its configured
    or documented quota (None: learned from the server alone), and which of the two it is."""

    policy: QuotaPolicy | None
    origin: str  # "configured" or "documented"


@dataclass(frozen=True)
class QuotaReading:
    provider: str
    endpoint: str  # host[:port] of the base URL
    credential: str  # "anonymous" or the stored digest of the key (never the key)
    in_force: QuotaPolicy | None
    origin: str  # configured, documented, stated, estimate; "none" when nothing is known
    paused_until: float
    booked_until: float  # the GCRA theoretical arrival time: booked up to here

    def samples(self, now: float) -> list[Sample]:
        labels = {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "credential": self.credential,
        }
        out = [
            Sample("fin_assets_quota_paused_until_timestamp_seconds", self.paused_until, labels),
            Sample(
                "fin_assets_quota_pause_remaining_seconds",
                max(0.0, self.paused_until - now),
                labels,
            ),
            Sample(
                "fin_assets_quota_booked_ahead_seconds", max(0.0, self.booked_until - now), labels
            ),
        ]
        if self.in_force is not None:
            out += [
                Sample(
                    "fin_assets_quota_limit",
                    self.in_force.limit,
                    {**labels, "origin": self.origin},
                ),
                Sample("fin_assets_quota_window_seconds", self.in_force.window_s, labels),
            ]
        return out


def split_quota_key(key: str) -> tuple[str, str, str]:
    """(provider, base URL, credential) of a key made by ``stores.quota_key``."""
    provider, base_url, credential = key.split("|", 2)
    return provider, base_url, credential


def reading(
    key: str, state: QuotaState, ceilings: Mapping[tuple[str, str], Ceiling]
) -> QuotaReading:
    """One key's state as a reading; ``ceilings`` maps (provider, base URL) to the ceiling the
    sources calling it are configured with."""
    provider, base_url, credential = split_quota_key(key)
    ceiling = ceilings.get((provider, public_url(base_url)), Ceiling(None, "configured"))
    active = in_force(state, ceiling.policy)
    if active is None:
        origin = "none"
    elif ceiling.policy is not None and active == ceiling.policy:
        origin = ceiling.origin
    else:
        origin = state.learning.kind or "stated"
    return QuotaReading(
        provider=provider,
        endpoint=endpoint_of(base_url),
        credential=credential,
        in_force=active,
        origin=origin,
        paused_until=state.paused_until,
        booked_until=state.tat,
    )


class QuotaStoreReader:
    """Reads every key of a quota store (a SQLite file or a ``postgresql://`` URL)."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._pg: Any = None

    def states(self) -> list[tuple[str, QuotaState]]:
        # As MarketApiResource tells them apart (psycopg2 is imported only for PostgreSQL).
        if self.location.startswith(("postgresql://", "postgres://")):
            return self._postgres_states()
        return self._sqlite_states(Path(self.location))

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    @staticmethod
    def _rows(columns: set[str], fetch: Any) -> list[tuple[str, QuotaState]]:
        present = [c for c in STATE_COLUMNS if c in columns]
        rows = fetch(present)
        out = []
        for row in rows:
            values = dict(zip(present, row[1:], strict=True))
            out.append((row[0], state_from_row(tuple(values.get(c) for c in STATE_COLUMNS))))
        return out

    def _sqlite_states(self, path: Path) -> list[tuple[str, QuotaState]]:
        if not path.exists():
            return []  # nothing has called an API yet
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({SQLITE_TABLE})")}
            if not columns:
                return []

            def fetch(present: list[str]) -> list[tuple[Any, ...]]:
                return conn.execute(
                    f"SELECT key, {', '.join(present)} FROM {SQLITE_TABLE}"  # noqa: S608
                ).fetchall()

            return self._rows(columns, fetch)
        finally:
            conn.close()

    def _postgres_states(self) -> list[tuple[str, QuotaState]]:
        import psycopg2
        from psycopg2 import sql

        from resources.ratelimit.postgres import TABLE
        from resources.storage.pg import connect

        if self._pg is None or self._pg.closed:
            self._pg = connect(self.location, application_name="fin-assets metrics")
            self._pg.set_session(readonly=True, autocommit=True)
        try:
            with self._pg.cursor() as cur:
                cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                    (TABLE,),
                )
                columns = {row[0] for row in cur.fetchall()}
                if not columns:
                    return []

                def fetch(present: list[str]) -> list[tuple[Any, ...]]:
                    cur.execute(
                        sql.SQL("SELECT key, {} FROM {}").format(
                            sql.SQL(", ").join(map(sql.Identifier, present)), sql.Identifier(TABLE)
                        )
                    )
                    return list(cur.fetchall())

                return self._rows(columns, fetch)
        except psycopg2.Error:
            self.close()  # a dead connection is opened again at the next reading
            raise

    def readings(self, ceilings: Mapping[tuple[str, str], Ceiling]) -> list[QuotaReading]:
        return [reading(key, state, ceilings) for key, state in self.states()]
