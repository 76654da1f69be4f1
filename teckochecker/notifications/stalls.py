"""The "no successful check" alert: raised once when a job's checks have failed for N intervals, cleared once
when a check succeeds again. Beat runs `scan` every few seconds; it writes the events, and so the notifications.

A job stalls when a check was attempted at least N intervals after its last successful check (or its
creation) and did not succeed: an attempt is the evidence that the service, not our own fleet, is failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, update
from sqlalchemy.orm import Session

from teckochecker.models import JobStatus, PollingJob
from teckochecker.notifications.events import STALL_RECOVERED_EVENT, STALLED_EVENT
from teckochecker.services.events import record_events

_jobs = PollingJob.__table__


@dataclass(frozen=True)
class StallChanges:
    stalled: int
    recovered: int


def _seconds_between(session: Session, later, earlier):
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def scan(session: Session, *, intervals: int, now: datetime) -> StallChanges:
    """Raise the alert for newly stalled active jobs and clear it for recovered ones; the caller commits."""
    if intervals < 1:
        return StallChanges(0, 0)
    baseline = func.coalesce(_jobs.c.last_success_at, _jobs.c.created_at)
    failing_for = _seconds_between(session, _jobs.c.last_check_at, baseline)
    stalled = session.execute(
        update(_jobs)
        .where(
            _jobs.c.status == JobStatus.ACTIVE.value,
            _jobs.c.stalled_at.is_(None),
            _jobs.c.last_check_at.is_not(None),
            or_(_jobs.c.last_success_at.is_(None), _jobs.c.last_check_at > _jobs.c.last_success_at),
            failing_for >= intervals * _jobs.c.poll_interval_seconds,
        )
        .values(stalled_at=now)
        .returning(_jobs.c.id, _jobs.c.poll_interval_seconds, _jobs.c.last_success_at, _jobs.c.last_error)
    ).all()
    recovered = session.execute(
        update(_jobs)
        .where(_jobs.c.stalled_at.is_not(None), _jobs.c.last_success_at >= _jobs.c.stalled_at)
        .values(stalled_at=None)
        .returning(_jobs.c.id)
    ).all()
    # A stalled job that was paused, failed or deleted meanwhile is no longer watched: its alert ends quietly.
    session.execute(
        update(_jobs)
        .where(_jobs.c.stalled_at.is_not(None), _jobs.c.status != JobStatus.ACTIVE.value)
        .values(stalled_at=None)
    )
    events = [(row.id, STALLED_EVENT, _stalled_message(row, intervals)) for row in stalled]
    events += [(row.id, STALL_RECOVERED_EVENT, "A check succeeded again; the stall has ended") for row in recovered]
    record_events(session, events)
    return StallChanges(len(stalled), len(recovered))


def _stalled_message(row, intervals: int) -> str:
    since = f"since {row.last_success_at:%Y-%m-%d %H:%M:%S} UTC" if row.last_success_at else "since it was created"
    reason = f": {row.last_error}" if row.last_error else ""
    return f"No successful check for {intervals} intervals of {row.poll_interval_seconds} s ({since}){reason}"
