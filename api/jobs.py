"""`/api/jobs`: create, list, show, edit, pause, resume and delete polling jobs, and read their history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Response, request, url_for
from flask_smorest import abort

from api.blueprint import PAGINATION_HEADER, Blueprint
from api.database import UnitOfWorkView, api_state, db_session
from api.errors import documents_errors, domain_fields_as
from api.schemas import (
    LOCATION_HEADER,
    MAX_ID,
    EventQuerySchema,
    EventSchema,
    JobCreateSchema,
    JobExportQuerySchema,
    JobListQuerySchema,
    JobSchema,
    JobUpdateSchema,
)
from teckochecker.errors import ValidationError
from teckochecker.models import JobEvent, JobStatus, PollingJob
from teckochecker.presenters import job_view
from teckochecker.services import export
from teckochecker.services import jobs as job_service
from teckochecker.services.events import list_events
from teckochecker.services.job_pages import JobCursor, cursor_after, jobs_after

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/api/jobs",
    description="Polling jobs: each watches OpenAI batches and starts one Keboola job when they have all finished.",
)

JOB_PATH = f"/<int(min=1, max={MAX_ID}):job_id>"
JOB_ID_PARAMETER = [{"in": "path", "name": "job_id", "description": "The job's id.", "example": 1}]

# The `curl -X POST …/api/jobs` body of docs/USER_GUIDE.md, verbatim.
GUIDE_CREATE_EXAMPLE = {
    "name": "Test job",
    "batch_id": "batch_123",
    "openai_secret_id": 1,
    "keboola_secret_id": 2,
    "keboola_stack_url": "https://connection.eu-central-1.keboola.com",
    "keboola_component_id": "kds-team.app-custom-python",
    "keboola_configuration_id": "123456",
    "poll_interval_seconds": 120,
}


def _draft(data: dict[str, Any]) -> tuple[job_service.JobDraft, dict[str, str]]:
    """The domain's draft, and the domain field names the client spelled differently (for error messages)."""
    aliases: dict[str, str] = {}
    if "batch_id" in data:
        batch_ids = [data["batch_id"]]
        aliases["batch_ids"] = "batch_id"
    else:
        batch_ids = data["batch_ids"]

    def secret(field: str) -> int | str:
        if f"{field}_id" in data:
            aliases[field] = f"{field}_id"
            return data[f"{field}_id"]
        return data[field]

    draft = job_service.JobDraft(
        name=data["name"],
        batch_ids=batch_ids,
        openai_secret=secret("openai_secret"),
        keboola_secret=secret("keboola_secret"),
        keboola_stack_url=data["keboola_stack_url"],
        keboola_component_id=data["keboola_component_id"],
        keboola_configuration_id=data["keboola_configuration_id"],
        poll_interval_seconds=data.get("poll_interval_seconds"),
        notify=data.get("notify"),
    )
    return draft, aliases


# The list's headers: totals for pages by number, the next cursor for either kind of page.
LIST_HEADERS = {
    "X-Pagination": PAGINATION_HEADER,
    "X-Next-Cursor": {
        "description": "The `after` of the next page; absent on the last page.",
        "schema": {"type": "string"},
    },
    "Link": {
        "description": 'The next page\'s URL, as `<…>; rel="next"`; absent on the last page.',
        "schema": {"type": "string"},
    },
}


