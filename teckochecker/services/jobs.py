"""Polling jobs: creation, listing, and the state changes a person asks for (pause, resume, edit, delete)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.engine import leases
from teckochecker.engine.wakeups import announce_due
from teckochecker.errors import ConflictError, NotFoundError, ValidationError
from teckochecker.models import MAX_ID, JobBatch, JobStatus, PollingJob, Secret, SecretType
from teckochecker.services.events import record_event
from teckochecker.services.secrets import resolve_secret
from teckochecker.services.validation import (
    validate_batch_ids,
    validate_keboola_id,
    validate_name,
    validate_poll_interval,
    validate_stack_url,
)

EDITABLE_STATUSES = frozenset({JobStatus.ACTIVE, JobStatus.PAUSED, JobStatus.FAILED})
MAX_NOTIFY_TARGETS = 20


class StatusConflictError(ConflictError):
    """The job is in a status that does not allow the requested change."""

    def __init__(self, job: PollingJob, message: str) -> None:
        self.current_status = job.status
        super().__init__(message)


@dataclass(frozen=True)
class JobDraft:
    """What a user gives to create a job. Secrets may be ids or names."""

    name: str
    batch_ids: list[str]
    openai_secret: int | str
    keboola_secret: int | str
    keboola_stack_url: str
    keboola_component_id: str
    keboola_configuration_id: str
    poll_interval_seconds: int | None = None
    # Notification targets by id or name; None: the targets DEFAULT_NOTIFY names.
    notify: list[int | str] | None = None


@dataclass(frozen=True)
class JobChanges:
    """An edit of a job; None leaves a field as it is (`notify=[]` removes every target)."""

    name: str | None = None
    poll_interval_seconds: int | None = None
    keboola_stack_url: str | None = None
    keboola_component_id: str | None = None
    keboola_configuration_id: str | None = None
    notify: list[int | str] | None = None

    def is_empty(self) -> bool:
        return all(value is None for value in vars(self).values())


# Batch ids pasted from anywhere: a list separated by commas, semicolons, spaces or newlines, in any mix.
BATCH_ID_SEPARATORS = re.compile(r"[\s,;]+")


def split_batch_ids(text: str) -> list[str]:
    return [part for part in BATCH_ID_SEPARATORS.split(text or "") if part]


@dataclass(frozen=True)
class JobProgress:
    batches_total: int
    batches_finished: int
    requests_total: int
    requests_completed: int
    requests_failed: int

    @property
    def requests_done(self) -> int:
        return self.requests_completed + self.requests_failed


def progress_of(job: PollingJob) -> JobProgress:
    """How far a job's batches are: finished batches, and requests done (completed or failed) of all requested."""
    return JobProgress(
        batches_total=len(job.batches),
        batches_finished=sum(batch.is_terminal for batch in job.batches),
        requests_total=sum(batch.request_total for batch in job.batches),
        requests_completed=sum(batch.request_completed for batch in job.batches),
        requests_failed=sum(batch.request_failed for batch in job.batches),
    )


class JobAction(enum.StrEnum):
    CHECK = "check"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    EDIT = "edit"
    DELETE = "delete"


def allowed_actions(job: PollingJob) -> frozenset[JobAction]:
    """What a person may do with the job now: the same conditions the functions below enforce."""
    allowed = set()
    if job.status == JobStatus.ACTIVE:
        allowed |= {JobAction.CHECK, JobAction.PAUSE}
    if job.status == JobStatus.PAUSED or (job.status == JobStatus.FAILED and job.keboola_job_id is None):
        allowed.add(JobAction.RESUME)
    if job.status == JobStatus.FAILED and all(batch.is_terminal for batch in job.batches):
        allowed.add(JobAction.RETRY)
    if job.status in EDITABLE_STATUSES:
        allowed.add(JobAction.EDIT)
    if job.status != JobStatus.TRIGGERING:
        allowed.add(JobAction.DELETE)
    return frozenset(allowed)


class JobOrder(enum.StrEnum):
    """How a job list is sorted. Every order ends with the id, so pages never overlap or skip a job."""

    CREATED = "created"  # oldest first
    CREATED_DESC = "-created"  # newest first
    NEXT_CHECK = "next_check"  # the soonest next check first; jobs with none (paused, finished) last


def _order_by(order: JobOrder) -> list[ColumnElement]:
    if order is JobOrder.CREATED_DESC:
        return [PollingJob.created_at.desc(), PollingJob.id.desc()]
    if order is JobOrder.NEXT_CHECK:
        return [PollingJob.next_check_at.asc().nulls_last(), PollingJob.id]
    return [PollingJob.created_at, PollingJob.id]


def parse_job_status(field: str, value: str) -> JobStatus:
    try:
        return JobStatus(value.strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in JobStatus)
        raise ValidationError(field, f"must be one of {allowed}, got {value!r}") from None


