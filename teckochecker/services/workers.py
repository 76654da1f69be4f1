"""Worker heartbeats in the database, so any process (the API on another machine) can see the fleet."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from teckochecker.models import WorkerHeartbeat

# Rows of workers gone this long are dropped (container names change with every deployment).
FORGET_AFTER = timedelta(days=1)


def record_heartbeat(session: Session, hostname: str, now: datetime) -> None:
    updated = session.execute(
        update(WorkerHeartbeat).where(WorkerHeartbeat.hostname == hostname).values(last_seen_at=now)
    )
    if updated.rowcount == 0:
        try:
            with session.begin_nested():
                session.add(WorkerHeartbeat(hostname=hostname, last_seen_at=now))
        except IntegrityError:
            # A restarted worker of the same name inserted it first: its heartbeat stands.
            pass
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < now - FORGET_AFTER))
    session.flush()


def workers_seen_since(session: Session, since: datetime) -> list[str]:
    query = select(WorkerHeartbeat.hostname).where(WorkerHeartbeat.last_seen_at >= since)
    return list(session.scalars(query.order_by(WorkerHeartbeat.hostname)))


def any_worker_recorded(session: Session) -> bool:
    return bool(session.scalar(select(func.count()).select_from(WorkerHeartbeat)))
