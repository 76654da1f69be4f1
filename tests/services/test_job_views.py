"""What the dashboard and the API's list build on: search by name or batch id, the sort orders, check now, the
actions a job allows, its progress, and batch ids pasted in any shape."""

from datetime import timedelta

import pytest

from teckochecker.db import utcnow
from teckochecker.models import JobStatus
from teckochecker.services import jobs as service
from teckochecker.services.events import list_events
from teckochecker.services.secrets import add_secret
from teckochecker.services.stats import jobs_by_status


@pytest.fixture
def secrets(session, vault):
    add_secret(session, vault, name="openai-prod", type="openai", value="sk")
    add_secret(session, vault, name="keboola-prod", type="keboola", value="kbc")
    session.commit()


def make_job(session, settings, name: str, batch_ids: list[str], **changes) -> service.PollingJob:
    job = service.create_job(
        session,
        settings,
        service.JobDraft(
            name=name,
            batch_ids=batch_ids,
            openai_secret="openai-prod",
            keboola_secret="keboola-prod",
            keboola_stack_url="https://connection.keboola.com",
            keboola_component_id="kds-team.app-custom-python",
            keboola_configuration_id="1",
        ),
    )
    for attribute, value in changes.items():
        setattr(job, attribute, value)
    session.commit()
    return job


def test_search_matches_names_and_batch_ids_case_insensitively_and_literally(session, settings, secrets) -> None:
    make_job(session, settings, "Nightly translations", ["batch_alpha"])
    make_job(session, settings, "Summaries 100%", ["batch_beta", "batch_Special_1"])
    make_job(session, settings, "Other", ["batch_gamma"])

    def names(search: str) -> list[str]:
        return [job.name for job in service.list_jobs(session, search=search)]

    assert names("NIGHTLY") == ["Nightly translations"]
    assert names("special_1") == ["Summaries 100%"]
    assert names("100%") == ["Summaries 100%"]
    assert names("_") == ["Nightly translations", "Summaries 100%", "Other"]  # every batch id has an underscore
    assert names("%") == ["Summaries 100%"]  # LIKE wildcards are matched literally
    assert service.count_jobs(session, search="batch_") == 3


def test_the_sort_orders_end_with_the_id_and_put_jobs_without_a_next_check_last(session, settings, secrets) -> None:
    now = utcnow()
    first = make_job(session, settings, "first", ["batch_1"], next_check_at=now + timedelta(seconds=50))
    second = make_job(session, settings, "second", ["batch_2"], next_check_at=None, status="paused")
    third = make_job(session, settings, "third", ["batch_3"], next_check_at=now + timedelta(seconds=5))

    def ids(order: service.JobOrder) -> list[int]:
        return [job.id for job in service.list_jobs(session, order=order)]

    assert ids(service.JobOrder.CREATED) == [first.id, second.id, third.id]
    assert ids(service.JobOrder.CREATED_DESC) == [third.id, second.id, first.id]
    assert ids(service.JobOrder.NEXT_CHECK) == [third.id, first.id, second.id]
    assert [job.id for job in service.list_jobs(session, order=service.JobOrder.CREATED, limit=1, offset=1)] == [
        second.id
    ]


def test_check_now_makes_an_active_job_due_and_refuses_other_statuses(session, settings, secrets) -> None:
    later = utcnow() + timedelta(hours=1)
    job = make_job(session, settings, "due later", ["batch_1"], next_check_at=later)
    now = utcnow()
    service.check_now(session, job, now=now)
    assert job.next_check_at == now
    assert list_events(session, job.id)[0].kind == "check_requested"
    service.pause_job(session, job)
    with pytest.raises(service.StatusConflictError) as refused:
        service.check_now(session, job)
    assert refused.value.current_status == JobStatus.PAUSED


@pytest.mark.parametrize(
    ("status", "keboola_job_id", "batches_finished", "expected"),
    [
        ("active", None, False, {"check", "pause", "edit", "delete"}),
        ("paused", None, False, {"resume", "edit", "delete"}),
        ("triggering", None, True, set()),
        ("failed", None, False, {"resume", "edit", "delete"}),
        ("failed", None, True, {"resume", "retry", "edit", "delete"}),
        ("failed", "123", True, {"retry", "edit", "delete"}),
        ("completed", "123", True, {"delete"}),
    ],
)
def test_allowed_actions_follow_the_services_rules(
    session, settings, secrets, status, keboola_job_id, batches_finished, expected
) -> None:
    job = make_job(session, settings, "job", ["batch_1"], status=status, keboola_job_id=keboola_job_id)
    if batches_finished:
        job.batches[0].status = "completed"
    assert service.allowed_actions(job) == expected
    # Every action offered succeeds, so the page never shows a button the service would refuse.
    for action, run in (
        ("pause", service.pause_job),
        ("resume", service.resume_job),
        ("retry", service.retry_job),
        ("check", service.check_now),
    ):
        if action in expected:
            attempt = session.begin_nested()
            run(session, job)
            attempt.rollback()


def test_progress_counts_finished_batches_and_requests_done(session, settings, secrets) -> None:
    job = make_job(session, settings, "job", ["batch_1", "batch_2", "batch_3"])
    values = [("completed", 100, 98, 2), ("failed", 50, 10, 40), ("in_progress", 200, 20, 0)]
    for batch, (status, total, completed, failed) in zip(job.batches, values, strict=True):
        batch.status, batch.request_total, batch.request_completed, batch.request_failed = (
            status,
            total,
            completed,
            failed,
        )
    progress = service.progress_of(job)
    assert (progress.batches_finished, progress.batches_total) == (2, 3)
    assert (progress.requests_done, progress.requests_total, progress.requests_failed) == (170, 350, 42)


@pytest.mark.parametrize(
    "text",
    [
        "batch_a,batch_b,batch_c",
        "batch_a batch_b\nbatch_c",
        " batch_a;\r\n batch_b ,\tbatch_c\n\n",
        "batch_a, batch_b, batch_c,",
    ],
)
def test_batch_ids_may_be_pasted_with_commas_spaces_or_newlines(text: str) -> None:
    assert service.split_batch_ids(text) == ["batch_a", "batch_b", "batch_c"]
    assert service.split_batch_ids("  \n ") == []


def test_counts_by_status_include_every_status(session, settings, secrets) -> None:
    make_job(session, settings, "job", ["batch_1"])
    assert jobs_by_status(session) == {status.value: int(status == JobStatus.ACTIVE) for status in JobStatus}
