"""Counts that summarise the installation: a few aggregate queries, never one row per job."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from teckochecker.db import utcnow
from teckochecker.models import JobBatch, JobEvent, JobStatus, PollingJob, Secret

# The engine records a check that changed something as `checked` or `batch_status`, and the start of a
# Keboola job as `keboola_started`; uneventful polls write no row, so these count what happened.
CHECK_EVENT_KINDS = ("checked", "batch_status")
TRIGGER_EVENT_KINDS = ("keboola_started",)
RECENT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Stats:
    jobs_by_status: dict[str, int]
    batches_by_status: dict[str, int]
    secrets: int
    checks_last_hour: int
    keboola_triggers_last_hour: int


def jobs_by_status(session: Session) -> dict[str, int]:
    """Every job status with its count, zero included, so readers need not know the statuses."""
    counts = dict.fromkeys((status.value for status in JobStatus), 0)
    rows = session.execute(select(PollingJob.status, func.count()).group_by(PollingJob.status))
    counts.update({status: count for status, count in rows})
    return counts


def batches_by_status(session: Session) -> dict[str, int]:
    """Counts of the batch statuses that occur (OpenAI's statuses are open-ended, so no fixed list)."""
    rows = session.execute(select(JobBatch.status, func.count()).group_by(JobBatch.status))
    return dict(sorted((status, count) for status, count in rows))


def count_secrets(session: Session) -> int:
    return session.scalar(select(func.count(Secret.id))) or 0


def count_events_since(session: Session, kinds: Iterable[str], since: datetime) -> int:
    query = select(func.count(JobEvent.id)).where(JobEvent.kind.in_(list(kinds)), JobEvent.created_at >= since)
    return session.scalar(query) or 0


def collect_stats(session: Session, *, now: datetime | None = None) -> Stats:
    since = (now or utcnow()) - RECENT_WINDOW
    return Stats(
        jobs_by_status=jobs_by_status(session),
        batches_by_status=batches_by_status(session),
        secrets=count_secrets(session),
        checks_last_hour=count_events_since(session, CHECK_EVENT_KINDS, since),
        keboola_triggers_last_hour=count_events_since(session, TRIGGER_EVENT_KINDS, since),
    )
