"""`teckochecker job …`: polling jobs."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from typing import IO

import click
from sqlalchemy.orm import Session

from commands.context import AppContext, pass_app
from commands.params import JOB_ID
from commands.tables import EMPTY, render_table, status_label, success, when
from teckochecker.models import JobStatus, PollingJob
from teckochecker.presenters import event_view, job_view
from teckochecker.services import export
from teckochecker.services import jobs as job_service
from teckochecker.services.events import list_events
from teckochecker.services.validation import secret_reference

RECENT_EVENTS = 10
WRAP_AT = 60


@click.group("job")
def job_group() -> None:
    """Create and manage polling jobs."""


@job_group.command("create")
@click.option("--name", required=True, help="Descriptive job name.")
@click.option("--batch-id", "batch_ids", required=True, multiple=True, help="OpenAI batch id; repeat for several.")
@click.option("--openai-secret", required=True, help="Name of the OpenAI secret.")
@click.option("--keboola-secret", required=True, help="Name of the Keboola secret.")
@click.option("--keboola-stack", required=True, help="Keboola stack URL, e.g. https://connection.keboola.com")
@click.option("--component-id", required=True, help="Keboola component id, e.g. kds-team.app-custom-python")
@click.option("--config-id", required=True, help="Keboola configuration id.")
@click.option("--poll-interval", type=int, help="Seconds between checks (default DEFAULT_POLL_INTERVAL).")
@click.option(
    "--notify",
    "notify",
    multiple=True,
    help="Notification target (a `notification` secret) to tell of the outcome; repeat for several "
    "(default: DEFAULT_NOTIFY).",
)
@pass_app
def create_job(
    app: AppContext,
    name: str,
    batch_ids: tuple[str, ...],
    openai_secret: str,
    keboola_secret: str,
    keboola_stack: str,
    component_id: str,
    config_id: str,
    poll_interval: int | None,
    notify: tuple[str, ...],
) -> None:
    """Watch OpenAI batches and start a Keboola job when they all finish."""
    draft = job_service.JobDraft(
        name=name,
        batch_ids=list(batch_ids),
        openai_secret=secret_reference(openai_secret),
        keboola_secret=secret_reference(keboola_secret),
        keboola_stack_url=keboola_stack,
        keboola_component_id=component_id,
        keboola_configuration_id=config_id,
        poll_interval_seconds=poll_interval,
        notify=[secret_reference(target) for target in notify] if notify else None,
    )
    with app.session() as session:
        job = job_service.create_job(session, app.settings, draft)
    success(f"Polling job '{job.name}' created successfully (ID: {job.id})")


def _batches_done(job: PollingJob) -> str:
    return f"{sum(batch.is_terminal for batch in job.batches)}/{len(job.batches)}"


@job_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), help="Only jobs in this status.")
@click.option("--search", help="Only jobs whose name or a batch id contains this text.")
@click.option("--sort", type=click.Choice([o.value for o in job_service.JobOrder]), default="created",
              show_default=True, help="Oldest first, newest first (-created) or soonest next check.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def list_jobs(app: AppContext, status: str | None, search: str | None, sort: str, as_json: bool) -> None:
    """List polling jobs."""
    with app.session() as session:
        jobs = job_service.list_jobs(
            session, status=JobStatus(status) if status else None, search=search, order=job_service.JobOrder(sort)
        )
        if as_json:
            click.echo(json.dumps([job_view(job) for job in jobs], indent=2))
            return
        if not jobs:
            click.echo("No polling jobs" + (f" with status {status}" if status else "") + ".")
            return
        rows = [
            [
                str(job.id),
                job.name,
                status_label(job.status),
                _batches_done(job),
                f"{job.poll_interval_seconds}s",
                when(job.last_check_at),
                when(job.next_check_at),
            ]
            for job in jobs
        ]
    headers = ["ID", "Name", "Status", "Batches", "Interval", "Last Check", "Next Check"]
    click.echo(render_table("Polling Jobs", rows, headers=headers))


def _wrap(text: str | None) -> str:
    return "\n".join(textwrap.wrap(text, WRAP_AT)) if text else EMPTY


def _details_rows(job: PollingJob) -> list[list[str]]:
    batch_row = (
        ["Batch ID", job.batches[0].batch_id]
        if len(job.batches) == 1
        else ["Batches", f"{len(job.batches)} ({_batches_done(job)} finished)"]
    )
    keboola_job = EMPTY
    if job.keboola_job_id:
        keboola_job = f"{job.keboola_job_id} ({job.keboola_job_status or 'unknown'})"
    return [
        ["ID", str(job.id)],
        ["Name", job.name],
        ["Status", status_label(job.status)],
        batch_row,
        ["Poll Interval", f"{job.poll_interval_seconds} seconds"],
        ["Last Check", when(job.last_check_at)],
        ["Next Check", when(job.next_check_at)],
        ["Created At", when(job.created_at)],
        ["OpenAI Secret", job.openai_secret.name],
        ["Keboola Secret", job.keboola_secret.name],
        ["Notify", ", ".join(target.name for target in job.notification_targets) or EMPTY],
        ["Keboola Stack", job.keboola_stack_url],
        ["Component ID", job.keboola_component_id],
        ["Config ID", job.keboola_configuration_id],
        ["Keboola Job", keboola_job],
        ["Completed At", when(job.completed_at)],
        ["Last Error", _wrap(job.last_error)],
    ]


@job_group.command("show")
@click.argument("job_id", type=JOB_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@pass_app
def show_job(app: AppContext, job_id: int, as_json: bool) -> None:
    """Show a job, its batches and its recent history."""
    with app.session() as session:
        job = job_service.get_job(session, job_id)
        events = list_events(session, job.id, limit=RECENT_EVENTS)
        if as_json:
            click.echo(json.dumps({**job_view(job), "recent_events": [event_view(e) for e in events]}, indent=2))
            return
        details = render_table("Polling Job Details", _details_rows(job))
        batch_rows = [
            [
                batch.batch_id,
                batch.status,
                f"{batch.request_completed}/{batch.request_total}",
                str(batch.request_failed),
                when(batch.updated_at),
            ]
            for batch in job.batches
        ]
    click.echo(details)
    click.echo(render_table("Batches", batch_rows, headers=["Batch ID", "Status", "Completed", "Failed", "Updated At"]))
    if events:
        event_rows = [[when(e.created_at), e.kind, _wrap(e.message)] for e in events]
        click.echo(render_table("Recent Events", event_rows, headers=["Time", "Event", "Message"]))


def _change_job(app: AppContext, job_id: int, change: Callable[[Session, PollingJob], PollingJob]) -> PollingJob:
    with app.session() as session:
        return change(session, job_service.get_job(session, job_id))


@job_group.command("pause")
@click.argument("job_id", type=JOB_ID)
@pass_app
def pause_job(app: AppContext, job_id: int) -> None:
    """Stop checking a job until it is resumed."""
    job = _change_job(app, job_id, job_service.pause_job)
    success(f"Job '{job.name}' has been paused")


@job_group.command("resume")
@click.argument("job_id", type=JOB_ID)
@pass_app
def resume_job(app: AppContext, job_id: int) -> None:
    """Check a paused (or failed) job again, starting now."""
    job = _change_job(app, job_id, job_service.resume_job)
    success(f"Job '{job.name}' has been resumed")


@job_group.command("retry")
@click.argument("job_id", type=JOB_ID)
@pass_app
def retry_job(app: AppContext, job_id: int) -> None:
    """Re-arm the Keboola trigger of a failed job whose batches have all finished."""
    job = _change_job(app, job_id, job_service.retry_job)
    success(f"Job '{job.name}' will start its Keboola job again")


@job_group.command("check")
@click.argument("job_id", type=JOB_ID)
@pass_app
def check_job(app: AppContext, job_id: int) -> None:
    """Check an active job now (beat hands it to a worker within about a second)."""
    job = _change_job(app, job_id, job_service.check_now)
    success(f"Job '{job.name}' will be checked now")


@job_group.command("export")
@click.option("--format", "export_format", type=click.Choice([f.value for f in export.ExportFormat]), default="csv",
              show_default=True, help="Output format.")  # fmt: skip
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), help="Only jobs in this status.")
@click.option("--search", help="Only jobs whose name or a batch id contains this text.")
@click.option("--sort", type=click.Choice([o.value for o in job_service.JobOrder]), default="created",
              show_default=True, help="Order of the rows.")  # fmt: skip
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), help="Write to this file (default: stdout).")
@pass_app
def export_jobs(
    app: AppContext, export_format: str, status: str | None, search: str | None, sort: str, output: IO[str] | None
) -> None:
    """Export the jobs of a filter as CSV or JSON (the API's GET /api/jobs/export)."""
    with app.session() as session:
        rows = export.export_rows(
            session, status=JobStatus(status) if status else None, search=search, order=job_service.JobOrder(sort)
        )
        target = output or sys.stdout
        for chunk in export.render(export.ExportFormat(export_format), rows):
            target.write(chunk)


@job_group.command("update")
@click.argument("job_id", type=JOB_ID)
@click.option("--name", help="New job name.")
@click.option("--poll-interval", type=int, help="New check interval in seconds.")
@click.option("--keboola-stack", help="New Keboola stack URL.")
@click.option("--component-id", help="New Keboola component id.")
@click.option("--config-id", help="New Keboola configuration id.")
@click.option("--notify", multiple=True, help="Notification target; repeat for several. Replaces the job's targets.")
@click.option("--no-notify", is_flag=True, help="Notify nobody about this job.")
@pass_app
def update_job(
    app: AppContext,
    job_id: int,
    name: str | None,
    poll_interval: int | None,
    keboola_stack: str | None,
    component_id: str | None,
    config_id: str | None,
    notify: tuple[str, ...],
    no_notify: bool,
) -> None:
    """Change a job's name, interval, Keboola target or notification targets."""
    if notify and no_notify:
        raise click.UsageError("give --notify or --no-notify, not both")
    changes = job_service.JobChanges(
        name=name,
        poll_interval_seconds=poll_interval,
        keboola_stack_url=keboola_stack,
        keboola_component_id=component_id,
        keboola_configuration_id=config_id,
        notify=[] if no_notify else [secret_reference(target) for target in notify] if notify else None,
    )
    with app.session() as session:
        job = job_service.update_job(session, app.settings, job_service.get_job(session, job_id), changes)
    success(f"Job '{job.name}' has been updated")


@job_group.command("delete")
@click.argument("job_id", type=JOB_ID)
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete_job(app: AppContext, job_id: int, force: bool) -> None:
    """Delete a job with its batches and history."""
    with app.session() as session:
        job = job_service.get_job(session, job_id)
        if not force:
            click.confirm(f"Are you sure you want to delete job '{job.name}' (ID: {job.id})?", abort=True)
        job_service.delete_job(session, job)
    success("Job deleted successfully")