def resolve_notification_targets(session: Session, field: str, references: list[int | str]) -> list[Secret]:
    """Notification targets (`notification` secrets) by id or name, each once."""
    if len(references) > MAX_NOTIFY_TARGETS:
        raise ValidationError(field, f"a job notifies at most {MAX_NOTIFY_TARGETS} targets, got {len(references)}")
    targets: dict[int, Secret] = {}
    for reference in references:
        target = resolve_secret(session, field, reference, SecretType.NOTIFICATION)
        if target.id in targets:
            raise ValidationError(field, f"notification target '{target.name}' is listed twice")
        targets[target.id] = target
    return list(targets.values())


def _targets_of_new_job(session: Session, settings: Settings, notify: list[int | str] | None) -> list[Secret]:
    if notify is not None:
        return resolve_notification_targets(session, "notify", notify)
    try:
        return resolve_notification_targets(session, "notify", list(settings.default_notify))
    except ValidationError as error:
        raise ValidationError("notify", f"DEFAULT_NOTIFY: {error.message}") from None


def create_job(session: Session, settings: Settings, draft: JobDraft, *, now: datetime | None = None) -> PollingJob:
    name = validate_name("name", draft.name, what="a job's name")
    batch_ids = validate_batch_ids("batch_ids", draft.batch_ids, maximum=settings.max_batches_per_job)
    interval = validate_poll_interval("poll_interval_seconds", draft.poll_interval_seconds, settings)
    stack_url = validate_stack_url("keboola_stack_url", draft.keboola_stack_url, settings)
    component_id = validate_keboola_id("keboola_component_id", draft.keboola_component_id, what="the component id")
    configuration_id = validate_keboola_id(
        "keboola_configuration_id", draft.keboola_configuration_id, what="the configuration id"
    )
    openai_secret = resolve_secret(session, "openai_secret", draft.openai_secret, SecretType.OPENAI)
    keboola_secret = resolve_secret(session, "keboola_secret", draft.keboola_secret, SecretType.KEBOOLA)
    targets = _targets_of_new_job(session, settings, draft.notify)

    now = now or utcnow()
    job = PollingJob(
        name=name,
        openai_secret=openai_secret,
        keboola_secret=keboola_secret,
        keboola_stack_url=stack_url,
        keboola_component_id=component_id,
        keboola_configuration_id=configuration_id,
        poll_interval_seconds=interval,
        status=JobStatus.ACTIVE.value,
        # A new job is checked at once; later checks follow its interval.
        next_check_at=now,
        batches=[JobBatch(batch_id=batch_id) for batch_id in batch_ids],
        notification_targets=targets,
    )
    session.add(job)
    session.flush()
    record_event(session, job, "created", f"Job created watching {len(batch_ids)} batch(es) every {interval} seconds")
    session.flush()
    announce_due(session)
    return job


def get_job(session: Session, job_id: int) -> PollingJob:
    job = None
    if 1 <= job_id <= MAX_ID:
        job = session.get(PollingJob, job_id, options=[selectinload(PollingJob.batches)])
    if job is None:
        raise NotFoundError(f"Job {job_id} not found")
    return job


def _filtered(query: Select, status: JobStatus | None, search: str | None) -> Select:
    """Jobs in `status` whose name, or the id of one of whose batches, contains `search` (case-insensitive)."""
    if status is not None:
        query = query.where(PollingJob.status == status.value)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        matching_batch = select(JobBatch.job_id).where(JobBatch.batch_id.ilike(pattern, escape="\\"))
        query = query.where(or_(PollingJob.name.ilike(pattern, escape="\\"), PollingJob.id.in_(matching_batch)))
    return query


def filtered_jobs(
    query: Select, *, status: JobStatus | None = None, search: str | None = None, order: JobOrder = JobOrder.CREATED
) -> Select:
    """`query` (which selects from polling_jobs) narrowed to a filter and sorted as the job lists are."""
    return _filtered(query, status, search).order_by(*_order_by(order))


def list_jobs(
    session: Session,
    *,
    status: JobStatus | None = None,
    search: str | None = None,
    order: JobOrder = JobOrder.CREATED,
    limit: int | None = None,
    offset: int = 0,
) -> list[PollingJob]:
    query = filtered_jobs(select(PollingJob), status=status, search=search, order=order).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query.options(selectinload(PollingJob.batches))).unique())


def count_jobs(session: Session, *, status: JobStatus | None = None, search: str | None = None) -> int:
    return session.scalar(_filtered(select(func.count(PollingJob.id)), status, search)) or 0


def pause_job(session: Session, job: PollingJob) -> PollingJob:
    # The lease stays: a check running now stores what OpenAI said, sees the pause and releases the job.
    if job.status != JobStatus.ACTIVE:
        raise StatusConflictError(job, f"Job '{job.name}' is {job.status}; only an active job can be paused")
    job.status = JobStatus.PAUSED.value
    job.next_check_at = None
    record_event(session, job, "paused", "Job paused")
    session.flush()
    return job


def check_now(session: Session, job: PollingJob, *, now: datetime | None = None) -> PollingJob:
    """Make an active job due now: beat hands it to a worker as soon as this commits (PostgreSQL), or at its
    next tick (within a quarter of a second, SQLite)."""
    if job.status != JobStatus.ACTIVE:
        raise StatusConflictError(job, f"Job '{job.name}' is {job.status}; only an active job can be checked")
    _due_now_for_the_user(job, now)
    record_event(session, job, "check_requested", "Check requested now")
    session.flush()
    announce_due(session)
    return job


