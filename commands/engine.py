"""`teckochecker worker` and `teckochecker beat`: the engine's two roles, as thin wrappers over Celery."""

from __future__ import annotations

import click

from commands.context import AppContext, pass_app


def _celery(app: AppContext, *argv: str) -> None:
    # Imported here: the rest of the CLI should not pay for loading Celery.
    from worker import app as celery_app

    celery_app.start([*argv, f"--loglevel={app.settings.log_level}"])


@click.command("worker")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Threads checking jobs at once (default 64).")
@click.option("--hostname", "-n", help="Worker name shown in Flower (default celery@HOST).")
@pass_app
def worker(app: AppContext, concurrency: int | None, hostname: str | None) -> None:
    """Run a Celery worker that checks OpenAI and starts Keboola jobs (same as `celery -A worker worker`)."""
    argv = ["worker"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    _celery(app, *argv)


@click.command("beat")
@pass_app
def beat(app: AppContext) -> None:
    """Run the scheduler that hands due jobs to the workers (same as `celery -A worker beat`)."""
    _celery(app, "beat")
