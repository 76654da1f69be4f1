"""The notification outbox: rows written with the events that cause them, handed out and sent at most once.

A target's pending rows are leased to one task at a time (`dispatch`, run by beat); the task marks them
`sending` with its attempt number and commits (`begin_attempt`) before it calls the target, then marks them
`sent` or, after its last retry, `failed` (`finish`). A message redelivered after a worker died mid-attempt
finds no row it may begin again, so nothing is ever sent twice; such rows are recorded as interrupted once
their lease runs out (`reap_interrupted`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from teckochecker.models import JobNotification, NotificationState, OutboxNotification, Secret
from teckochecker.notifications.events import NotificationKind, events_of, notification_kind, wanted_by

# A message waits in the broker and then makes one call to the target (Apprise's timeouts are seconds).
DISPATCH_LEASE = timedelta(seconds=120)
ATTEMPT_LEASE = timedelta(seconds=120)
# One message per target carries at most this many events; more wait for the next message.
MAX_ROWS_PER_MESSAGE = 1000
KEEP_FINISHED = timedelta(days=7)

_outbox = OutboxNotification.__table__
PENDING, SENDING = NotificationState.PENDING.value, NotificationState.SENDING.value


def enqueue(session: Session, events: Sequence[tuple[int, str, str]], *, now: datetime) -> None:
    """Write outbox rows for the (job id, event kind, message) events that notify, in the caller's transaction.

    One query for the subscriptions of the jobs concerned, and none at all when no event notifies.
    """
    notifying = [(job_id, kind, message) for job_id, event, message in events
                 if (kind := notification_kind(event, message)) is not None]  # fmt: skip
    if not notifying:
        return
    job_ids = {job_id for job_id, _, _ in notifying}
    subscriptions: dict[int, list[tuple[int, str | None]]] = {}
    query = (
        select(JobNotification.job_id, Secret.id, Secret.notification_events)
        .join(Secret, Secret.id == JobNotification.secret_id)
        .where(JobNotification.job_id.in_(job_ids))
    )
    for job_id, target_id, chosen in session.execute(query):
        subscriptions.setdefault(job_id, []).append((target_id, chosen))
    rows = [
        {"target_id": target_id, "job_id": job_id, "kind": kind.value, "message": message, "state": PENDING,
         "attempts": 0, "created_at": now}
        for job_id, kind, message in notifying
        for target_id, chosen in subscriptions.get(job_id, [])
        if wanted_by(kind, events_of(chosen))
    ]  # fmt: skip
    if rows:
        session.execute(insert(_outbox), rows)


@dataclass(frozen=True)
class Dispatch:
    """One task to send: a target's leased rows, under `lease_token` (the task's id)."""

    target_id: int
    lease_token: str
    expires_in: float


def _lease_is_free(now: datetime):
    return or_(_outbox.c.lease_until.is_(None), _outbox.c.lease_until <= now)


def dispatch(session: Session, *, now: datetime) -> list[Dispatch]:
    """Lease the pending rows of every target that has some and no message in flight; the caller commits, then
    sends one task per Dispatch. One target at a time per message, so a burst gathers into few messages."""
    busy = aliased(OutboxNotification)
    in_flight = exists().where(
        busy.target_id == OutboxNotification.target_id,
        busy.state.in_([PENDING, SENDING]),
        busy.lease_until > now,
    )
    targets = session.scalars(
        select(OutboxNotification.target_id)
        .where(OutboxNotification.state == PENDING, _lease_is_free(now), ~in_flight)
        .distinct()
    ).all()
    dispatches = []
    for target_id in targets:
        token = str(uuid.uuid4())
        rows = (
            select(_outbox.c.id)
            .where(_outbox.c.target_id == target_id, _outbox.c.state == PENDING, _lease_is_free(now))
            .order_by(_outbox.c.id)
            .limit(MAX_ROWS_PER_MESSAGE)
        )
        leased = session.execute(
            update(_outbox)
            .where(_outbox.c.id.in_(rows.scalar_subquery()), _outbox.c.state == PENDING, _lease_is_free(now))
            .values(lease_token=token, lease_until=now + DISPATCH_LEASE)
        ).rowcount
        if leased:
            dispatches.append(Dispatch(target_id, token, DISPATCH_LEASE.total_seconds()))
    return dispatches


@dataclass(frozen=True)
class Pending:
    """An outbox row as a message needs it."""

    id: int
    job_id: int
    kind: NotificationKind
    message: str
    created_at: datetime


def begin_attempt(session: Session, target_id: int, token: str, attempt: int, *, now: datetime) -> list[Pending]:
    """Mark our rows as being sent by attempt number `attempt` (1 for the first); the caller commits before
    sending. The first attempt takes pending rows; attempt n takes only rows attempt n-1 left `sending`. A
    redelivered message (its worker died during an attempt) therefore finds nothing, and sends nothing."""
    allowed = (
        _outbox.c.state == PENDING
        if attempt == 1
        else and_(_outbox.c.state == SENDING, _outbox.c.attempts == attempt - 1)
    )
    rows = session.execute(
        update(_outbox)
        .where(_outbox.c.target_id == target_id, _outbox.c.lease_token == token, allowed)
        .values(state=SENDING, attempts=attempt, lease_until=now + ATTEMPT_LEASE)
        .returning(_outbox.c.id, _outbox.c.job_id, _outbox.c.kind, _outbox.c.message, _outbox.c.created_at)
    ).all()
    return sorted(
        (Pending(row.id, row.job_id, NotificationKind(row.kind), row.message, row.created_at) for row in rows),
        key=lambda pending: pending.id,
    )


def hold_for_retry(session: Session, token: str, wait: timedelta, *, now: datetime) -> int:
    """Keep our `sending` rows ours while a retry waits in the broker; returns how many."""
    return session.execute(
        update(_outbox)
        .where(_outbox.c.lease_token == token, _outbox.c.state == SENDING)
        .values(lease_until=now + wait + ATTEMPT_LEASE)
    ).rowcount


def finish(session: Session, token: str, state: NotificationState, *, now: datetime) -> list[int]:
    """Mark our `sending` rows sent or failed; returns the ids of the jobs they were about."""
    return list(
        session.scalars(
            update(_outbox)
            .where(_outbox.c.lease_token == token, _outbox.c.state == SENDING)
            .values(
                state=state.value,
                sent_at=now if state == NotificationState.SENT else None,
                lease_token=None,
                lease_until=None,
            )
            .returning(_outbox.c.job_id)
        )
    )


def reap_interrupted(session: Session, *, now: datetime) -> list[tuple[int, int]]:
    """Rows whose attempt began and whose lease ran out (the worker stopped mid-send): recorded as failed, never
    sent again. Returns (job id, target id) for each, to record on the jobs."""
    rows = session.execute(
        update(_outbox)
        .where(_outbox.c.state == SENDING, _outbox.c.lease_until <= now)
        .values(state=NotificationState.FAILED.value, lease_token=None, lease_until=None)
        .returning(_outbox.c.job_id, _outbox.c.target_id)
    ).all()
    return [(row.job_id, row.target_id) for row in rows]


def purge_finished(session: Session, *, now: datetime) -> int:
    """Forget sent and failed rows after KEEP_FINISHED (the job's events keep what failed)."""
    finished = [NotificationState.SENT.value, NotificationState.FAILED.value]
    return session.execute(
        delete(_outbox).where(_outbox.c.state.in_(finished), _outbox.c.created_at < now - KEEP_FINISHED)
    ).rowcount
