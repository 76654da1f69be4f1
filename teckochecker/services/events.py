"""The job history a user reads: one row per change, never one per uneventful poll.

An event that someone is to be told about also writes its notifications to the outbox, in the same
transaction (teckochecker/notifications/outbox.py): the event and its notifications exist together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from teckochecker.db import utcnow
from teckochecker.models import JobEvent, PollingJob
from teckochecker.notifications import outbox

EVENT_MESSAGE_MAX_LENGTH = 2000


def record_event(session: Session, job: PollingJob, kind: str, message: str) -> JobEvent:
    event = JobEvent(job_id=job.id, kind=kind, message=message[:EVENT_MESSAGE_MAX_LENGTH])
    session.add(event)
    outbox.enqueue(session, [(job.id, kind, event.message)], now=utcnow())
    return event


def record_events(session: Session, events: Iterable[tuple[int, str, str]]) -> None:
    """Write (job id, kind, message) events in one statement, without loading the jobs."""
    rows = [
        {"job_id": job_id, "kind": kind, "message": message[:EVENT_MESSAGE_MAX_LENGTH]}
        for job_id, kind, message in events
    ]
    if rows:
        session.execute(insert(JobEvent.__table__), rows)
        outbox.enqueue(session, [(row["job_id"], row["kind"], row["message"]) for row in rows], now=utcnow())


def list_events(
    session: Session, job_id: int, *, limit: int | None = None, before_id: int | None = None
) -> list[JobEvent]:
    """Newest first."""
    query = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc())
    if before_id is not None:
        query = query.where(JobEvent.id < before_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