def _due_now_for_the_user(job: PollingJob, now: datetime | None) -> None:
    """A user asked for this job now. Like a webhook, that is a hint (`hinted_at`): the job is checked at once
    on its own, even if it was checked moments ago on a key refreshed by list sweeps (such a job would
    otherwise wait for the key's next sweep), and again after a check already running."""
    job.next_check_at = job.hinted_at = now or utcnow()


def resume_job(session: Session, job: PollingJob, *, now: datetime | None = None) -> PollingJob:
    """Re-activate a paused job, or a job that failed before its Keboola job was started."""
    if job.status == JobStatus.FAILED and job.keboola_job_id is not None:
        raise StatusConflictError(
            job, f"Job '{job.name}' already started Keboola job {job.keboola_job_id}; it cannot be resumed"
        )
    if job.status not in (JobStatus.PAUSED, JobStatus.FAILED):
        raise StatusConflictError(job, f"Job '{job.name}' is {job.status}; only a paused or failed job can be resumed")
    previous = job.status
    job.status = JobStatus.ACTIVE.value
    _due_now_for_the_user(job, now)
    leases.release(job)
    job.completed_at = None
    if previous == JobStatus.FAILED:
        job.last_error = None
    record_event(session, job, "resumed", f"Job resumed (was {previous})")
    session.flush()
    announce_due(session)
    return job


def update_job(
    session: Session, settings: Settings, job: PollingJob, changes: JobChanges, *, now: datetime | None = None
) -> PollingJob:
    if changes.is_empty():
        raise ValidationError("job", "nothing to change: give at least one field")
    if job.status not in EDITABLE_STATUSES:
        raise StatusConflictError(job, f"Job '{job.name}' is {job.status} and can no longer be edited")
    described: list[str] = []
    if changes.name is not None:
        job.name = validate_name("name", changes.name, what="a job's name")
        described.append(f"name '{job.name}'")
    if changes.poll_interval_seconds is not None:
        job.poll_interval_seconds = validate_poll_interval(
            "poll_interval_seconds", changes.poll_interval_seconds, settings
        )
        if job.status == JobStatus.ACTIVE:
            # The new interval counts from the last check, so shortening it takes effect at once.
            start = job.last_check_at or now or utcnow()
            job.next_check_at = start + timedelta(seconds=job.poll_interval_seconds)
        described.append(f"interval {job.poll_interval_seconds} seconds")
    if changes.keboola_stack_url is not None:
        job.keboola_stack_url = validate_stack_url("keboola_stack_url", changes.keboola_stack_url, settings)
        described.append(f"stack {job.keboola_stack_url}")
    if changes.keboola_component_id is not None:
        job.keboola_component_id = validate_keboola_id(
            "keboola_component_id", changes.keboola_component_id, what="the component id"
        )
        described.append(f"component {job.keboola_component_id}")
    if changes.keboola_configuration_id is not None:
        job.keboola_configuration_id = validate_keboola_id(
            "keboola_configuration_id", changes.keboola_configuration_id, what="the configuration id"
        )
        described.append(f"configuration {job.keboola_configuration_id}")
    if changes.notify is not None:
        job.notification_targets = resolve_notification_targets(session, "notify", changes.notify)
        names = ", ".join(target.name for target in job.notification_targets)
        described.append(f"notifies {names}" if names else "notifies nobody")
    record_event(session, job, "updated", "Job updated: " + ", ".join(described))
    session.flush()
    return job


def delete_job(session: Session, job: PollingJob) -> None:
    """Delete a job with its batches and history. Refused while a Keboola job is being started for it."""
    if job.status == JobStatus.TRIGGERING:
        raise StatusConflictError(
            job, f"Job '{job.name}' is starting its Keboola job right now; delete it once it has finished"
        )
    session.delete(job)
    session.flush()


def retry_job(session: Session, job: PollingJob, *, now: datetime | None = None) -> PollingJob:
    """Re-arm the Keboola trigger of a failed job whose batches have all finished."""
    if job.status != JobStatus.FAILED:
        raise StatusConflictError(job, f"Job '{job.name}' is {job.status}; only a failed job can be retried")
    if not all(batch.is_terminal for batch in job.batches):
        raise StatusConflictError(
            job, f"Job '{job.name}' still has unfinished batches; use `teckochecker job resume {job.id}` instead"
        )
    if job.keboola_job_id is not None:
        # That Keboola job ran and failed: the retry asks for a new one.
        job.keboola_job_id = None
        job.keboola_job_status = None
        job.keboola_project_id = None
        job.trigger_attempted_at = None
    # Otherwise trigger_attempted_at stays, so the retry looks for a job an earlier attempt may have started.
    job.status = JobStatus.TRIGGERING.value
    job.next_check_at = now or utcnow()
    leases.release(job)
    job.completed_at = None
    job.last_error = None
    record_event(session, job, "retried", "Keboola trigger re-armed")
    session.flush()
    announce_due(session)
    return job
