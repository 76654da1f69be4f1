"""`/jobs`: the job list (search, filter, sort, pages, export), a job's live page and its actions, new and edit."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for

from api.database import api_state, db_session
from api.jobs import export_response
from api.schemas import MAX_ID
from api.web.actions import commit, notify, perform
from teckochecker.errors import ValidationError
from teckochecker.models import FINISHED_JOB_STATUSES, JobStatus, PollingJob, SecretType
from teckochecker.presenters import keboola_job_url
from teckochecker.services import export
from teckochecker.services import jobs as job_service
from teckochecker.services.events import list_events
from teckochecker.services.secrets import list_secrets
from teckochecker.services.validation import secret_reference, whole_number

blp = Blueprint("jobs", __name__, url_prefix="/jobs")

PAGE_SIZE = 50
TIMELINE_LENGTH = 50
SEARCH_MAX_LENGTH = 255
JOB_ID = f"<int(min=1, max={MAX_ID}):job_id>"
ORDER_LABELS = {
    job_service.JobOrder.CREATED_DESC: "Newest first",
    job_service.JobOrder.CREATED: "Oldest first",
    job_service.JobOrder.NEXT_CHECK: "Next check",
}
DEFAULT_ORDER = job_service.JobOrder.CREATED_DESC
JOB_FIELDS = (
    "name",
    "keboola_stack_url",
    "keboola_component_id",
    "keboola_configuration_id",
)


def _filters() -> tuple[dict[str, Any], list[str]]:
    """The list's filter from the query string; a value that cannot be used is dropped and reported."""
    problems = []
    search = request.args.get("q", "").strip()[:SEARCH_MAX_LENGTH]
    if search and not search.isprintable():
        problems.append("The search must not contain control characters.")
        search = ""
    status = None
    if request.args.get("status"):
        try:
            status = job_service.parse_job_status("status", request.args["status"])
        except ValidationError as error:
            problems.append(f"Status {error.message}.")
    try:
        order = job_service.JobOrder(request.args.get("sort") or DEFAULT_ORDER)
    except ValueError:
        order = DEFAULT_ORDER
    return {"status": status, "search": search or None, "order": order}, problems


def _page_number() -> int:
    page = whole_number(request.args.get("page", "1")) or 1
    return page if page < 10**6 else 1


