"""The dispatcher's half of the engine: find due jobs in the database and claim them.

The database is the source of truth and broker messages are only hints. A due job is claimed by an
atomic, guarded UPDATE, so two dispatchers never hand out the same job; a claim moves `next_check_at`
along the job's own grid (no drift, missed slots skipped) and sets a lease, so a lost message delays the
job by at most one interval, never loses it.

On PostgreSQL one statement claims a whole batch (`UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)
RETURNING`), with the grid arithmetic in SQL: beat stays cheap at thousands of claims a second. SQLite
(the embedded single-machine default) has no row locks: there each job is claimed by its own guarded
UPDATE, with the same grid rule computed by `plan_next_check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, case, cast, extract, func, or_, select, update
from sqlalchemy.orm import Session

from teckochecker.db import UTCDateTime
from teckochecker.engine.leases import new_token
from teckochecker.models import JobStatus, PollingJob

CHECK = "check"
TRIGGER = "trigger"
# A trigger message waits in its own, short queue; this covers that wait and the Keboola call.
TRIGGER_DISPATCH_LEASE = timedelta(seconds=120)
DISPATCH_BATCH_LIMIT = 1000

_jobs = PollingJob.__table__
_now = bindparam("now", type_=UTCDateTime())
_DUE = (
    _jobs.c.status.in_([JobStatus.ACTIVE.value, JobStatus.TRIGGERING.value]),
    _jobs.c.next_check_at <= _now,
    or_(_jobs.c.lease_until.is_(None), _jobs.c.lease_until <= _now),
)
_CANDIDATES = (
    select(_jobs.c.id, _jobs.c.status, _jobs.c.next_check_at, _jobs.c.poll_interval_seconds)
    .where(*_DUE)
    .order_by(_jobs.c.next_check_at)
    .limit(bindparam("limit"))
)
# SQLite: one guarded UPDATE per job; the guard fails if another dispatcher claimed the job meanwhile.
_CLAIM_ONE = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _jobs.c.next_check_at == bindparam("planned", type_=UTCDateTime()), *_DUE)
    .values(
        next_check_at=bindparam("new_next_check_at", type_=UTCDateTime()),
        lease_token=bindparam("new_lease_token"),
        lease_until=bindparam("new_lease_until", type_=UTCDateTime()),
    )
    .returning(_jobs.c.id)
)


def _seconds(amount):
    return func.make_interval(0, 0, 0, 0, 0, 0, amount)


def _claim_many_statement():
    """PostgreSQL: lock up to `limit` due rows (skipping rows another dispatcher holds) and claim them at once."""
    due = _CANDIDATES.with_for_update(skip_locked=True).subquery("due")
    is_check = _jobs.c.status == JobStatus.ACTIVE.value
    interval = _jobs.c.poll_interval_seconds
    # The first slot after now on the grid planned + k × interval: the same rule as plan_next_check.
    steps = func.floor(extract("epoch", _now - due.c.next_check_at) / interval) + 1
    return (
        update(_jobs)
        .where(_jobs.c.id == due.c.id)
        .values(
            next_check_at=case((is_check, due.c.next_check_at + _seconds(steps * interval)), else_=due.c.next_check_at),
            lease_token=cast(func.gen_random_uuid(), String),
            lease_until=_now + _seconds(case((is_check, interval), else_=TRIGGER_DISPATCH_LEASE.total_seconds())),
        )
        .returning(_jobs.c.id, _jobs.c.status, _jobs.c.lease_token, due.c.next_check_at, interval)
    )


_CLAIM_MANY = _claim_many_statement()


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


def _dispatch(job_id: int, status: str, token: str, planned: datetime, interval: int) -> Dispatch:
    if status == JobStatus.ACTIVE:
        return Dispatch(job_id, CHECK, token, planned, float(interval))
    return Dispatch(job_id, TRIGGER, token, planned, TRIGGER_DISPATCH_LEASE.total_seconds())


def claim_due_jobs(session: Session, *, now: datetime, limit: int = DISPATCH_BATCH_LIMIT) -> list[Dispatch]:
    """Claim up to `limit` due jobs, oldest plan first. The caller commits, then sends the tasks."""
    parameters = {"now": now, "limit": limit}
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(_CLAIM_MANY, parameters).all()
        return sorted((_dispatch(*row) for row in rows), key=lambda dispatch: dispatch.planned_at)
    dispatches = []
    for job_id, status, planned, interval in session.execute(_CANDIDATES, parameters).all():
        dispatch = _dispatch(job_id, status, new_token(), planned, interval)
        next_check = plan_next_check(planned, interval, now) if dispatch.action == CHECK else planned
        claim = {
            "now": now,
            "job_id": job_id,
            "planned": planned,
            "new_next_check_at": next_check,
            "new_lease_token": dispatch.lease_token,
            "new_lease_until": now + timedelta(seconds=dispatch.expires_in),
        }
        if session.execute(_CLAIM_ONE, claim).first() is not None:
            dispatches.append(dispatch)
    return dispatches
