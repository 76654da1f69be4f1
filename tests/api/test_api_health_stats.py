"""`/api/health` names what is failing; `/api/stats` counts without loading rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.models import JobBatch, JobEvent, JobStatus, PollingJob
from teckochecker.services.workers import record_heartbeat
from tests.api.conftest import GUIDE_JOB
from tests.conftest import redis_test_url

REDIS_URL = redis_test_url(0)
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


def test_healthy(anonymous: FlaskClient) -> None:
    response = anonymous.get("/api/health")
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "failing": [],
        "checks": {
            "database": {"status": "ok", "detail": "SELECT 1 answered"},
            "broker": {"status": "ok", "detail": "embedded broker (no REDIS_URL): no server needed"},
            "workers": {"status": "unknown", "detail": "no worker has reported yet"},
        },
    }


def test_workers_are_seen_through_their_heartbeats(anonymous: FlaskClient, session) -> None:
    record_heartbeat(session, "celery@worker-1", utcnow() - timedelta(seconds=5))
    record_heartbeat(session, "celery@worker-2", utcnow() - timedelta(minutes=5))
    session.commit()
    response = anonymous.get("/api/health")
    assert response.status_code == 200
    assert response.json["checks"]["workers"] == {"status": "ok", "detail": "1 worker(s) reported in the last 60 s"}


def test_silent_workers_make_it_unavailable(anonymous: FlaskClient, session) -> None:
    record_heartbeat(session, "celery@worker-1", utcnow() - timedelta(minutes=2))
    session.commit()
    response = anonymous.get("/api/health")
    assert response.status_code == 503
    assert response.json["failing"] == ["workers"]


def test_redis_is_pinged_when_configured(app_factory: Any, settings: Settings) -> None:
    response = app_factory(settings.with_overrides(redis_url=REDIS_URL)).test_client().get("/api/health")
    assert response.status_code == 200
    assert response.json["checks"]["broker"] == {"status": "ok", "detail": "Redis answers PING"}


def test_a_failing_broker_makes_it_unavailable(app_factory: Any, settings: Settings) -> None:
    response = app_factory(settings.with_overrides(redis_url=UNREACHABLE_REDIS_URL)).test_client().get("/api/health")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable" and response.json["failing"] == ["broker"]
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_a_failing_database_makes_it_unavailable(app_factory: Any, tmp_path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}")
    response = app_factory(settings).test_client().get("/api/health")
    assert response.status_code == 503
    assert response.json["failing"] == ["database"]
    assert response.json["checks"]["database"]["status"] == "failing"
    assert "missing-dir" not in response.get_data(as_text=True)


def test_stats_count_jobs_batches_secrets_and_the_last_hour(
    client: FlaskClient, session: Session, guide_secrets
) -> None:
    first = client.post("/api/jobs", json=GUIDE_JOB).json["id"]
    body = {key: value for key, value in GUIDE_JOB.items() if key != "batch_id"}
    second_id = client.post("/api/jobs", json={**body, "batch_ids": ["batch_a", "batch_b"]}).json["id"]
    client.post(f"/api/jobs/{second_id}/pause")

    session.get(PollingJob, first).batches[0].status = "completed"
    session.add(JobBatch(job_id=second_id, batch_id="batch_c", status="in_progress"))
    now = utcnow()
    session.add_all(
        [
            JobEvent(job_id=first, kind="checked", message="m", created_at=now - timedelta(minutes=5)),
            JobEvent(job_id=first, kind="batch_status", message="m", created_at=now - timedelta(minutes=59)),
            JobEvent(job_id=first, kind="checked", message="m", created_at=now - timedelta(minutes=61)),
            JobEvent(job_id=first, kind="keboola_started", message="m", created_at=now - timedelta(minutes=1)),
        ]
    )
    session.commit()

    stats = client.get("/api/stats").json
    assert stats["jobs"] == {
        "total": 2,
        "by_status": {status.value: 0 for status in JobStatus} | {"active": 1, "paused": 1},
    }
    assert stats["batches"] == {"total": 4, "by_status": {"completed": 1, "in_progress": 1, "pending": 2}}
    assert stats["secrets"] == 2
    assert stats["last_hour"] == {"checks": 2, "keboola_triggers": 1}
    assert stats["uptime_seconds"] >= 0 and stats["started_at"].endswith("+00:00")
