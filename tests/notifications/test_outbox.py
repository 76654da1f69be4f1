"""The outbox: events write their notifications in their own transaction, a target's rows go out as one
message under a lease, an attempt is begun (committed) before sending so nothing is ever sent twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.errors import ConflictError, ValidationError
from teckochecker.models import JobEvent, NotificationState, OutboxNotification, PollingJob
from teckochecker.notifications import outbox, sending
from teckochecker.services.events import record_event, record_events
from teckochecker.services.jobs import JobChanges, JobDraft, create_job, get_job, update_job
from teckochecker.services.secrets import add_secret, delete_secret, get_secret_by_name
from teckochecker.vault import Vault

SLACK = "json://127.0.0.1:9/hooks/slack-5e1f"
MAIL = "json://127.0.0.1:9/hooks/mail-77aa"


@pytest.fixture
def targets(session: Session, vault: Vault) -> None:
    add_secret(session, vault, name="openai", type="openai", value="sk-outbox-test-0000")
    add_secret(session, vault, name="keboola", type="keboola", value="321-654-outboxtesttoken")
    add_secret(session, vault, name="everything", type="notification", value=SLACK)
    add_secret(session, vault, name="failures", type="notification", value=MAIL, events="failed,stalled")


def _job(session: Session, settings: Settings, notify: list[int | str] | None, name: str = "job") -> PollingJob:
    draft = JobDraft(name, ["batch_a"], "openai", "keboola", "https://connection.keboola.com", "c", "1", 60, notify)
    return create_job(session, settings, draft)


def _rows(session: Session) -> list[tuple[int, str]]:
    return [(row.target_id, row.kind) for row in session.scalars(select(OutboxNotification).order_by("id"))]


def test_events_notify_the_subscribed_targets_that_chose_them(
    session: Session, settings: Settings, targets: None
) -> None:
    job = _job(session, settings, ["everything", "failures"])
    other = _job(session, settings, [], name="nobody")
    record_events(session, [(job.id, "batch_status", "batch_a is completed"), (job.id, "triggering", "…")])
    assert _rows(session) == []
    record_event(session, job, "completed", "Keboola job 1 succeeded")
    record_events(session, [(job.id, "failed", "OpenAI rejected the key in secret 'openai' (401)")])
    record_events(session, [(other.id, "failed", "Keboola job 9 finished with status error")])
    # `failed` covers the narrower key_rejected; the second target did not choose `completed`.
    assert _rows(session) == [(3, "completed"), (3, "key_rejected"), (4, "key_rejected")]


def test_default_notify_applies_to_jobs_created_without_targets(
    session: Session, settings: Settings, targets: None
) -> None:
    defaulted = settings.with_overrides(default_notify=("failures",))
    assert [t.name for t in _job(session, defaulted, None).notification_targets] == ["failures"]
    assert _job(session, defaulted, []).notification_targets == []
    with pytest.raises(ValidationError, match="DEFAULT_NOTIFY: secret 'gone' does not exist"):
        _job(session, settings.with_overrides(default_notify=("gone",)), None)
    with pytest.raises(ValidationError, match="is a openai secret, but a notification secret is needed"):
        _job(session, settings, ["openai"])


def test_a_target_in_use_cannot_be_deleted_until_no_job_names_it(
    session: Session, settings: Settings, targets: None
) -> None:
    job = _job(session, settings, ["everything"])
    with pytest.raises(ConflictError, match="--no-notify"):
        delete_secret(session, get_secret_by_name(session, "everything"))
    update_job(session, settings, get_job(session, job.id), JobChanges(notify=[]))
    delete_secret(session, get_secret_by_name(session, "everything"))


def test_one_lease_per_target_and_an_attempt_is_never_begun_twice(
    session: Session, settings: Settings, targets: None
) -> None:
    jobs = [_job(session, settings, ["everything"], name=f"job {i}") for i in range(3)]
    record_events(session, [(job.id, "completed", "done") for job in jobs])
    now = utcnow()
    (first,) = outbox.dispatch(session, now=now)
    # Everything pending for the target is in flight: nothing more to hand out, even for new rows.
    record_events(session, [(jobs[0].id, "failed", "later")])
    assert outbox.dispatch(session, now=now) == []
    rows = outbox.begin_attempt(session, first.target_id, first.lease_token, 1, now=now)
    assert [row.job_id for row in rows] == [job.id for job in jobs]
    # The same message delivered again (its worker died mid-send): nothing to begin, nothing sent twice.
    assert outbox.begin_attempt(session, first.target_id, first.lease_token, 1, now=now) == []
    # A retry scheduled by that attempt takes the rows on.
    assert len(outbox.begin_attempt(session, first.target_id, first.lease_token, 2, now=now)) == 3
    assert outbox.finish(session, first.lease_token, NotificationState.SENT, now=now) == [job.id for job in jobs]
    (second,) = outbox.dispatch(session, now=now)
    assert [row.kind for row in outbox.begin_attempt(session, second.target_id, second.lease_token, 1, now=now)] == [
        "failed"
    ]


def test_an_attempt_whose_worker_stopped_is_recorded_on_the_job_and_never_resent(
    session: Session, settings: Settings, targets: None
) -> None:
    job = _job(session, settings, ["everything"])
    record_events(session, [(job.id, "completed", "done")])
    now = utcnow()
    (dispatch,) = outbox.dispatch(session, now=now)
    outbox.begin_attempt(session, dispatch.target_id, dispatch.lease_token, 1, now=now)
    assert sending.record_interrupted(session, now=now) == 0
    later = now + outbox.ATTEMPT_LEASE + timedelta(seconds=1)
    assert sending.record_interrupted(session, now=later) == 1
    assert outbox.dispatch(session, now=later) == []
    (event,) = session.scalars(select(JobEvent).where(JobEvent.kind == "notification_failed")).all()
    assert "'everything' was interrupted" in event.message and SLACK not in event.message
    assert _rows(session) == [(3, "completed")]
