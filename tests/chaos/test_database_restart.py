"""PostgreSQL stopped while a trigger waits for Keboola's answer: the worker waits for the database and
finishes the trigger under its own lease, instead of failing the task and leaving the job until its lease
ends and another run finds the Keboola job by search."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from bench.chaos.cluster import Cluster
from bench.chaos.servers import new_workdir
from teckochecker.engine.scheduling import START_LEASE

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    installation = Cluster(new_workdir("chaos-database-restart-"))
    try:
        installation.start()
        installation.control.configure(job_duration=1)
        installation.add_secrets()
        yield installation
    finally:
        installation.close()
        shutil.rmtree(installation.workdir, ignore_errors=True)


def _status(cluster: Cluster, job_id: int) -> str | None:
    response = cluster.api_call("GET", f"/api/jobs/{job_id}")
    return response.json()["status"] if response.status_code == 200 else None


def test_a_trigger_cut_off_from_the_database_finishes_when_it_returns_not_when_its_lease_ends(
    cluster: Cluster,
) -> None:
    control = cluster.control
    # Keboola creates the job, then takes 4 s to answer: the database goes away in between.
    control.add_fault("/jobs", method="POST", delay=4.0, after=True)
    control.create_batch(batch_id="batch_restart", final_status="completed", duration=0)
    job_id = cluster.create_job(["batch_restart"], configuration="restart", interval=2)
    cluster.start_worker("w1")
    cluster.start_beat("beat1")
    cluster.wait_until(lambda: len(control.keboola_jobs()) == 1, 60, "the trigger to reach Keboola")

    cluster.postgres.stop_immediately()
    time.sleep(6)
    cluster.postgres.restart()
    cluster.wait_until(lambda: _status(cluster, job_id) == "completed", START_LEASE.total_seconds(), "completion")

    assert [job["body"]["config"] for job in control.keboola_jobs()] == ["restart"], "started once"
    # The task itself waited and ran again (before the fix it failed and left the job to its lease).
    log = cluster.log_tail("w1", 200_000)
    assert "the database is unreachable" in log and "running again in" in log
