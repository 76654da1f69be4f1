"""One job shape: the API's JobSchema and the CLI's `job show --json` (presenters.job_view) print the same JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from api.schemas import JobSchema
from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.models import JobStatus, PollingJob
from teckochecker.presenters import job_view
from teckochecker.services.jobs import JobDraft, create_job, get_job, pause_job
from teckochecker.services.secrets import add_secret
from teckochecker.vault import Vault


def _checked(job: PollingJob, session: Session) -> None:
    now = utcnow()
    first = job.batches[0]
    first.status, first.request_total, first.request_completed, first.request_failed = "in_progress", 500, 120, 3
    job.last_check_at, job.next_check_at = now, now + timedelta(seconds=120)


def _paused(job: PollingJob, session: Session) -> None:
    _checked(job, session)
    pause_job(session, job)


def _finish_batches(job: PollingJob) -> None:
    done = utcnow()
    for batch, status in zip(job.batches, ("completed", "expired"), strict=True):
        batch.status, batch.finished_at = status, done
        batch.request_total, batch.request_completed, batch.request_failed = 10, 9, 1
        batch.output_file_id, batch.error_file_id = f"file-out-{batch.batch_id}", f"file-err-{batch.batch_id}"


def _triggering(job: PollingJob, session: Session) -> None:
    _finish_batches(job)
    job.status, job.next_check_at = JobStatus.TRIGGERING.value, utcnow()


def _completed(job: PollingJob, session: Session) -> None:
    _finish_batches(job)
    job.status, job.completed_at, job.next_check_at = JobStatus.COMPLETED_WITH_FAILURES.value, utcnow(), None
    job.keboola_job_id, job.keboola_job_status = "1000001", "success"


def _failed(job: PollingJob, session: Session) -> None:
    _finish_batches(job)
    job.status, job.completed_at, job.next_check_at = JobStatus.FAILED.value, utcnow(), None
    job.keboola_job_id, job.keboola_job_status = "1000002", "error"
    job.last_error = "Keboola job 1000002 finished with status error"


def _new(job: PollingJob, session: Session) -> None:
    """As created: batches pending, nothing checked yet."""


STATES: dict[str, Callable[[PollingJob, Session], None]] = {
    "new": _new,
    "checked": _checked,
    "paused": _paused,
    "triggering": _triggering,
    "completed": _completed,
    "failed": _failed,
}


@pytest.mark.parametrize("state", STATES)
def test_the_api_and_the_cli_print_a_job_alike(state: str, session: Session, settings: Settings, vault: Vault) -> None:
    add_secret(session, vault, name="openai-prod", type="openai", value="sk-shape")
    add_secret(session, vault, name="keboola-prod", type="keboola", value="kbc-shape")
    draft = JobDraft(
        name="Shape job",
        batch_ids=["batch_one", "batch_two"],
        openai_secret="openai-prod",
        keboola_secret="keboola-prod",
        keboola_stack_url="https://connection.keboola.com",
        keboola_component_id="kds-team.app-custom-python",
        keboola_configuration_id="123456",
    )
    job = create_job(session, settings, draft)
    STATES[state](job, session)
    session.commit()
    session.expire_all()

    # Read back from the database, as `job show` and `GET /api/jobs/{id}` do.
    job = get_job(session, job.id)
    cli = json.loads(json.dumps(job_view(job)))
    api = json.loads(json.dumps(JobSchema().dump(job)))
    assert api == cli
    assert cli["status"] == job.status and len(cli["batches"]) == 2
