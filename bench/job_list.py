"""The job list with 100,000 jobs on PostgreSQL: every page by cursor, and numbered pages, timed on the server.

    python -m bench.job_list [--jobs 100000] [--page-size 100]

It creates a throw-away PostgreSQL database (dropped at the end), fills it with jobs in one statement, and
walks the whole list through the Flask app (routing, token check, queries, JSON), then times numbered
pages spread over the list. A baseline, `GET /api/health`'s cheapest sibling (an empty job list page), is
timed in the same run so figures can be compared across machines.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import psycopg
from sqlalchemy import text

from api import create_app
from teckochecker.config import Settings
from teckochecker.db import make_engine, make_session_factory
from teckochecker.schema import upgrade_to_head
from teckochecker.vault import generate_key

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _fill(url: str, jobs: int) -> None:
    sessions = make_session_factory(make_engine(url))
    with sessions() as session, session.begin():
        session.execute(
            text(
                "INSERT INTO secrets (name, type, encrypted_value, created_at, updated_at) VALUES "
                "('openai', 'openai', 'x', now(), now()), ('keboola', 'keboola', 'y', now(), now())"
            )
        )
        session.execute(
            text(
                """
                INSERT INTO polling_jobs (name, openai_secret_id, keboola_secret_id, keboola_stack_url,
                    keboola_component_id, keboola_configuration_id, poll_interval_seconds, status, next_check_at,
                    created_at, updated_at)
                SELECT 'job ' || n, 1, 2, 'https://connection.keboola.com', 'c', '1', 120, 'active',
                    now() + n * interval '1 second', now() + n * interval '1 millisecond', now()
                FROM generate_series(1, :jobs) AS n
                """
            ),
            {"jobs": jobs},
        )
        session.execute(
            text(
                "INSERT INTO job_batches (job_id, batch_id, status, request_total, request_completed, request_failed,"
                " created_at, updated_at) SELECT id, 'batch_' || id, 'in_progress', 100, 10, 0, now(), now()"
                " FROM polling_jobs"
            )
        )
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def _timed(client, url: str) -> tuple[float, object]:
    started = time.perf_counter()
    response = client.get(url, headers=HEADERS)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.get_data(as_text=True)
    return elapsed, response


def _summary(name: str, timings: list[float], baseline: float) -> str:
    timings = sorted(timings)
    p99 = timings[min(len(timings) - 1, round(0.99 * (len(timings) - 1)))]
    median = statistics.median(timings)
    return f"{name:<34} {len(timings):>5} pages  median {median:6.1f} ms  p99 {p99:6.1f} ms  ({median / baseline:.1f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=100)
    options = parser.parse_args()
    name = f"bench_job_list_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade_to_head(url)
        _fill(url, options.jobs)
        client = create_app(Settings(database_url=url, secret_key=generate_key(), api_token=TOKEN)).test_client()
        size = options.page_size
        baseline = statistics.median(_timed(client, "/api/jobs?status=failed&after=")[0] for _ in range(50))
        for sort in ("created", "next_check"):
            cursor_times, seen, after = [], 0, ""
            while True:
                elapsed, response = _timed(client, f"/api/jobs?sort={sort}&page_size={size}&after={after}")
                cursor_times.append(elapsed)
                seen += len(response.json)
                after = response.headers.get("X-Next-Cursor")
                if after is None:
                    break
            assert seen == options.jobs, seen
            print(_summary(f"by cursor, sort={sort}", cursor_times, baseline))
        pages = options.jobs // size
        numbered = [_timed(client, f"/api/jobs?page_size={size}&page={page}")[0] for page in range(1, pages + 1, 20)]
        print(_summary("numbered pages (every 20th)", numbered, baseline))
        print(f"baseline (an empty page of failed jobs, by cursor): median {baseline:.1f} ms")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
