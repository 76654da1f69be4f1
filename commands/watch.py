"""A live view of one job: a progress bar per batch, the job's status, the checks as they happen."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click
from sqlalchemy import select

from commands.context import AppContext, pass_app
from commands.params import JOB_ID
from commands.tables import status_label, when
from teckochecker.models import FINISHED_JOB_STATUSES, JobBatch, JobEvent, PollingJob
from teckochecker.services.jobs import get_job

BAR_WIDTH = 24
REFRESH_SECONDS = 0.5


def progress_bar(batch: JobBatch) -> str:
    done = batch.request_completed + batch.request_failed
    filled = round(BAR_WIDTH * done / batch.request_total) if batch.request_total else 0
    if batch.is_terminal:
        filled = BAR_WIDTH if batch.status == "completed" else filled
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def render(job: PollingJob, events: list[JobEvent]) -> list[str]:
    finished = sum(batch.is_terminal for batch in job.batches)
    lines = [
        f"Job {job.id} '{job.name}'  {status_label(job.status)}  "
        f"{finished}/{len(job.batches)} batches finished  last check {when(job.last_check_at)}",
    ]
    width = max(len(batch.batch_id) for batch in job.batches)
    for batch in job.batches:
        counts = f"{batch.request_completed}/{batch.request_total} requests, {batch.request_failed} failed"
        lines.append(f"  {batch.batch_id:<{width}}  {progress_bar(batch)}  {batch.status:<11} {counts}")
    if job.keboola_job_id:
        lines.append(f"  Keboola job {job.keboola_job_id}: {job.keboola_job_status or 'created'}")
    if job.last_error:
        lines.append(f"  Last error: {job.last_error}")
    lines += [f"  {when(event.created_at)}  {event.kind}: {event.message}" for event in events[-5:]]
    return lines


def _snapshot(app: AppContext, job_id: int) -> tuple[PollingJob, list[JobEvent]]:
    with app.session() as session:
        job = get_job(session, job_id)
        _ = job.batches
        events = list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
    return job, events


def watch_job(
    app: AppContext, job_id: int, *, timeout: float | None = None, echo: Callable[[str], None] = click.echo
) -> PollingJob:
    """Follow a job until it finishes (or `timeout` seconds pass); returns its last state.

    On a terminal the view is redrawn in place; otherwise each new check and event is printed once.
    """
    interactive = sys.stdout.isatty()
    deadline = None if timeout is None else time.monotonic() + timeout
    drawn = 0
    seen_events = 0
    last_check = None
    while True:
        job, events = _snapshot(app, job_id)
        if interactive:
            frame = render(job, events)
            # Move up over the previous frame and clear it before drawing the new one.
            echo((f"\x1b[{drawn}F\x1b[J" if drawn else "") + "\n".join(frame))
            drawn = len(frame)
        else:
            if job.last_check_at != last_check and job.last_check_at is not None:
                finished = sum(batch.is_terminal for batch in job.batches)
                progress = ", ".join(
                    f"{b.batch_id} {b.status} {b.request_completed}/{b.request_total}" for b in job.batches
                )
                echo(f"{when(job.last_check_at)}  checked: {finished}/{len(job.batches)} finished ({progress})")
                last_check = job.last_check_at
            for event in events[seen_events:]:
                echo(f"{when(event.created_at)}  {event.kind}: {event.message}")
            seen_events = len(events)
        if job.status in FINISHED_JOB_STATUSES:
            if not interactive:
                echo("\n".join(render(job, events[-5:])))
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise click.ClickException(f"job {job_id} did not finish within {timeout:.0f}s (it is {job.status})")
        time.sleep(REFRESH_SECONDS)


@click.command("watch")
@click.argument("job_id", type=JOB_ID)
@pass_app
def watch(app: AppContext, job_id: int) -> None:
    """Follow a job live until it finishes (Ctrl-C to stop watching; the job goes on)."""
    try:
        watch_job(app, job_id)
    except KeyboardInterrupt:
        click.echo("\nStopped watching; the job goes on.")
