"""Plain-dict views of the models, for `--json` output. Secret values never appear here.

`job_view` is also the API's job shape: api/schemas.py's JobSchema prints the same JSON, and
tests/api/test_job_shape.py holds the two together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from teckochecker.models import JobBatch, JobEvent, PollingJob, Secret
from teckochecker.services.secrets import notification_events


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def keboola_job_url(job: PollingJob) -> str | None:
    """The Keboola job's page in Keboola's UI, once Keboola has told us the job's project (on the first look
    after the start); None before that."""
    if job.keboola_job_id is None or job.keboola_project_id is None:
        return None
    stack = job.keboola_stack_url.rstrip("/")
    return f"{stack}/admin/projects/{quote(job.keboola_project_id, safe='')}/queue/{quote(job.keboola_job_id, safe='')}"


def secret_view(secret: Secret) -> dict[str, Any]:
    return {
        "id": secret.id,
        "name": secret.name,
        "type": secret.type,
        "events": notification_events(secret),
        "created_at": iso(secret.created_at),
        "updated_at": iso(secret.updated_at),
    }


def batch_view(batch: JobBatch) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "status": batch.status,
        "request_counts": {
            "total": batch.request_total,
            "completed": batch.request_completed,
            "failed": batch.request_failed,
        },
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "finished_at": iso(batch.finished_at),
        "updated_at": iso(batch.updated_at),
    }


def event_view(event: JobEvent) -> dict[str, Any]:
    return {"id": event.id, "kind": event.kind, "message": event.message, "created_at": iso(event.created_at)}


def job_view(job: PollingJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "openai_secret": {"id": job.openai_secret.id, "name": job.openai_secret.name},
        "keboola_secret": {"id": job.keboola_secret.id, "name": job.keboola_secret.name},
        "notify": [{"id": target.id, "name": target.name} for target in job.notification_targets],
        "keboola_stack_url": job.keboola_stack_url,
        "keboola_component_id": job.keboola_component_id,
        "keboola_configuration_id": job.keboola_configuration_id,
        "poll_interval_seconds": job.poll_interval_seconds,
        "batches": [batch_view(batch) for batch in job.batches],
        "keboola_job_id": job.keboola_job_id,
        "keboola_job_status": job.keboola_job_status,
        "last_check_at": iso(job.last_check_at),
        "next_check_at": iso(job.next_check_at),
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "completed_at": iso(job.completed_at),
        "last_error": job.last_error,
    }
