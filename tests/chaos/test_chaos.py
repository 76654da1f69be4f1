"""The chaos suite's CI-sized run: 100 SIGKILLs, a Redis and a PostgreSQL restart, three ambiguous Keboola
failures and a skewed worker and beat, all in one run of a few minutes against real processes.

The long runs (1,000 kills, every fault on its own and mixed) are `python -m bench.chaos`; docs/RELIABILITY.md
keeps their figures.
"""

from __future__ import annotations

import pytest

from bench.chaos.scenarios import Plan, run

pytestmark = pytest.mark.slow

CI_PLAN = Plan(
    "ci",
    jobs=60,
    interval=2,
    seconds=150,
    waves=6,
    kills=100,
    redis_restarts=1,
    postgres_restarts=1,
    ambiguous_each=1,
    skewed_workers=1,
    settle_seconds=240,
)


def test_every_polling_job_starts_exactly_one_keboola_job_through_kills_restarts_skew_and_ambiguity() -> None:
    report = run(CI_PLAN)
    print(report.line())

    assert report.faults == {
        "SIGKILL": 100,
        "Redis killed (no persistence)": 1,
        "PostgreSQL stopped immediately": 1,
        "Keboola: 502 after creating": 1,
        "Keboola: connection closed after creating": 1,
        "Keboola: timeout after creating": 1,
        "worker and beat +30 s off": 1,
    }
    # Each ambiguous failure really happened: Keboola created the job and the engine never saw the answer.
    fired = report.details["simulator_faults_fired"]
    assert fired["POST /jobs 502 after handling"] == 1
    assert fired["POST /jobs drop after handling"] == 1
    assert fired["POST /jobs 504 after handling"] == 1
    assert report.duplicates == 0, report.details["duplicated_configurations"]
    assert report.keboola_jobs == report.jobs == CI_PLAN.jobs
    assert report.lost == 0, report.line()
    # Every fault was followed by every unfinished job moving on again.
    assert report.details["faults_without_recovery"] == 0
    details = report.details
    assert details["fault_recovery_max"] is not None
    assert details["fault_recovery_max"] < details["stuck_threshold_seconds"]
    # Each lost answer was found and recorded; a kill of the worker that retried it can add one lease.
    assert details["ambiguous_recovery_max"] is not None
    assert details["ambiguous_recovery_max"] < details["ambiguous_recovery_bound_seconds"]
    # While PostgreSQL was down the API answered, every time, 503 with its JSON error naming the database.
    probes = report.details["api_while_database_down"]
    assert probes["probes"] >= 3 and probes["503_with_json_error"] == probes["probes"]
    # The storm hit work in flight, not an idle installation.
    assert report.details["kill_moments"].get("mid-check", 0) >= 10
