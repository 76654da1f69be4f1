"""What a notification says (a burst is one message), and the stall alert: raised once, cleared once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.models import JobEvent, JobStatus, OutboxNotification, PollingJob
from teckochecker.notifications import stalls
from teckochecker.notifications.events import NotificationKind
from teckochecker.notifications.messages import MAX_LISTED, Item, JobFacts, render
from teckochecker.services.jobs import JobDraft, create_job
from teckochecker.services.secrets import add_secret
from teckochecker.vault import Vault


def _facts(job_id: int, **changes: object) -> JobFacts:
    values = {
        "id": job_id,
        "name": f"Nightly {job_id}",
        "batch_total": 3,
        "batch_completed": 2,
        "failed_batch_ids": ("batch_bad",),
        "keboola_job_id": "1000042",
        "keboola_link": "https://connection.keboola.com/admin/projects/7/queue/1000042",
        "job_link": f"https://tc.example.com/jobs/{job_id}",
        **changes,
    }
    return JobFacts(**values)  # type: ignore[arg-type]


def test_one_event_reads_as_a_sentence_with_every_fact() -> None:
    message = render(
        [Item(NotificationKind.KEBOOLA_ERROR, "Keboola job 1000042 finished with status error", _facts(5))]
    )
    assert message.title == "TeckoChecker: job 'Nightly 5' keboola error" and message.severity == "failure"
    assert message.body.splitlines() == [
        "Job 'Nightly 5' (id 5) failed: its Keboola job ended in error",
        "  Batches: 3 (2 completed, 1 failed: batch_bad)",
        "  Keboola job 1000042: https://connection.keboola.com/admin/projects/7/queue/1000042",
        "  Error: Keboola job 1000042 finished with status error",
        "  https://tc.example.com/jobs/5",
    ]


def test_a_burst_of_a_thousand_is_one_message_that_counts_the_rest() -> None:
    items = [
        Item(NotificationKind.COMPLETED, "", _facts(i, failed_batch_ids=(), batch_completed=3)) for i in range(995)
    ]
    items += [
        Item(NotificationKind.FAILED, "Could not start the Keboola job: 503", _facts(i)) for i in range(995, 1000)
    ]
    message = render(items)
    assert message.title == "TeckoChecker: 1000 job events (995 completed, 5 failed)"
    assert message.severity == "failure"
    assert message.body.count("Job 'Nightly") == MAX_LISTED
    assert message.body.endswith(f"… and {1000 - MAX_LISTED} more: 975 completed, 5 failed.")


def test_the_stall_alert_is_raised_once_and_cleared_once(session: Session, settings: Settings, vault: Vault) -> None:
    add_secret(session, vault, name="openai", type="openai", value="sk-stall-test-0000")
    add_secret(session, vault, name="keboola", type="keboola", value="321-654-stalltesttoken")
    add_secret(session, vault, name="ops", type="notification", value="json://127.0.0.1:9/ops")
    draft = JobDraft(
        "Stalls", ["batch_s"], "openai", "keboola", "https://connection.keboola.com", "c", "1", 60, ["ops"]
    )
    job = create_job(session, settings, draft)
    healthy = create_job(session, settings, JobDraft(**{**vars(draft), "name": "Healthy"}))
    start = utcnow()
    job.last_success_at = healthy.last_success_at = start
    healthy.last_check_at = start + timedelta(minutes=10)
    healthy.last_success_at = healthy.last_check_at
    session.flush()

    def scan(minutes: float) -> stalls.StallChanges:
        return stalls.scan(session, intervals=3, now=start + timedelta(minutes=minutes))

    job.last_check_at, job.last_error = start + timedelta(seconds=150), "OpenAI answered HTTP 503"
    session.flush()
    assert scan(3) == stalls.StallChanges(0, 0), "2.5 intervals without success is not yet a stall"
    job.last_check_at = start + timedelta(seconds=185)
    session.flush()
    assert scan(4) == stalls.StallChanges(1, 0)
    job.last_check_at = start + timedelta(minutes=20)
    session.flush()
    assert scan(21) == stalls.StallChanges(0, 0), "never one alert per check"
    job.last_success_at = job.last_check_at = start + timedelta(minutes=22)
    session.flush()
    assert scan(23) == stalls.StallChanges(0, 1)
    assert scan(24) == stalls.StallChanges(0, 0)
    kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job.id).order_by(JobEvent.id)).all()
    assert kinds == ["created", "stalled", "stall_recovered"]
    outbox = session.scalars(select(OutboxNotification.kind).order_by(OutboxNotification.id)).all()
    assert outbox == ["stalled", "recovered"]


def test_a_stalled_job_that_is_paused_ends_its_alert_quietly(
    session: Session, settings: Settings, vault: Vault
) -> None:
    add_secret(session, vault, name="openai", type="openai", value="sk-stall-test-0000")
    add_secret(session, vault, name="keboola", type="keboola", value="321-654-stalltesttoken")
    job = create_job(session, settings, JobDraft("Paused", ["batch_p"], "openai", "keboola",
                                                 "https://connection.keboola.com", "c", "1", 60))  # fmt: skip
    job.last_check_at = job.created_at + timedelta(minutes=5)
    session.flush()
    assert stalls.scan(session, intervals=3, now=utcnow() + timedelta(minutes=6)).stalled == 1
    job.status = JobStatus.PAUSED.value
    session.flush()
    assert stalls.scan(session, intervals=3, now=utcnow() + timedelta(minutes=7)) == stalls.StallChanges(0, 0)
    session.expire_all()
    assert session.get(PollingJob, job.id).stalled_at is None