@blp.route("")
def job_list() -> str:
    filters, problems = _filters()
    session = db_session()
    total = job_service.count_jobs(session, status=filters["status"], search=filters["search"])
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(_page_number(), pages)
    jobs = job_service.list_jobs(session, **filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    query = {
        "q": filters["search"] or "",
        "status": filters["status"].value if filters["status"] else "",
        "sort": filters["order"].value,
    }
    return render_template(
        "jobs/list.html",
        rows=[(job, job_service.progress_of(job)) for job in jobs],
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * PAGE_SIZE + 1,
        query=query,
        problems=problems,
        statuses=list(JobStatus),
        orders=ORDER_LABELS,
        export_formats=list(export.ExportFormat),
    )


@blp.route("/export")
def job_export() -> Response:
    filters, _problems = _filters()
    export_format = export.ExportFormat.JSON if request.args.get("format") == "json" else export.ExportFormat.CSV
    return export_response(export_format, **filters)


def _secret_choices() -> dict[str, list[Any]]:
    secrets = list_secrets(db_session())
    return {kind.value: [secret for secret in secrets if secret.type == kind] for kind in SecretType}


def _job_form(template: str, *, values: dict[str, Any], errors: dict[str, str], status: int = 200, **context: Any):
    return (
        render_template(
            template, values=values, errors=errors, secrets=_secret_choices(), settings=api_state().settings, **context
        ),
        status,
    )


def _interval(raw: str) -> int | None:
    if not raw.strip():
        return None
    interval = whole_number(raw)
    if interval is None:
        settings = api_state().settings
        raise ValidationError(
            "poll_interval_seconds",
            f"must be a whole number of seconds between {settings.min_poll_interval} and {settings.max_poll_interval}",
        )
    return interval


def _secret_id(field: str) -> int | str:
    return secret_reference(request.form.get(field, ""))


@blp.route("/new", methods=["GET", "POST"])
def new_job() -> Any:
    settings = api_state().settings
    if request.method == "GET":
        values = {"poll_interval_seconds": str(settings.default_poll_interval)}
        return _job_form("jobs/new.html", values=values, errors={})
    values = request.form.to_dict()
    try:
        draft = job_service.JobDraft(
            name=values.get("name", ""),
            batch_ids=job_service.split_batch_ids(values.get("batch_ids", "")),
            openai_secret=_secret_id("openai_secret"),
            keboola_secret=_secret_id("keboola_secret"),
            keboola_stack_url=values.get("keboola_stack_url", ""),
            keboola_component_id=values.get("keboola_component_id", ""),
            keboola_configuration_id=values.get("keboola_configuration_id", ""),
            poll_interval_seconds=_interval(values.get("poll_interval_seconds", "")),
        )
        job = job_service.create_job(db_session(), settings, draft)
        commit()
    except ValidationError as error:
        db_session().rollback()
        return _job_form("jobs/new.html", values=values, errors={error.field: error.message}, status=422)
    return _redirect_with_message(job, f"Job '{job.name}' created; it is checked at once.")


def _redirect_with_message(job: PollingJob, message: str) -> Response:
    notify(message)
    return redirect(url_for("web.jobs.job_detail", job_id=job.id))


def _detail_context(job: PollingJob) -> dict[str, Any]:
    return {
        "job": job,
        "totals": job_service.progress_of(job),
        "actions": job_service.allowed_actions(job) if g.principal.can_write else frozenset(),
        "batches": [(batch, batch.request_completed + batch.request_failed) for batch in job.batches],
        "events": list_events(db_session(), job.id, limit=TIMELINE_LENGTH),
        "live": job.status not in FINISHED_JOB_STATUSES,
        "keboola_link": keboola_job_url(job),
    }


@blp.route(f"/{JOB_ID}")
def job_detail(job_id: int) -> str:
    job = job_service.get_job(db_session(), job_id)
    return render_template("jobs/detail.html", **_detail_context(job))


@blp.route(f"/{JOB_ID}/live")
def job_live(job_id: int) -> str:
    """The part of the job page that changes, polled by app.js every 2 seconds while the job runs."""
    job = job_service.get_job(db_session(), job_id)
    return render_template("jobs/_live.html", **_detail_context(job))


def _job_action(job_id: int, change: Any, message: str, *, then: str | None = None) -> Response:
    def action() -> str:
        session = db_session()
        job = change(session, job_service.get_job(session, job_id))
        return message.format(name=job.name if job is not None else "")

    return perform(action, then=then or url_for("web.jobs.job_detail", job_id=job_id))


@blp.route(f"/{JOB_ID}/pause", methods=["POST"])
def pause(job_id: int) -> Response:
    return _job_action(job_id, job_service.pause_job, "Job '{name}' paused.")


@blp.route(f"/{JOB_ID}/resume", methods=["POST"])
def resume(job_id: int) -> Response:
    return _job_action(job_id, job_service.resume_job, "Job '{name}' resumed; it is checked at once.")


@blp.route(f"/{JOB_ID}/retry", methods=["POST"])
def retry(job_id: int) -> Response:
    return _job_action(job_id, job_service.retry_job, "Job '{name}' will start its Keboola job again.")


@blp.route(f"/{JOB_ID}/check", methods=["POST"])
def check(job_id: int) -> Response:
    return _job_action(job_id, job_service.check_now, "Job '{name}' will be checked within a few seconds.")


@blp.route(f"/{JOB_ID}/delete", methods=["POST"])
def delete(job_id: int) -> Response:
    def delete_and_name(session: Any, job: PollingJob) -> PollingJob:
        job_service.delete_job(session, job)
        return job

    return _job_action(job_id, delete_and_name, "Job '{name}' deleted.", then=url_for("web.jobs.job_list"))


@blp.route(f"/{JOB_ID}/edit", methods=["GET", "POST"])
def edit(job_id: int) -> Any:
    session = db_session()
    job = job_service.get_job(session, job_id)
    current = {field: getattr(job, field) for field in JOB_FIELDS}
    current["poll_interval_seconds"] = str(job.poll_interval_seconds)
    if request.method == "GET":
        return _job_form("jobs/edit.html", values=current, errors={}, job=job)
    values = request.form.to_dict()
    try:
        changed = {
            field: values.get(field, "") for field in JOB_FIELDS if values.get(field, "").strip() != current[field]
        }
        interval = values.get("poll_interval_seconds", "")
        if interval.strip() != current["poll_interval_seconds"]:
            changed["poll_interval_seconds"] = _interval(interval) if interval.strip() else ""
        job_service.update_job(session, api_state().settings, job, job_service.JobChanges(**changed))
        commit()
    except ValidationError as error:
        session.rollback()
        return _job_form("jobs/edit.html", values=values, errors={error.field: error.message}, job=job, status=422)
    except job_service.StatusConflictError as error:
        session.rollback()
        return _job_form("jobs/edit.html", values=values, errors={"job": str(error)}, job=job, status=409)
    return _redirect_with_message(job, f"Job '{job.name}' updated.")
