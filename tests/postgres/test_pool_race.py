"""Two runs that start at the same moment on the PostgreSQL instance both get their pool.

A step's first claim initializes its pool's default limit. On PostgreSQL the second insert of
the row aborts its transaction, and Dagster's fallback update, in the same transaction, then
fails too: the run failed with ``UniqueViolation`` then ``InFailedSqlTransaction`` (seen with
both sources' backfills started at once, tests/e2e/test_celery.py). ``prepare_pools`` gives
the pools their rows at run start and takes the loser's error for the row just written."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pytest

from fin_assets.dagster_internals.runs import prepare_pools
from tests.postgres.conftest import postgres_instance_env

POOL = "simulator:public@127.0.0.1:8765"


def limits(instance: dg.DagsterInstance) -> dict[str, int | None]:
    return {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}


def test_the_run_that_loses_the_race_for_a_pool_row_still_starts(
    fresh_database: str, tmp_path: Path
) -> None:
    env = postgres_instance_env(fresh_database, tmp_path / "home")
    with mock.patch.dict(os.environ, env), dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        default = instance.global_op_concurrency_default_limit
        assert default is not None and POOL not in limits(instance)

        # The other run wrote the row after this one looked: Dagster's own initialization,
        # as a step's claim runs it, fails on PostgreSQL.
        storage.initialize_concurrency_limit_to_default(POOL)
        with pytest.raises(Exception, match="InFailedSqlTransaction|UniqueViolation"):
            storage.initialize_concurrency_limit_to_default(POOL)

        # prepare_pools, having looked before the row existed (its first view is stale):
        real = storage.get_pool_limits
        views: list[Sequence[Any]] = []

        def stale_then_real() -> Sequence[Any]:
            views.append(real() if views else [])
            return views[-1]

        with mock.patch.object(storage, "get_pool_limits", stale_then_real):
            prepare_pools(instance, [POOL, None])
        assert len(views) == 2  # it tried, lost, and looked again
        assert limits(instance) == {POOL: default}
        prepare_pools(instance, [POOL])  # and a run starting later changes nothing
        assert limits(instance) == {POOL: default}
