"""`teckochecker probe worker`: health probes for containers (Kubernetes, compose)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import click

from commands.context import AppContext, pass_app


@click.group("probe")
def probe_group() -> None:
    """Health probes for container orchestrators."""


@probe_group.command("worker")
@click.option(
    "--max-age", type=click.IntRange(min=1), default=60, show_default=True, help="Oldest heartbeat accepted (s)."
)
@click.option("--ping", is_flag=True, help="Ping this host's worker through the broker instead (startup probes only).")
@pass_app
def probe_worker(app: AppContext, max_age: int, ping: bool) -> None:
    """Exit 0 when this host's worker is alive: a fresh heartbeat file, or with --ping a Celery ping."""
    if ping:
        from worker import app as celery_app

        name = f"celery@{socket.gethostname()}"
        if not celery_app.control.ping(destination=[name], timeout=5.0):
            raise click.ClickException(f"worker {name} did not answer a ping")
        click.echo(f"{name} answered")
        return
    path = Path(app.settings.worker_heartbeat_file)
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        raise click.ClickException(f"no heartbeat at {path}: the worker is not running its consumer") from None
    if age > max_age:
        raise click.ClickException(f"the heartbeat at {path} is {age:.0f}s old (more than {max_age}s)")
    click.echo(f"heartbeat {age:.0f}s old")
