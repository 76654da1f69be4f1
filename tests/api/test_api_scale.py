"""A page of 100,000 jobs: counted and cut in the database, never loaded whole (PostgreSQL only)."""

from __future__ import annotations

import json
import time

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

JOBS = 100_000
PAUSED_EVERY = 10


def bulk_insert_jobs(session: Session) -> None:
    session.execute(
        text(
            """
            INSERT INTO polling_jobs (name, openai_secret_id, keboola_secret_id, keboola_stack_url,
                keboola_component_id, keboola_configuration_id, poll_interval_seconds, status, next_check_at,
                created_at, updated_at)
            SELECT 'bulk job ' || n, 1, 2, 'https://connection.keboola.com', 'kds-team.app-custom-python',
                '123456', 120, CASE WHEN n % :paused_every = 0 THEN 'paused' ELSE 'active' END, now(), now(), now()
            FROM generate_series(1, :jobs) AS n
            """
        ),
        {"jobs": JOBS, "paused_every": PAUSED_EVERY},
    )
    session.execute(
        text(
            """
            INSERT INTO job_batches (job_id, batch_id, status, request_total, request_completed, request_failed,
                created_at, updated_at)
            SELECT id, 'batch_' || id, 'pending', 0, 0, 0, now(), now() FROM polling_jobs
            """
        )
    )
    session.execute(text("ANALYZE polling_jobs, job_batches"))
    session.commit()


def timed_get(client: FlaskClient, url: str) -> tuple[float, object, dict]:
    started = time.perf_counter()
    response = client.get(url)
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.json
    return elapsed_ms, response.json, json.loads(response.headers["X-Pagination"])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_page_of_100000_jobs(
    client: FlaskClient, session: Session, guide_secrets, capsys: pytest.CaptureFixture
) -> None:
    bulk_insert_jobs(session)
    client.get("/api/jobs?page_size=1")  # opens the pool's connection, so the timings below are of the queries

    timings = {}
    timings["first page"], jobs, meta = timed_get(client, "/api/jobs?page_size=100")
    assert meta["total"] == JOBS and meta["total_pages"] == JOBS // 100
    assert [job["id"] for job in jobs] == list(range(1, 101))
    assert jobs[0]["batches"][0]["batch_id"] == "batch_1"

    timings["last page"], jobs, meta = timed_get(client, "/api/jobs?page_size=100&page=1000")
    assert meta["page"] == meta["last_page"] == 1000
    assert [job["id"] for job in jobs] == list(range(99_901, 100_001))

    timings["status filter"], jobs, meta = timed_get(client, "/api/jobs?status=paused&page_size=20&page=3")
    assert meta["total"] == JOBS // PAUSED_EVERY
    assert [job["id"] for job in jobs] == list(range(410, 610, PAUSED_EVERY))

    # By cursor: the last page costs what the first does (no OFFSET, no count).
    deep = client.get("/api/jobs?page_size=100&page=999").headers["X-Next-Cursor"]
    started = time.perf_counter()
    response = client.get(f"/api/jobs?page_size=100&after={deep}")
    timings["last page by cursor"] = (time.perf_counter() - started) * 1000
    assert [job["id"] for job in response.json] == list(range(99_901, 100_001))
    assert "X-Next-Cursor" not in response.headers and "X-Pagination" not in response.headers

    timings["name search"], jobs, meta = timed_get(client, "/api/jobs?q=bulk%20job%2099999")
    assert meta["total"] == 1 and jobs[0]["name"] == "bulk job 99999"

    with capsys.disabled():
        print("\n100,000 jobs on PostgreSQL, one GET /api/jobs each: "
              + ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items()))  # fmt: skip
