"""Export the jobs of a filter as CSV or JSON: one flat row per job, streamed, so 100,000 jobs need little memory.

The same rows feed the API (`GET /api/jobs/export`), the dashboard and `teckochecker job export`.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased

from teckochecker.errors import ValidationError
from teckochecker.models import BATCH_TERMINAL_STATUSES, JobBatch, JobStatus, PollingJob, Secret
from teckochecker.presenters import iso
from teckochecker.services.jobs import JobOrder, filtered_jobs

EXPORT_COLUMNS = (
    "id",
    "name",
    "status",
    "batches_total",
    "batches_finished",
    "requests_total",
    "requests_completed",
    "requests_failed",
    "openai_secret",
    "keboola_secret",
    "keboola_stack_url",
    "keboola_component_id",
    "keboola_configuration_id",
    "keboola_job_id",
    "keboola_job_status",
    "poll_interval_seconds",
    "last_check_at",
    "next_check_at",
    "created_at",
    "completed_at",
    "last_error",
)
FETCH_SIZE = 1000
# A spreadsheet runs a cell that starts with one of these as a formula; names and errors come from users.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    JSON = "json"

    @property
    def media_type(self) -> str:
        return "text/csv; charset=utf-8" if self is ExportFormat.CSV else "application/json"


def parse_export_format(field: str, value: str | None) -> ExportFormat:
    try:
        return ExportFormat((value or "").strip().lower())
    except ValueError:
        raise ValidationError(field, f"must be csv or json, got {value!r}") from None


def export_rows(
    session: Session, *, status: JobStatus | None = None, search: str | None = None, order: JobOrder = JobOrder.CREATED
) -> Iterator[dict[str, Any]]:
    """One dict per job of the filter, in the list's order; batch figures are summed in the database."""
    batches = (
        select(
            JobBatch.job_id,
            func.count().label("total"),
            func.sum(case((JobBatch.status.in_(BATCH_TERMINAL_STATUSES), 1), else_=0)).label("finished"),
            func.sum(JobBatch.request_total).label("requests_total"),
            func.sum(JobBatch.request_completed).label("requests_completed"),
            func.sum(JobBatch.request_failed).label("requests_failed"),
        )
        .group_by(JobBatch.job_id)
        .subquery()
    )
    openai_secret, keboola_secret = aliased(Secret), aliased(Secret)
    query = (
        filtered_jobs(
            select(PollingJob, batches, openai_secret.name, keboola_secret.name),
            status=status,
            search=search,
            order=order,
        )
        .outerjoin(batches, batches.c.job_id == PollingJob.id)
        .join(openai_secret, openai_secret.id == PollingJob.openai_secret_id)
        .join(keboola_secret, keboola_secret.id == PollingJob.keboola_secret_id)
        .execution_options(yield_per=FETCH_SIZE)
    )
    for job, _job_id, total, finished, requests, completed, failed, openai_name, keboola_name in session.execute(query):
        yield {
            "id": job.id,
            "name": job.name,
            "status": job.status,
            "batches_total": total or 0,
            "batches_finished": finished or 0,
            "requests_total": requests or 0,
            "requests_completed": completed or 0,
            "requests_failed": failed or 0,
            "openai_secret": openai_name,
            "keboola_secret": keboola_name,
            "keboola_stack_url": job.keboola_stack_url,
            "keboola_component_id": job.keboola_component_id,
            "keboola_configuration_id": job.keboola_configuration_id,
            "keboola_job_id": job.keboola_job_id,
            "keboola_job_status": job.keboola_job_status,
            "poll_interval_seconds": job.poll_interval_seconds,
            "last_check_at": iso(job.last_check_at),
            "next_check_at": iso(job.next_check_at),
            "created_at": iso(job.created_at),
            "completed_at": iso(job.completed_at),
            "last_error": job.last_error,
        }


def _spreadsheet_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def render_csv(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """CSV text, a chunk per row; text cells a spreadsheet would run as a formula are prefixed with `'`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _spreadsheet_safe(value) for key, value in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def render_json(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A JSON array, a chunk per row."""
    yield "["
    for index, row in enumerate(rows):
        yield ("," if index else "") + "\n" + json.dumps(row, ensure_ascii=False)
    yield "\n]\n"


def render(export_format: ExportFormat, rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    return render_csv(rows) if export_format is ExportFormat.CSV else render_json(rows)