@blp.route("")
class Jobs(UnitOfWorkView):
    @blp.arguments(JobListQuerySchema, location="query")
    @blp.response(200, JobSchema(many=True), headers=LIST_HEADERS)
    @documents_errors(blp, 401, 422)
    def get(self, query: dict[str, Any]) -> Response:
        """List jobs, optionally filtered by status and by text in the name or a batch id

        Sorted by `sort` (oldest first by default). Paginated with `page` and `page_size` (at most 100; the
        `X-Pagination` header holds the totals), or by cursor with `after` (empty for the first page, then each
        page's `X-Next-Cursor`): no totals, and the last of 100,000 jobs as fast as the first.
        """
        session = db_session()
        filters = {"status": query.get("status"), "search": query.get("q"), "order": query["sort"]}
        size = query["page_size"]
        headers: dict[str, str] = {}
        if "after" in query:
            after = _cursor(query["after"], query["sort"]) if query["after"] else None
            jobs, cursor = jobs_after(session, **filters, after=after, limit=size)
        else:
            total = job_service.count_jobs(session, status=filters["status"], search=filters["search"])
            headers["X-Pagination"] = json.dumps(blp.pagination_metadata(query["page"], size, total))
            offset = (query["page"] - 1) * size
            # Past the last page: nothing to fetch, and no huge OFFSET reaches the database.
            jobs = job_service.list_jobs(session, **filters, limit=size, offset=offset) if offset < total else []
            # A numbered page also says where the next begins, so a client can go on by cursor from there.
            cursor = cursor_after(jobs[-1], query["sort"]) if jobs and offset + size < total else None
        if cursor is not None:
            headers["X-Next-Cursor"] = cursor.encode()
            next_page = url_for("jobs.Jobs", **{**request.args, "after": headers["X-Next-Cursor"]}, _external=False)
            headers["Link"] = f'<{next_page}>; rel="next"'
        # The same JSON as JobSchema (tests/api/test_job_shape.py holds them together), four times faster to build.
        return Response(json.dumps([job_view(job) for job in jobs]), mimetype="application/json", headers=headers)

    @blp.arguments(JobCreateSchema, example=GUIDE_CREATE_EXAMPLE)
    @blp.response(201, JobSchema, headers=LOCATION_HEADER)
    @documents_errors(blp, 401, 403, 422)
    def post(self, data: dict[str, Any]) -> tuple[PollingJob, int, dict[str, str]]:
        """Create a polling job; it is checked at once

        Give `batch_id` or a `batch_ids` list, and each secret by id (`openai_secret_id`) or by name
        (`openai_secret`).
        """
        draft, aliases = _draft(data)
        with domain_fields_as(aliases):
            job = job_service.create_job(db_session(), api_state().settings, draft)
        return job, 201, {"Location": url_for("jobs.JobById", job_id=job.id)}


EXPORT_EXAMPLE_CSV = (
    "id,name,status,batches_total,batches_finished,requests_total,requests_completed,requests_failed,…\r\n"
    "1,Test job,active,1,0,1000,990,10,…\r\n"
)


def export_response(
    export_format: export.ExportFormat, *, status: JobStatus | None, search: str | None, order: job_service.JobOrder
) -> Response:
    """The export, streamed from a session of its own: the request's session ends before the body is sent."""
    sessions = api_state().sessions

    def chunks() -> Iterator[str]:
        # Closed when the body is complete or the client goes away (the server closes the generator).
        with sessions() as session:
            yield from export.render(
                export_format, export.export_rows(session, status=status, search=search, order=order)
            )

    return Response(
        chunks(),
        mimetype=export_format.media_type,
        headers={"Content-Disposition": f'attachment; filename="teckochecker-jobs.{export_format.value}"'},
    )


@blp.route("/export")
class JobExport(UnitOfWorkView):
    @blp.arguments(JobExportQuerySchema, location="query")
    @blp.doc(
        summary="Export the jobs of a filter as CSV or JSON",
        description="Takes the list's `status`, `q` and `sort`. Columns: "
        + ", ".join(f"`{column}`" for column in export.EXPORT_COLUMNS)
        + ". In CSV, text that a spreadsheet would run as a formula starts with `'`.",
        responses={
            "200": {
                "description": "Every job of the filter, one flat row each (no pagination), in the list's order.",
                "content": {
                    "text/csv": {"schema": {"type": "string"}, "example": EXPORT_EXAMPLE_CSV},
                    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                },
            }
        },
    )
    @documents_errors(blp, 401, 422)
    def get(self, query: dict[str, Any]) -> Response:
        return export_response(query["format"], status=query.get("status"), search=query.get("q"), order=query["sort"])


