"""Leases: who may work on a job, until when. The one module that writes `lease_token` and `lease_until`.

The dispatcher hands a job out with a fresh token and a lease long enough to cover the wait in the
broker queue (`grant`). The worker that receives the message renews the lease while it works (`renew`),
locks the job's row under it for each write (`hold`), and releases it when done (`release`). Every write
a worker makes is guarded by its token, so a stale or duplicated message (redelivery after a crash, a
lease that expired under a slow worker) changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Update, bindparam, or_, update
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.db import database_now, session_scope
from teckochecker.models import JobStatus, PollingJob

# How long a worker may go without renewing its lease: one HTTP call with room to spare (the clients'
# timeouts are checked against it where they are set). A dead worker's job is handed out again this long after.
RUN_LEASE = timedelta(seconds=30)

# Built once on the table, not the ORM entity: these run several times per check, and a prepared Core
# statement skips the ORM's per-call compile and session synchronisation.
_jobs = PollingJob.__table__
TOKEN_COLUMN = _jobs.c.lease_token
# The lease's columns, for statements that read a job's row and write it back whole.
COLUMNS = (_jobs.c.lease_token, _jobs.c.lease_until)


def held_by(token: Any) -> ColumnElement[bool]:
    """The rows leased to `token` (a value or a bound parameter)."""
    return _jobs.c.lease_token == token


def is_free(now: Any) -> ColumnElement[bool]:
    """The rows no live lease holds at `now`: never leased, released, or expired."""
    return or_(_jobs.c.lease_until.is_(None), _jobs.c.lease_until <= now)


def grant(token: Any, until: Any) -> dict[str, Any]:
    """The column values that hand a job out under `token` until `until` (values or SQL expressions)."""
    return {"lease_token": token, "lease_until": until}


_RENEW = (
    update(_jobs)
    .where(
        _jobs.c.id.in_(bindparam("job_ids", expanding=True)),
        held_by(bindparam("token")),
        _jobs.c.status == bindparam("required_status"),
    )
    .values(lease_until=bindparam("until"))
    .returning(_jobs.c.id)
)


def hold_statement(*returning: ColumnElement[Any]) -> Update:
    """Lock the rows of `job_ids` still leased to `token` (a write, portable to SQLite), returning `returning`."""
    return (
        update(_jobs)
        .where(_jobs.c.id.in_(bindparam("job_ids", expanding=True)), held_by(bindparam("token")))
        .values(lease_token=bindparam("token"))
        .returning(*returning)
    )


_HOLD = hold_statement(_jobs.c.id)


class HeldRows:
    """The statements for jobs' rows that a worker holds under its lease: lock and read `columns` (with the
    id first), change them in memory, then write them back in one executemany. `columns` must include the
    lease's COLUMNS, so that releasing a row in memory (`release`) is written with the rest."""

    def __init__(self, *columns: ColumnElement[Any]) -> None:
        self.columns = columns
        self.hold = hold_statement(_jobs.c.id, *columns)
        # Parameters named after their columns are reserved by SQLAlchemy in SET clauses, hence the prefix.
        self._save = (
            update(_jobs)
            .where(_jobs.c.id == bindparam("job_id"))
            .values(**{column.name: bindparam(f"new_{column.name}") for column in columns})
        )

    def save(self, session: Session, rows: Collection[Any]) -> None:
        if rows:
            values = [
                {"job_id": row.id, **{f"new_{c.name}": getattr(row, c.name) for c in self.columns}} for row in rows
            ]
            session.execute(self._save, values)


def new_token() -> str:
    return str(uuid.uuid4())


def renew(
    session: Session,
    job_ids: Collection[int],
    token: str,
    *,
    now: datetime,
    status: str,
    extra: timedelta = RUN_LEASE,
) -> set[int]:
    """Extend our lease on the jobs we still hold that are still in `status`; returns their ids.

    Takes the rows' write locks.
    """
    if not job_ids:
        return set()
    parameters = {"job_ids": list(job_ids), "token": token, "required_status": status, "until": now + extra}
    return set(session.scalars(_RENEW, parameters))


def extend_lease_for_retry(
    sessions: sessionmaker[Session], job_id: int, token: str, wait: timedelta, *, status: JobStatus
) -> bool:
    """Keep the job ours while a retry waits `wait` in the broker, if it is still in `status`.

    False when the job moved on meanwhile (paused, edited, handed out again).
    """
    with session_scope(sessions) as session:
        now = database_now(session)
        renewed = renew(session, [job_id], token, now=now, status=status.value, extra=wait + RUN_LEASE)
        return job_id in renewed


def hand_back(sessions: sessionmaker[Session], job_ids: Collection[int], token: str, reason: str) -> set[int]:
    """Give up jobs this worker cannot work on (its SECRET_KEY cannot read their secrets) at once, with the
    reason on each job, instead of holding them for the rest of the lease: a worker that can read them
    takes them at the next tick. Returns the ids handed back."""
    with session_scope(sessions) as session:
        handed = session.scalars(
            update(_jobs)
            .where(_jobs.c.id.in_(list(job_ids)), held_by(token))
            .values(lease_token=None, lease_until=None, last_error=reason)
            .returning(_jobs.c.id)
        )
        return set(handed)


def hand_back_hinted(session: Session, token: str) -> set[int]:
    """Give up the jobs leased to `token` that a webhook (or a user's check now) hinted, so they are checked at
    once on their own (the hint made them due now) instead of waiting for the rest of a long run. Returns
    their ids. The partial index of hinted jobs makes this cheap whatever the size of the group."""
    return set(
        session.scalars(
            update(_jobs)
            .where(_jobs.c.hinted_at.is_not(None), held_by(token))
            .values(lease_token=None, lease_until=None)
            .returning(_jobs.c.id)
        )
    )


def hold(session: Session, job_id: int, token: str) -> bool:
    """Lock the job's row for this transaction if we hold its lease (whatever its status now)."""
    return session.execute(_HOLD, {"job_ids": [job_id], "token": token}).first() is not None


class Leased(Protocol):
    """A job's row in memory: the ORM's PollingJob, or a row read with COLUMNS and written back."""

    lease_token: str | None
    lease_until: datetime | None


def release(job: Leased) -> None:
    """Give the job up: the dispatcher may hand it out again when it is due."""
    job.lease_token = None
    job.lease_until = None


def keep(job: Leased, token: str, until: datetime) -> None:
    """Hold the job under `token` until `until` for the holder's next step (the check that saw its batches end
    starts its Keboola job); no one else may take it meanwhile, and if the holder dies it is free at `until`."""
    job.lease_token = token
    job.lease_until = until
