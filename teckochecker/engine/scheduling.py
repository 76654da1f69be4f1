"""The dispatcher's half of the engine: find due jobs in the database and claim them.

The database is the source of truth and broker messages are only hints. A due job is claimed by a
guarded UPDATE (on PostgreSQL after `FOR UPDATE SKIP LOCKED`), so two dispatchers never hand out the
same job; a claim moves `next_check_at` along the job's own grid (no drift, missed slots skipped) and
sets a lease, so a lost message delays the job by at most one interval, never loses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from teckochecker.engine.leases import new_token
from teckochecker.models import JobStatus, PollingJob

CHECK = "check"
TRIGGER = "trigger"
# A trigger message waits in its own, short queue; this covers that wait and the Keboola call.
TRIGGER_DISPATCH_LEASE = timedelta(seconds=120)
DISPATCH_BATCH_LIMIT = 1000


@dataclass(frozen=True)
class Dispatch:
    """One job handed out: the task to send, with its lease token and when the message goes stale."""

    job_id: int
    action: str
    lease_token: str
    planned_at: datetime
    expires_in: float


def plan_next_check(planned: datetime, interval_seconds: int, now: datetime) -> datetime:
    """The first slot after `now` on the grid planned + k × interval: no drift, missed slots skipped."""
    if planned > now:
        return planned
    elapsed = (now - planned).total_seconds()
    steps = math.floor(elapsed / interval_seconds) + 1
    return planned + timedelta(seconds=steps * interval_seconds)


def _due(now: datetime):
    return (
        PollingJob.status.in_([JobStatus.ACTIVE.value, JobStatus.TRIGGERING.value]),
        PollingJob.next_check_at <= now,
        or_(PollingJob.lease_until.is_(None), PollingJob.lease_until <= now),
    )


def claim_due_jobs(session: Session, *, now: datetime, limit: int = DISPATCH_BATCH_LIMIT) -> list[Dispatch]:
    """Claim up to `limit` due jobs, oldest plan first. The caller commits, then sends the tasks."""
    query = (
        select(PollingJob.id, PollingJob.status, PollingJob.next_check_at, PollingJob.poll_interval_seconds)
        .where(*_due(now))
        .order_by(PollingJob.next_check_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    dispatches = []
    for job_id, status, planned, interval in session.execute(query).all():
        token = new_token()
        if status == JobStatus.ACTIVE:
            action, lease = CHECK, timedelta(seconds=interval)
            next_check = plan_next_check(planned, interval, now)
        else:
            action, lease, next_check = TRIGGER, TRIGGER_DISPATCH_LEASE, planned
        claimed = session.execute(
            update(PollingJob)
            .where(PollingJob.id == job_id, PollingJob.next_check_at == planned, *_due(now))
            .values(next_check_at=next_check, lease_token=token, lease_until=now + lease)
            .returning(PollingJob.id)
        ).first()
        if claimed is not None:
            dispatches.append(Dispatch(job_id, action, token, planned, lease.total_seconds()))
    session.flush()
    return dispatches
