"""The job pages' parts that need a job in a given state: the retry action, the Keboola link, the list sorted by
next check, the secret pickers, and times shown in UTC with the relative form beside them."""

from __future__ import annotations

import re
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from teckochecker.db import utcnow
from teckochecker.models import JobBatch, PollingJob
from tests.api.conftest import GUIDE_JOB
from tests.api.web.conftest import post_form


def _set_job(session: Session, job_id: int, **values: object) -> None:
    session.execute(update(PollingJob).where(PollingJob.id == job_id).values(**values))
    session.commit()


def _failed_trigger(client: FlaskClient, session: Session) -> None:
    """A job whose batches all finished and whose Keboola job ran and failed."""
    assert client.post("/api/jobs", json=GUIDE_JOB).status_code == 201
    session.execute(update(JobBatch).where(JobBatch.job_id == 1).values(status="completed", finished_at=utcnow()))
    _set_job(
        session, 1, status="failed", keboola_job_id="987654", keboola_job_status="error", keboola_project_id="4242",
        last_error="Keboola job 987654 finished with status error", completed_at=utcnow(),
    )  # fmt: skip


def test_retry_asks_for_confirmation_and_re_arms_the_trigger(
    dashboard: FlaskClient, client: FlaskClient, guide_secrets, session: Session
) -> None:
    _failed_trigger(client, session)
    page = dashboard.get("/jobs/1").text
    assert "Retry trigger…" in page and "Yes, retry the trigger" in page  # behind a confirmation
    retried = post_form(dashboard, "/jobs/1", "/jobs/1/retry")
    assert retried.status_code == 302 and retried.headers["Location"] == "/jobs/1"
    assert "will start its Keboola job again" in dashboard.get("/jobs/1").text
    job = client.get("/api/jobs/1").json
    assert job["status"] == "triggering" and job["keboola_job_id"] is None

    again = post_form(dashboard, "/jobs/1", "/jobs/1/retry")
    assert again.status_code == 302 and "only a failed job can be retried" in dashboard.get("/jobs/1").text


def test_the_keboola_job_links_to_its_page_in_its_project(
    dashboard: FlaskClient, client: FlaskClient, guide_secrets, session: Session
) -> None:
    _failed_trigger(client, session)
    link = re.search(r'<a href="([^"]+)"[^>]*id="keboola-job-link">Open job 987654</a>', dashboard.get("/jobs/1").text)
    assert link and link.group(1) == f"{GUIDE_JOB['keboola_stack_url']}/admin/projects/4242/queue/987654"
    assert 'rel="noopener noreferrer" target="_blank"' in dashboard.get("/jobs/1").text

    _set_job(session, 1, keboola_project_id=None)  # a job started before the project was recorded
    page = dashboard.get("/jobs/1").text
    assert "keboola-job-link" not in page and "Keboola has not yet said which project the job is in." in page


def test_the_list_sorts_by_next_check_with_unscheduled_jobs_last(
    dashboard: FlaskClient, client: FlaskClient, guide_secrets, session: Session
) -> None:
    for index, name in enumerate(("Later", "Soonest", "Unscheduled", "Middle")):
        client.post("/api/jobs", json={**GUIDE_JOB, "name": name, "batch_id": f"batch_sort{index}"})
    now = utcnow()
    for job_id, due in (
        (1, now + timedelta(minutes=30)),
        (2, now + timedelta(minutes=1)),
        (4, now + timedelta(minutes=5)),
    ):
        _set_job(session, job_id, next_check_at=due)
    client.post("/api/jobs/3/pause")
    page = dashboard.get("/jobs?sort=next_check").text
    names = re.findall(r'class="job-name">([^<]+)</a>', page)
    assert names == ["Soonest", "Middle", "Later", "Unscheduled"]
    assert '<option value="next_check" selected>' in page
    newest_first = re.findall(r'class="job-name">([^<]+)</a>', dashboard.get("/jobs").text)
    assert newest_first == ["Middle", "Unscheduled", "Soonest", "Later"]


def test_the_secret_pickers_offer_only_secrets_of_their_type(dashboard: FlaskClient, client: FlaskClient) -> None:
    for name, kind, value in (
        ("openai-a", "openai", "sk-a"),
        ("keboola-a", "keboola", "kbc-a"),
        ("openai-b", "openai", "sk-b"),
        ("team-slack", "notification", "json://127.0.0.1:9/hook"),
    ):
        assert client.post("/api/admin/secrets", json={"name": name, "type": kind, "value": value}).status_code == 201
    page = dashboard.get("/jobs/new").text

    def offered(select_id: str) -> list[str]:
        match = re.search(rf'<select id="{select_id}".*?</select>', page, re.S)
        assert match, select_id
        return re.findall(r'<option value="\d+"[^>]*>([^<]+)</option>', match.group(0))

    assert offered("openai_secret") == ["openai-a", "openai-b"]
    assert offered("keboola_secret") == ["keboola-a"]


def test_the_job_page_shows_utc_times_with_the_relative_form_beside(
    dashboard: FlaskClient, client: FlaskClient, guide_secrets, session: Session
) -> None:
    client.post("/api/jobs", json=GUIDE_JOB)
    due = utcnow().replace(microsecond=0) + timedelta(minutes=5)
    _set_job(session, 1, next_check_at=due)
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dashboard.get("/jobs/1").text))
    assert re.search(rf"Next check {due:%Y-%m-%d %H:%M:%S} UTC \( in [45] min \)", page), page
    assert re.search(r"Created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \( (now|\d+ s ago) \)", page)
