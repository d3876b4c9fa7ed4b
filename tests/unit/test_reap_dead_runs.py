"""A run whose worker is gone is failed (``reap_dead_runs``), but never a retry whose worker
tag is still the one Dagster copied from the run it retries."""

from __future__ import annotations

import socket

import dagster as dg

from fin_assets.dagster_internals.runs import WORKER_TAG, reap_dead_runs

DEAD = f"{socket.gethostname()}:4194000:1"  # no such process on this host


def test_a_dead_worker_fails_its_run_but_not_the_retry_that_inherited_its_tag() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        killed = instance.add_run(
            dg.DagsterRun(
                job_name="bars_hourly_job",
                status=dg.DagsterRunStatus.FAILURE,
                tags={WORKER_TAG: DEAD},
            )
        )
        retry = instance.add_run(
            dg.DagsterRun(
                job_name="bars_hourly_job",
                status=dg.DagsterRunStatus.STARTING,
                tags={WORKER_TAG: DEAD, "dagster/parent_run_id": killed.run_id},
            )
        )
        orphan = instance.add_run(
            dg.DagsterRun(
                job_name="bars_hourly_job",
                status=dg.DagsterRunStatus.STARTED,
                tags={WORKER_TAG: DEAD},
            )
        )
        assert reap_dead_runs(instance, grace_s=0.0) == [orphan.run_id]
        failed = instance.get_run_by_id(orphan.run_id)
        assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
        waiting = instance.get_run_by_id(retry.run_id)
        assert waiting is not None and waiting.status == dg.DagsterRunStatus.STARTING