@blp.route(JOB_PATH, parameters=JOB_ID_PARAMETER)
class JobById(UnitOfWorkView):
    @blp.response(200, JobSchema)
    @documents_errors(blp, 401, 404)
    def get(self, job_id: int) -> PollingJob:
        """Show a job with its batches, Keboola job and check times"""
        return job_service.get_job(db_session(), job_id)

    @blp.arguments(JobUpdateSchema, example={"poll_interval_seconds": 300})
    @blp.response(200, JobSchema)
    @documents_errors(blp, 401, 403, 404, 409, 422)
    def patch(self, data: dict[str, Any], job_id: int) -> PollingJob:
        """Edit an active, paused or failed job

        Only the fields given change. 409 with `current_status` when the job can no longer be edited.
        """
        session = db_session()
        job = job_service.get_job(session, job_id)
        return job_service.update_job(session, api_state().settings, job, job_service.JobChanges(**data))

    @blp.response(204)
    @documents_errors(blp, 401, 403, 404, 409)
    def delete(self, job_id: int) -> None:
        """Delete a job with its batches and history

        409 while the job is starting its Keboola job.
        """
        session = db_session()
        job_service.delete_job(session, job_service.get_job(session, job_id))


@blp.route(f"{JOB_PATH}/pause", parameters=JOB_ID_PARAMETER)
class JobPause(UnitOfWorkView):
    @blp.response(200, JobSchema)
    @documents_errors(blp, 401, 403, 404, 409)
    def post(self, job_id: int) -> PollingJob:
        """Pause an active job

        409 with `current_status` when the job is not active.
        """
        session = db_session()
        return job_service.pause_job(session, job_service.get_job(session, job_id))


@blp.route(f"{JOB_PATH}/resume", parameters=JOB_ID_PARAMETER)
class JobResume(UnitOfWorkView):
    @blp.response(200, JobSchema)
    @documents_errors(blp, 401, 403, 404, 409)
    def post(self, job_id: int) -> PollingJob:
        """Resume a paused job, or a failed one whose Keboola job was never started

        The job is checked at once. 409 with `current_status` otherwise.
        """
        session = db_session()
        return job_service.resume_job(session, job_service.get_job(session, job_id))


@blp.route(f"{JOB_PATH}/retry", parameters=JOB_ID_PARAMETER)
class JobRetry(UnitOfWorkView):
    @blp.response(200, JobSchema)
    @documents_errors(blp, 401, 403, 404, 409)
    def post(self, job_id: int) -> PollingJob:
        """Re-arm the Keboola trigger of a failed job whose batches have all finished

        It first looks for a Keboola job an earlier attempt may have started. 409 with `current_status` otherwise.
        """
        session = db_session()
        return job_service.retry_job(session, job_service.get_job(session, job_id))


@blp.route(f"{JOB_PATH}/check", parameters=JOB_ID_PARAMETER)
class JobCheck(UnitOfWorkView):
    @blp.response(200, JobSchema)
    @documents_errors(blp, 401, 403, 404, 409)
    def post(self, job_id: int) -> PollingJob:
        """Check an active job now

        Its next check becomes now, so beat hands it to a worker at its next tick. 409 with `current_status`
        when the job is not active.
        """
        session = db_session()
        return job_service.check_now(session, job_service.get_job(session, job_id))


@blp.route(f"{JOB_PATH}/events", parameters=JOB_ID_PARAMETER)
class JobEvents(UnitOfWorkView):
    @blp.arguments(EventQuerySchema, location="query")
    @blp.response(200, EventSchema(many=True))
    @documents_errors(blp, 401, 404, 422)
    def get(self, query: dict[str, Any], job_id: int) -> list[JobEvent]:
        """A job's history, newest first

        For older events pass the last `id` you received as `before_id`; an empty list means the start.
        """
        session = db_session()
        job = job_service.get_job(session, job_id)
        return list_events(session, job.id, limit=query["limit"], before_id=query.get("before_id"))


def _cursor(text: str, order: job_service.JobOrder) -> JobCursor:
    try:
        return JobCursor.decode("after", text, order)
    except ValidationError as error:
        abort(422, message=f"Invalid input: query.after: {error.message}", errors={"query": {"after": [error.message]}})
