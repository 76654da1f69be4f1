"""What the dashboard's overview shows: activity over time, how fast Keboola starts, and the jobs that need a person.

Every figure is an aggregate query (or a bounded list), never a walk over every job.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from teckochecker.db import utcnow
from teckochecker.models import JobBatch, JobEvent, JobStatus, PollingJob
from teckochecker.services.stats import CHECK_EVENT_KINDS, TRIGGER_EVENT_KINDS

REACTION_WINDOW = timedelta(days=1)
ATTENTION_LIMIT = 20


@dataclass(frozen=True)
class ActivityBucket:
    start: datetime
    end: datetime
    checks: int
    triggers: int


@dataclass(frozen=True)
class ActivitySeries:
    window: timedelta
    buckets: list[ActivityBucket]

    @property
    def checks(self) -> int:
        return sum(bucket.checks for bucket in self.buckets)

    @property
    def triggers(self) -> int:
        return sum(bucket.triggers for bucket in self.buckets)


def activity_series(
    session: Session, window: timedelta, buckets: int, *, now: datetime | None = None
) -> ActivitySeries:
    """Checks that found a change and Keboola jobs started, in `buckets` equal slices of the last `window`."""
    end = now or utcnow()
    width = window / buckets
    boundaries = [end - window + width * (index + 1) for index in range(buckets)]
    # A portable bucket number: one CASE over the boundaries (PostgreSQL and SQLite differ on epoch arithmetic).
    bucket = case(*[(JobEvent.created_at < boundary, index) for index, boundary in enumerate(boundaries)], else_=-1)
    is_trigger = JobEvent.kind.in_(TRIGGER_EVENT_KINDS)
    rows = session.execute(
        select(bucket.label("bucket"), is_trigger.label("is_trigger"), func.count())
        .where(JobEvent.kind.in_((*CHECK_EVENT_KINDS, *TRIGGER_EVENT_KINDS)), JobEvent.created_at >= end - window)
        .group_by("bucket", "is_trigger")
    )
    checks = [0] * buckets
    triggers = [0] * buckets
    for index, trigger, count in rows:
        if 0 <= index < buckets:
            (triggers if trigger else checks)[index] += count
    return ActivitySeries(
        window,
        [
            ActivityBucket(boundary - width, boundary, checks[index], triggers[index])
            for index, boundary in enumerate(boundaries)
        ],
    )


@dataclass(frozen=True)
class ReactionTimes:
    """Seconds from a job's last batch finishing to its Keboola job starting, over the triggers of a window."""

    count: int
    p50_seconds: float | None
    p95_seconds: float | None


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: a value that occurred, never an interpolation between two."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def reaction_times(
    session: Session, *, window: timedelta = REACTION_WINDOW, now: datetime | None = None
) -> ReactionTimes:
    since = (now or utcnow()) - window
    rows = session.execute(
        select(JobEvent.created_at, func.max(JobBatch.finished_at))
        .join(JobBatch, JobBatch.job_id == JobEvent.job_id)
        .where(JobEvent.kind.in_(TRIGGER_EVENT_KINDS), JobEvent.created_at >= since)
        .group_by(JobEvent.id, JobEvent.created_at)
    )
    delays = [max(0.0, (started - finished).total_seconds()) for started, finished in rows if finished is not None]
    if not delays:
        return ReactionTimes(0, None, None)
    return ReactionTimes(len(delays), percentile(delays, 0.50), percentile(delays, 0.95))


class AttentionReason(enum.StrEnum):
    KEY_REJECTED = "key rejected"
    KEBOOLA_ERROR = "Keboola error"
    CHECKS_FAILING = "checks failing"


@dataclass(frozen=True)
class AttentionItem:
    job_id: int
    name: str
    status: str
    reason: AttentionReason
    message: str | None
    since: datetime


def _reason(job: PollingJob) -> AttentionReason:
    if job.status == JobStatus.FAILED:
        # A job fails before any Keboola attempt only when OpenAI rejects its key.
        never_triggered = job.keboola_job_id is None and job.trigger_attempted_at is None
        return AttentionReason.KEY_REJECTED if never_triggered else AttentionReason.KEBOOLA_ERROR
    if job.status == JobStatus.TRIGGERING:
        return AttentionReason.KEBOOLA_ERROR
    return AttentionReason.CHECKS_FAILING


def jobs_needing_attention(session: Session, *, limit: int = ATTENTION_LIMIT) -> tuple[list[AttentionItem], int]:
    """Failed jobs, and running jobs whose checks or Keboola calls keep failing; most recent first, with the total."""
    condition = or_(
        PollingJob.status == JobStatus.FAILED.value,
        and_(
            PollingJob.status.in_((JobStatus.ACTIVE.value, JobStatus.TRIGGERING.value)),
            PollingJob.last_error.isnot(None),
        ),
    )
    total = session.scalar(select(func.count(PollingJob.id)).where(condition)) or 0
    jobs = session.scalars(
        select(PollingJob).where(condition).order_by(PollingJob.updated_at.desc(), PollingJob.id.desc()).limit(limit)
    )
    items = [AttentionItem(job.id, job.name, job.status, _reason(job), job.last_error, job.updated_at) for job in jobs]
    return items, total
