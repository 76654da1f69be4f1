"""The overview page shows what the services compute: the installation's parts, the jobs per status, the activity
charts, the reaction time and the jobs that need a person."""

from __future__ import annotations

import re
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.models import JobBatch, JobEvent, PollingJob
from tests.api.conftest import GUIDE_JOB


def _text(html: str) -> str:
    """The page's words with the tags and spacing taken out, as a reader sees them."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_overview_shows_parts_counts_activity_reaction_and_attention(
    dashboard: FlaskClient, client: FlaskClient, guide_secrets, session: Session, api_settings: Settings
) -> None:
    for name in ("Steady", "Resting", "Broken"):
        assert client.post("/api/jobs", json={**GUIDE_JOB, "name": name}).status_code == 201
    client.post("/api/jobs/2/pause")
    now = utcnow()
    session.execute(update(JobBatch).where(JobBatch.job_id == 1).values(finished_at=now - timedelta(seconds=40)))
    session.execute(
        update(PollingJob)
        .where(PollingJob.id == 3)
        .values(status="failed", last_error="Keboola refused to run configuration 123456", trigger_attempted_at=now)
    )
    session.add_all(
        [
            JobEvent(job_id=1, kind="checked", message="checked", created_at=now - timedelta(minutes=2)),
            JobEvent(job_id=1, kind="batch_status", message="done", created_at=now - timedelta(minutes=1)),
            JobEvent(job_id=1, kind="keboola_started", message="started", created_at=now - timedelta(seconds=28)),
        ]
    )
    session.commit()

    page = dashboard.get("/")
    assert page.status_code == 200
    text = _text(page.text)
    for part in ("Service running", "Database", "Broker", "Workers", "Mode"):
        assert part in text, part
    assert f"Mode {api_settings.mode}" in text
    assert "Jobs (3) active 1 paused 1 triggering 0 completed 0 completed with failures 0 failed 1" in text
    # The charts: the last bar of the hour holds both checks, a tooltip per slice says what it counted.
    assert "2 checks, 1 Keboola start" in page.text and "0 checks, 0 Keboola starts" in page.text
    assert "Reaction time p50 12.0 s" in text and "Reaction time p95 12.0 s" in text
    assert "Keboola jobs started (24 h) 1" in text
    assert "Needs attention 1" in text and "Broken #3" in text and "Keboola error" in text
    assert "Keboola refused to run configuration 123456" in text
    assert "Steady" not in text.split("Needs attention")[1]
