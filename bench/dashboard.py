"""Dashboard page speed: the jobs page's first page with 100,000 jobs in PostgreSQL, rendered on the server.

Run by hand from the repository root (not a test):

    python -m bench.dashboard                      # 100,000 jobs, 30 timed requests per page
    python -m bench.dashboard --jobs 20000 --requests 50

It creates a throw-away PostgreSQL database (bench_dashboard_<hex>) on TECKOCHECKER_TEST_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, bulk-inserts the jobs (1–3 batches each, spread
over the statuses, creation and next-check times), signs in with Flask's test client, and times full requests
(routing, session, queries, template) of each page: median and p95 over the timed requests, after warm-ups.
The baseline is a page that reads no jobs (Keboola setup), so the ratio is comparable across machines.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402
from sqlalchemy import insert, select, text  # noqa: E402

from api import create_app  # noqa: E402
from api.database import api_state  # noqa: E402
from teckochecker.config import Settings  # noqa: E402
from teckochecker.db import make_engine, utcnow  # noqa: E402
from teckochecker.models import JobBatch, JobStatus, PollingJob, Secret  # noqa: E402
from teckochecker.schema import upgrade_to_head  # noqa: E402
from teckochecker.vault import Vault, generate_key  # noqa: E402

ADMIN_URL = os.environ.get("TECKOCHECKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "bench-dashboard-token"
CHUNK = 5000
WARM_UPS = 3
STATUS_WEIGHTS = {
    JobStatus.ACTIVE: 70,
    JobStatus.PAUSED: 5,
    JobStatus.COMPLETED: 15,
    JobStatus.COMPLETED_WITH_FAILURES: 5,
    JobStatus.FAILED: 5,
}
PAGES = {
    "jobs, first page (newest first)": "/jobs",
    "jobs, sorted by next check": "/jobs?sort=next_check",
    "jobs, status filter (paused)": "/jobs?status=paused",
    "jobs, search by batch id": "/jobs?q=batch_b0099999",
    "jobs, page 1000": "/jobs?page=1000",
    "overview": "/",
    "API GET /api/jobs (page of 50)": "/api/jobs?page_size=50",
    "baseline: Keboola setup (no job read)": "/keboola-setup",
}


def fill(database_url: str, jobs: int, settings: Settings) -> None:
    engine = make_engine(database_url)
    vault = Vault(settings.secret_key)
    rng = random.Random(13)
    now = utcnow()
    statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    with engine.begin() as connection:
        secret_ids = [
            connection.execute(
                insert(Secret)
                .values(name=name, type=kind, encrypted_value=vault.encrypt("x"), created_at=now, updated_at=now)
                .returning(Secret.id)
            ).scalar_one()
            for name, kind in (("openai", "openai"), ("keboola", "keboola"))
        ]
    started = time.monotonic()
    for first in range(0, jobs, CHUNK):
        rows, batches = [], []
        for number in range(first, min(first + CHUNK, jobs)):
            status = rng.choices(statuses, weights)[0]
            created = now - timedelta(seconds=jobs - number)
            running = status == JobStatus.ACTIVE
            rows.append({
                "name": f"Nightly job {number:06}", "openai_secret_id": secret_ids[0],
                "keboola_secret_id": secret_ids[1], "keboola_stack_url": "https://connection.keboola.com",
                "keboola_component_id": "kds-team.app-custom-python", "keboola_configuration_id": str(number),
                "poll_interval_seconds": 120, "status": status.value, "created_at": created, "updated_at": created,
                "next_check_at": now + timedelta(seconds=rng.randint(0, 120)) if running else None,
                "last_check_at": now - timedelta(seconds=rng.randint(0, 120)),
            })  # fmt: skip
        with engine.begin() as connection:
            ids = connection.execute(insert(PollingJob).returning(PollingJob.id), rows).scalars().all()
            for job_id, row in zip(ids, rows, strict=True):
                finished = row["status"] != JobStatus.ACTIVE.value
                for letter in "abc"[: rng.randint(1, 3)]:
                    batches.append({
                        "job_id": job_id, "batch_id": f"batch_{letter}{job_id:07}",
                        "status": "completed" if finished else "in_progress", "request_total": 1000,
                        "request_completed": 1000 if finished else rng.randint(0, 999), "request_failed": 0,
                        "created_at": row["created_at"], "updated_at": row["created_at"],
                    })  # fmt: skip
            connection.execute(insert(JobBatch), batches)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
        count = connection.execute(select(text("count(*)")).select_from(PollingJob)).scalar_one()
    engine.dispose()
    print(f"\r  inserted {count:,} jobs in {time.monotonic() - started:.0f} s")


def measure(client, path: str, requests: int) -> tuple[float, float]:
    for _ in range(WARM_UPS):
        assert client.get(path).status_code == 200, path
    timings = []
    for _ in range(requests):
        begun = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - begun) * 1000)
        assert response.status_code == 200, path
    timings.sort()
    return statistics.median(timings), timings[max(0, round(0.95 * len(timings)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    arguments = parser.parse_args()

    name = f"bench_dashboard_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = f"{ADMIN_URL.rpartition('/')[0]}/{name}"
    try:
        upgrade_to_head(database_url)
        settings = Settings(database_url=database_url, secret_key=generate_key(), api_token=TOKEN)
        print(f"Filling {name} with {arguments.jobs:,} jobs…")
        fill(database_url, arguments.jobs, settings)
        app = create_app(settings)
        client = app.test_client()
        page = client.get("/sign-in").text
        csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        client.post("/sign-in", data={"csrf_token": csrf, "token": TOKEN})
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        results = {label: measure(client, path, arguments.requests) for label, path in PAGES.items()}
        baseline = results["baseline: Keboola setup (no job read)"][0]
        print(f"\n{arguments.jobs:,} jobs, {arguments.requests} timed requests each (after {WARM_UPS} warm-ups):\n")
        print("| Page | median ms | p95 ms | median / baseline |\n|---|---:|---:|---:|")
        for label, (median, p95) in results.items():
            print(f"| {label} | {median:.1f} | {p95:.1f} | {median / baseline:.1f} |")
        with app.app_context():
            api_state().engine.dispose()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
