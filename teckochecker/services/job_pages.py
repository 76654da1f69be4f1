"""Keyset pages of the job list: each page starts just after the last job of the one before.

OFFSET pages get slower the further they go (the database walks past every earlier row) and need a count of
every matching job. A cursor names the last job shown, by the values the list is sorted on and its id, so
every page is one index range read, as fast at the end of 100,000 jobs as at the start.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Integer, any_, bindparam, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from teckochecker.errors import ValidationError
from teckochecker.models import JobBatch, JobNotification, JobStatus, PollingJob, Secret
from teckochecker.services.jobs import JobOrder, filtered_jobs

_jobs = PollingJob.__table__
_batches = JobBatch.__table__
_secrets = Secret.__table__
_notifications = JobNotification.__table__
# What presenters.job_view and batch_view read (and the cursor: created_at, next_check_at), nothing more:
# converting unused columns of 100 jobs and their batches was a measurable part of a page.
_JOB_COLUMNS = [
    _jobs.c[name]
    for name in (
        "id", "name", "status", "openai_secret_id", "keboola_secret_id", "keboola_stack_url",
        "keboola_component_id", "keboola_configuration_id", "poll_interval_seconds", "keboola_job_id",
        "keboola_job_status", "last_check_at", "next_check_at", "created_at", "updated_at", "completed_at",
        "last_error",
    )
]  # fmt: skip
_BATCH_COLUMNS = [
    _batches.c[name]
    for name in (
        "job_id", "batch_id", "status", "request_total", "request_completed", "request_failed", "output_file_id",
        "error_file_id", "finished_at", "updated_at",
    )
]  # fmt: skip


@dataclass(frozen=True)
class JobCursor:
    """Where a page ends: the sort value of its last job (None: a job with no next check) and that job's id."""

    order: JobOrder
    value: datetime | None
    job_id: int

    def encode(self) -> str:
        payload = [self.order.value, self.value.isoformat() if self.value else None, self.job_id]
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, field: str, text: str, order: JobOrder) -> JobCursor:
        """The cursor a previous page handed out; refused unless it is one, for the same sort order."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            order_value, value, job_id = json.loads(raw)
            cursor = cls(JobOrder(order_value), datetime.fromisoformat(value) if value else None, int(job_id))
        except (binascii.Error, ValueError, TypeError):
            raise ValidationError(field, "is not a cursor this list handed out") from None
        if cursor.order is not order or (cursor.value is None and order is not JobOrder.NEXT_CHECK):
            raise ValidationError(field, f"was handed out for another sort order than {order.value!r}")
        return cursor


def cursor_after(job: Any, order: JobOrder) -> JobCursor:
    """The cursor of the page that follows `job` in the list's order."""
    return JobCursor(order, job.next_check_at if order is JobOrder.NEXT_CHECK else job.created_at, job.id)


def _after(cursor: JobCursor) -> ColumnElement[bool]:
    if cursor.order is JobOrder.CREATED_DESC:
        return tuple_(PollingJob.created_at, PollingJob.id) < tuple_(cursor.value, cursor.job_id)
    return tuple_(PollingJob.created_at, PollingJob.id) > tuple_(cursor.value, cursor.job_id)


def _segments(after: JobCursor | None) -> list[ColumnElement[bool]]:
    """By next check, the list is two runs: jobs with a next check, by (time, id), then those without, by id."""
    with_time = PollingJob.next_check_at.is_not(None)
    without = PollingJob.next_check_at.is_(None)
    if after is None:
        return [with_time, without]
    if after.value is None:
        return [without & (PollingJob.id > after.job_id)]
    # A row comparison with NULL is never true, so this run holds only jobs with a next check.
    return [tuple_(PollingJob.next_check_at, PollingJob.id) > tuple_(after.value, after.job_id), without]


def _conditions(order: JobOrder, after: JobCursor | None) -> list[ColumnElement[bool] | None]:
    """The runs a page reads, in order (None: the whole list)."""
    if order is JobOrder.NEXT_CHECK:
        return list(_segments(after))
    return [None if after is None else _after(after)]


def jobs_after(
    session: Session,
    *,
    status: JobStatus | None = None,
    search: str | None = None,
    order: JobOrder = JobOrder.CREATED,
    after: JobCursor | None = None,
    limit: int,
) -> tuple[list[SimpleNamespace], JobCursor | None]:
    """Up to `limit` jobs after `after` in the list's order, and the cursor of the next page (None: the end).

    Each job is read-only: PollingJob's columns as attributes, with `batches`, `openai_secret`,
    `keboola_secret` and `notification_targets` as `presenters.job_view` reads them. Plain rows, not ORM
    objects: building 100 ORM jobs with their batches cost most of a page's time.
    """
    base = filtered_jobs(select(*_JOB_COLUMNS), status=status, search=search, order=order)
    rows: list[Any] = []
    for condition in _conditions(order, after):
        query = base if condition is None else base.where(condition)
        remaining = limit + 1 - len(rows)
        if remaining > 0:
            rows += session.execute(query.limit(remaining)).all()
    jobs = _listed(session, rows[:limit])
    if len(rows) <= limit:
        return jobs, None
    return jobs, cursor_after(jobs[-1], order)


def _among(session: Session, column: Any, ids: Collection[int]) -> ColumnElement[bool]:
    """`column IN ids`. On PostgreSQL as `= ANY(array)`: one parameter, so the statement is the same for every
    page and psycopg prepares it once, where an IN list renders and parses one parameter per id each time."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(f"{column.name}_list", list(ids), type_=ARRAY(Integer)))
    return column.in_(list(ids))


def _listed(session: Session, rows: list[Any]) -> list[SimpleNamespace]:
    """The page's jobs with their batches, secrets and notification targets: three more queries in all."""
    job_ids = [row.id for row in rows]
    secret_ids = {row.openai_secret_id for row in rows} | {row.keboola_secret_id for row in rows}
    secrets = {
        row.id: SimpleNamespace(id=row.id, name=row.name)
        for row in session.execute(
            select(_secrets.c.id, _secrets.c.name).where(_among(session, _secrets.c.id, secret_ids))
        )
    }
    batches: dict[int, list[SimpleNamespace]] = defaultdict(list)
    for row in session.execute(
        select(*_BATCH_COLUMNS).where(_among(session, _batches.c.job_id, job_ids)).order_by(_batches.c.id)
    ):
        batches[row.job_id].append(SimpleNamespace(**row._mapping))
    targets: dict[int, list[SimpleNamespace]] = defaultdict(list)
    for row in session.execute(
        select(_notifications.c.job_id, _secrets.c.id, _secrets.c.name)
        .join(_secrets, _secrets.c.id == _notifications.c.secret_id)
        .where(_among(session, _notifications.c.job_id, job_ids))
        .order_by(_secrets.c.id)
    ):
        targets[row.job_id].append(SimpleNamespace(id=row.id, name=row.name))
    return [
        SimpleNamespace(
            **row._mapping,
            openai_secret=secrets[row.openai_secret_id],
            keboola_secret=secrets[row.keboola_secret_id],
            batches=batches[row.id],
            notification_targets=targets[row.id],
        )
        for row in rows
    ]
