"""One attempt to tell a target what its outbox rows hold: begin it (committed), send, then finish it.

The Celery task (worker/notification_tasks.py) adds only the retries; `send_test` serves `notify test`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from teckochecker.config import Settings
from teckochecker.db import session_scope, utcnow
from teckochecker.errors import ValidationError
from teckochecker.models import BATCH_SUCCEEDED_STATUSES, NotificationState, PollingJob, Secret, SecretType
from teckochecker.notifications import delivery, outbox
from teckochecker.notifications.messages import Item, JobFacts, job_link, render
from teckochecker.presenters import keboola_job_url
from teckochecker.redaction import Redacts
from teckochecker.services.events import record_events
from teckochecker.services.secrets import get_secret_by_name
from teckochecker.vault import Vault

NOTIFICATION_FAILED_EVENT = "notification_failed"


@dataclass(frozen=True)
class Attempt:
    """A begun attempt: where to send (decrypted for this call only) and what."""

    target_name: str
    url: str
    message: delivery.Message
    job_ids: tuple[int, ...]


def _job_facts(session: Session, settings: Settings, job_ids: set[int]) -> dict[int, JobFacts]:
    jobs = session.scalars(
        select(PollingJob).where(PollingJob.id.in_(job_ids)).options(selectinload(PollingJob.batches))
    ).all()
    facts = {}
    for job in jobs:
        finished = [batch for batch in job.batches if batch.is_terminal]
        facts[job.id] = JobFacts(
            id=job.id,
            name=job.name,
            batch_total=len(job.batches),
            batch_completed=sum(batch.status in BATCH_SUCCEEDED_STATUSES for batch in finished),
            failed_batch_ids=tuple(b.batch_id for b in finished if b.status not in BATCH_SUCCEEDED_STATUSES),
            keboola_job_id=job.keboola_job_id,
            keboola_link=keboola_job_url(job),
            job_link=job_link(settings.public_url, job.id),
        )
    return facts


def begin(
    sessions: sessionmaker[Session],
    vault: Vault,
    settings: Settings,
    redactor: Redacts,
    target_id: int,
    token: str,
    attempt: int,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Attempt | None:
    """Mark the target's rows leased to `token` as being sent by `attempt`, committed; None when there are none
    (another attempt has them, or this message was redelivered after a worker died during its attempt)."""
    with session_scope(sessions) as session:
        rows = outbox.begin_attempt(session, target_id, token, attempt, now=clock())
    if not rows:
        return None
    with session_scope(sessions) as session:
        target = session.get(Secret, target_id)
        if target is None or target.type != SecretType.NOTIFICATION:
            return None
        url = vault.decrypt(target.encrypted_value, secret_name=target.name)
        facts = _job_facts(session, settings, {row.job_id for row in rows})
        items = [
            Item(row.kind, redactor.redact(row.message, url), facts[row.job_id]) for row in rows if row.job_id in facts
        ]
    message = render(items) if items else None
    if message is None:
        return None
    return Attempt(target.name, url, message, tuple(dict.fromkeys(row.job_id for row in rows)))


def succeeded(sessions: sessionmaker[Session], token: str) -> None:
    with session_scope(sessions) as session:
        outbox.finish(session, token, NotificationState.SENT, now=utcnow())


def hold_for_retry(sessions: sessionmaker[Session], token: str, wait: timedelta) -> bool:
    """Keep the attempt's rows while a retry waits; False when they are no longer ours."""
    with session_scope(sessions) as session:
        return outbox.hold_for_retry(session, token, wait, now=utcnow()) > 0


def gave_up(sessions: sessionmaker[Session], token: str, target_name: str, error: str) -> None:
    """Retries ran out: the rows are failed, and each job records it (the job itself is never failed by it)."""
    with session_scope(sessions) as session:
        job_ids = outbox.finish(session, token, NotificationState.FAILED, now=utcnow())
        message = f"Could not notify '{target_name}': {error}"
        record_events(session, [(job_id, NOTIFICATION_FAILED_EVENT, message) for job_id in dict.fromkeys(job_ids)])


def record_interrupted(session: Session, *, now: datetime) -> int:
    """Record, on their jobs, the attempts a worker stopped in the middle of (they are never sent again)."""
    rows = outbox.reap_interrupted(session, now=now)
    names = dict(session.execute(select(Secret.id, Secret.name).where(Secret.id.in_({t for _, t in rows}))).all())
    record_events(
        session,
        [
            (job_id, NOTIFICATION_FAILED_EVENT,
             f"Notifying '{names.get(target_id, target_id)}' was interrupted (a worker stopped while sending); "
             "it may not have arrived, and is not sent again")
            for job_id, target_id in dict.fromkeys(rows)
        ],
    )  # fmt: skip
    return len(rows)


def send_test(session: Session, vault: Vault, redactor: Redacts, name: str) -> tuple[str, delivery.SendResult]:
    """Send a test message to the target `name` now; returns its service and the result."""
    target = get_secret_by_name(session, name)
    if target.type != SecretType.NOTIFICATION:
        raise ValidationError("name", f"secret '{name}' is a {target.type} secret, not a notification target")
    url = vault.decrypt(target.encrypted_value, secret_name=target.name)
    message = delivery.Message(
        title="TeckoChecker test notification",
        body=f"This is a test message from TeckoChecker to the notification target '{target.name}'. "
        "Jobs that subscribe to it (job create/update --notify) will be reported here.",
        severity="info",
    )
    return delivery.service_name(url), delivery.send(url, message, redactor)
