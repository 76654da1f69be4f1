from datetime import timedelta

import pytest
from sqlalchemy import select

from teckochecker.db import utcnow
from teckochecker.errors import NotFoundError, ValidationError
from teckochecker.models import JobBatch, JobEvent, JobStatus
from teckochecker.services import jobs as service
from teckochecker.services.events import list_events
from teckochecker.services.secrets import add_secret


@pytest.fixture
def secrets(session, vault):
    add_secret(session, vault, name="openai-prod", type="openai", value="sk")
    add_secret(session, vault, name="keboola-prod", type="keboola", value="kbc")
    session.commit()


def draft(**overrides) -> service.JobDraft:
    values = {
        "name": "Batch processing job",
        "batch_ids": ["batch_abc123"],
        "openai_secret": "openai-prod",
        "keboola_secret": "keboola-prod",
        "keboola_stack_url": "https://connection.eu-central-1.keboola.com",
        "keboola_component_id": "kds-team.app-custom-python",
        "keboola_configuration_id": "123456",
        "poll_interval_seconds": 120,
    }
    values.update(overrides)
    return service.JobDraft(**values)


def test_create_makes_an_active_job_due_now_with_pending_batches(session, settings, secrets) -> None:
    before = utcnow()
    job = service.create_job(session, settings, draft(batch_ids=["batch_a", "batch_b"]))
    session.commit()
    fetched = service.get_job(session, job.id)
    assert fetched.status == JobStatus.ACTIVE
    assert before <= fetched.next_check_at <= utcnow()
    assert [(b.batch_id, b.status) for b in fetched.batches] == [("batch_a", "pending"), ("batch_b", "pending")]
    assert [e.kind for e in list_events(session, job.id)] == ["created"]


def test_default_interval_comes_from_settings(session, settings, secrets) -> None:
    job = service.create_job(session, settings, draft(poll_interval_seconds=None))
    assert job.poll_interval_seconds == settings.default_poll_interval


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": " "}, "name"),
        ({"batch_ids": ["nope"]}, "batch_ids"),
        ({"poll_interval_seconds": 5}, "poll_interval_seconds"),
        ({"openai_secret": "keboola-prod"}, "openai_secret"),
        ({"keboola_secret": "missing"}, "keboola_secret"),
        ({"keboola_stack_url": "http://connection.keboola.com"}, "keboola_stack_url"),
        ({"keboola_component_id": ""}, "keboola_component_id"),
        ({"keboola_configuration_id": "a b"}, "keboola_configuration_id"),
    ],
)
def test_refusals_name_the_field_and_store_nothing(session, settings, secrets, overrides, field) -> None:
    with pytest.raises(ValidationError) as caught:
        service.create_job(session, settings, draft(**overrides))
    assert caught.value.field == field
    session.rollback()
    assert service.count_jobs(session) == 0


def test_list_filters_by_status_and_name(session, settings, secrets) -> None:
    first = service.create_job(session, settings, draft(name="Nightly 100% run"))
    service.create_job(session, settings, draft(name="Weekly"))
    service.pause_job(session, first)
    session.commit()
    assert [j.name for j in service.list_jobs(session, status=JobStatus.PAUSED)] == ["Nightly 100% run"]
    assert [j.name for j in service.list_jobs(session, search="100%")] == ["Nightly 100% run"]
    assert [j.name for j in service.list_jobs(session, search="week")] == ["Weekly"]
    assert service.count_jobs(session, status=JobStatus.ACTIVE) == 1
    assert [j.name for j in service.list_jobs(session, limit=1, offset=1)] == ["Weekly"]


def test_pause_and_resume(session, settings, secrets) -> None:
    job = service.create_job(session, settings, draft())
    service.pause_job(session, job)
    assert job.status == JobStatus.PAUSED and job.next_check_at is None
    with pytest.raises(service.StatusConflictError) as caught:
        service.pause_job(session, job)
    assert caught.value.current_status == "paused"
    service.resume_job(session, job)
    assert job.status == JobStatus.ACTIVE and job.next_check_at is not None
    with pytest.raises(service.StatusConflictError, match="only a paused or failed job"):
        service.resume_job(session, job)
    session.commit()
    assert [e.kind for e in reversed(list_events(session, job.id))] == ["created", "paused", "resumed"]


def test_a_failed_job_resumes_unless_keboola_was_started(session, settings, secrets) -> None:
    job = service.create_job(session, settings, draft())
    job.status, job.last_error = JobStatus.FAILED.value, "401 from OpenAI"
    service.resume_job(session, job)
    assert job.status == JobStatus.ACTIVE and job.last_error is None
    job.status, job.keboola_job_id = JobStatus.FAILED.value, "12345"
    with pytest.raises(service.StatusConflictError, match="12345"):
        service.resume_job(session, job)


def test_update_changes_fields_and_replans_the_next_check(session, settings, secrets) -> None:
    job = service.create_job(session, settings, draft())
    checked = utcnow() - timedelta(seconds=100)
    job.last_check_at = checked
    service.update_job(
        session,
        settings,
        job,
        service.JobChanges(name="Renamed", poll_interval_seconds=60, keboola_configuration_id="999"),
    )
    session.commit()
    job = service.get_job(session, job.id)
    assert (job.name, job.poll_interval_seconds, job.keboola_configuration_id) == ("Renamed", 60, "999")
    assert job.next_check_at == checked + timedelta(seconds=60)
    with pytest.raises(ValidationError, match="nothing to change"):
        service.update_job(session, settings, job, service.JobChanges())
    job.status = JobStatus.COMPLETED.value
    with pytest.raises(service.StatusConflictError, match="can no longer be edited"):
        service.update_job(session, settings, job, service.JobChanges(name="x"))


def test_delete_removes_batches_and_history(session, settings, secrets) -> None:
    job = service.create_job(session, settings, draft(batch_ids=["batch_a", "batch_b"]))
    session.commit()
    job_id = job.id
    service.delete_job(session, job)
    session.commit()
    with pytest.raises(NotFoundError):
        service.get_job(session, job_id)
    assert session.scalars(select(JobBatch).where(JobBatch.job_id == job_id)).all() == []
    assert session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).all() == []


def test_delete_is_refused_while_triggering(session, settings, secrets) -> None:
    job = service.create_job(session, settings, draft())
    job.status = JobStatus.TRIGGERING.value
    with pytest.raises(service.StatusConflictError, match="starting its Keboola job"):
        service.delete_job(session, job)
