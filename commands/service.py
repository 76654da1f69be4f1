"""`teckochecker start|stop|status`: the API, a worker and beat together on one machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import requests
from sqlalchemy.exc import SQLAlchemyError

from commands.context import AppContext, pass_app
from commands.supervisor import (
    CLI_SCRIPT,
    PID_FILE,
    ServiceRecord,
    Supervisor,
    child_commands,
    is_our_supervisor,
    read_record,
)
from commands.tables import render_table, success
from teckochecker.config import Settings
from teckochecker.db import redact_url
from teckochecker.files import private_file
from teckochecker.logs import configure_logging
from teckochecker.models import JobStatus
from teckochecker.schema import upgrade_to_head
from teckochecker.services.stats import jobs_by_status

EXIT_STOPPED = 3
DAEMON_READY_TIMEOUT = 60.0
DEFAULT_LOG_FILE = "teckochecker.log"


def api_url_for(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def dashboard_url(api_url: str) -> str:
    """The address to open in a browser: the dashboard is served at `/` by the API server."""
    return _reachable_url(api_url) + "/"


def sign_in_hint(settings: Settings) -> str:
    if settings.api_token is None:
        return "open without a token unless named tokens exist (no API_TOKEN: loopback only)"
    return "sign in with API_TOKEN from .env, or a token from `teckochecker token create`"


def _reachable_url(api_url: str) -> str:
    # A server bound to every address answers on loopback.
    return api_url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")


def _api_answers(api_url: str) -> bool:
    try:
        requests.get(_reachable_url(api_url) + "/api/health", timeout=2)
    except requests.RequestException:
        return False
    return True


@click.command("start")
@click.option("--host", help="Address the API listens on (default API_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), help="API port (default API_PORT).")
@click.option("--reload", is_flag=True, help="Restart everything when the code changes (development).")
@click.option(
    "--daemon", is_flag=True, help="Run in the background, logging to LOG_FILE; stop with `teckochecker stop`."
)
@pass_app
def start(app: AppContext, host: str | None, port: int | None, reload: bool, daemon: bool) -> None:
    """Start the API server, a worker and beat: polling starts with the API."""
    settings = app.settings
    host = host or settings.api_host
    port = port or settings.api_port
    running = read_record()
    if running is not None:
        raise click.ClickException(f"TeckoChecker is already running (PID {running.pid}, API {running.api_url})")
    api_url = api_url_for(host, port)
    if daemon:
        _start_daemon(settings, host, port, reload, api_url)
        return
    configure_logging(settings)
    # `start` is the whole installation on one machine: it brings the schema up to date itself.
    upgrade_to_head(settings.database_url)
    click.echo(f"Starting TeckoChecker in {settings.mode} mode: API on {api_url}, a worker and beat.")
    click.echo(f"Dashboard: {dashboard_url(api_url)}   ({sign_in_hint(settings)})")
    click.echo(f"Swagger documentation: {api_url}/docs   ReDoc: {api_url}/redoc   Press Ctrl-C to stop.")
    code = Supervisor(child_commands(host, port), api_url, reload=reload).run()
    if code:
        raise click.ClickException("a TeckoChecker process exited unexpectedly; see the log above")


def _start_daemon(settings: Settings, host: str, port: int, reload: bool, api_url: str) -> None:
    log_path = Path(settings.log_file or DEFAULT_LOG_FILE).resolve()
    command = [sys.executable, str(CLI_SCRIPT), "start", "--host", host, "--port", str(port)]
    if reload:
        command.append("--reload")
    with private_file(log_path).open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + DAEMON_READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"TeckoChecker failed to start (exit code {process.returncode}); see {log_path}")
        if read_record() is not None and _api_answers(api_url):
            success(f"TeckoChecker started in the background (PID {process.pid})")
            click.echo(f"  Dashboard: {dashboard_url(api_url)}  ({sign_in_hint(settings)})")
            click.echo(f"  API:   {api_url}  (Swagger: {api_url}/docs)")
            click.echo(f"  Logs:  {log_path}")
            click.echo("  Stop:  teckochecker stop")
            return
        time.sleep(0.25)
    raise click.ClickException(f"the API did not answer within {DAEMON_READY_TIMEOUT:.0f}s; see {log_path}")


@click.command("stop")
def stop() -> None:
    """Stop what `teckochecker start` started, letting running tasks finish."""
    record = read_record()
    if record is None:
        click.echo("TeckoChecker is not running.")
        return
    os.kill(record.pid, signal.SIGTERM)
    click.echo(f"Stopping TeckoChecker (PID {record.pid}); running tasks may take a moment to finish…")
    # The supervisor removes its pid file once every child has stopped.
    while is_our_supervisor(record.pid) and PID_FILE.exists():
        time.sleep(0.25)
    success("TeckoChecker daemon stopped")


def _uptime(record: ServiceRecord) -> str:
    seconds = int((datetime.now(UTC) - record.started).total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours} hour{'s' * (hours != 1)} {minutes} minute{'s' * (minutes != 1)}"
    if minutes:
        return f"{minutes} minute{'s' * (minutes != 1)}"
    return f"{seconds} second{'s' * (seconds != 1)}"


def _job_counts(app: AppContext) -> tuple[dict[str, int], str]:
    try:
        with app.session() as session:
            counts = jobs_by_status(session)
    except SQLAlchemyError as error:
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return {}, f"🔴 Unreachable: {detail}"
    return counts, f"🟢 Connected ({redact_url(app.settings.database_url)})"


def _broker_and_workers(settings: Settings) -> tuple[str, str]:
    from worker import app as celery_app

    try:
        replies = celery_app.control.ping(timeout=1.5)
    except Exception as error:
        where = redact_url(settings.redis_url) if settings.redis_url else "embedded broker"
        return f"🔴 Unreachable: {where} ({error})", "🔴 unknown"
    broker = f"🟢 Redis at {redact_url(settings.redis_url)}" if settings.redis_url else "🟢 Embedded (filesystem)"
    workers = f"🟢 {len(replies)} online" if replies else "🔴 none answered"
    return broker, workers


@click.command("status")
@pass_app
def status(app: AppContext) -> None:
    """Show whether TeckoChecker is running, its jobs, database, broker and workers. Exit 3 when stopped."""
    record = read_record()
    counts, database = _job_counts(app)
    broker, workers = _broker_and_workers(app.settings)
    rows = [
        ["Service", f"🟢 Running (PID {record.pid})" if record else "🔴 Stopped"],
        ["Uptime", _uptime(record) if record else "—"],
        ["Active Jobs", str(counts.get(JobStatus.ACTIVE.value, 0))],
        [
            "Completed Jobs",
            str(counts.get(JobStatus.COMPLETED.value, 0) + counts.get(JobStatus.COMPLETED_WITH_FAILURES.value, 0)),
        ],
        ["Failed Jobs", str(counts.get(JobStatus.FAILED.value, 0))],
        ["API Server", record.api_url if record else "—"],
        ["Database", database],
        ["Broker", broker],
        ["Workers", workers],
        ["Mode", app.settings.mode],
    ]
    click.echo(render_table("System Status", rows))
    if record is None:
        sys.exit(EXIT_STOPPED)
