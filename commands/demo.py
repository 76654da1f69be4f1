"""`teckochecker demo`: the whole product in about a minute, with no keys and no configuration.

It starts the simulator and the service (embedded mode) in a temporary directory, creates two secrets and
a job watching three batches (one of which fails), opens the dashboard on that job (when run in a terminal),
shows the job live until its Keboola job has run, prints the variables Keboola received, and stops everything
it started (after Ctrl-C when it opened a browser, so the dashboard can be explored). The simulator sends OpenAI-style
webhooks to the demo's API, so the Keboola job starts about a second after the last batch finishes, although
the job polls only every 30 seconds.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import webbrowser
from pathlib import Path
from typing import Any

import click

from commands.context import AppContext
from commands.supervisor import CLI_SCRIPT
from commands.tables import success
from commands.watch import watch_job
from teckochecker.config import ENVIRONMENT_KEYS, load_settings
from teckochecker.models import JobStatus
from teckochecker.services.webhooks import WEBHOOK_PATH
from teckochecker.simulator import RunningSimulator, SimulatorControl, start_simulator
from teckochecker.vault import generate_key

DEMO_OPENAI_KEY = "sk-demo-" + "0" * 24
DEMO_KEBOOLA_TOKEN = "demo-keboola-token"
BATCHES = (
    # (batch id, final status, seconds to get there, requests)
    ("batch_demo_translations", "completed", 20.0, 400),
    ("batch_demo_summaries", "completed", 35.0, 250),
    ("batch_demo_broken", "failed", 12.0, 120),
)
JOB_TIMEOUT_SECONDS = 150.0
POLL_INTERVAL_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str], workdir: Path, environment: dict[str, str]) -> None:
    completed = subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        raise click.ClickException(f"`{' '.join(command[2:])}` failed:\n{completed.stdout}{completed.stderr}")


def _keep_running_until_interrupted(job_page: str) -> None:
    click.echo(f"\nThe service keeps running so you can explore the dashboard ({job_page}). Press Ctrl-C to stop.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        click.echo("")


@click.command("demo")
@click.option(
    "--open/--no-open",
    "open_browser",
    default=None,
    help="Open the dashboard on the demo job in a browser (default: when run in a terminal).",
)
@click.option(
    "--keep-running/--no-keep-running",
    default=None,
    help="Keep the service and dashboard up after the job ends, until Ctrl-C (default: when a browser was opened).",
)
def demo(open_browser: bool | None, keep_running: bool | None) -> None:
    """Run a complete demo against a local simulator: no keys, no configuration, about a minute."""
    with tempfile.TemporaryDirectory(prefix="teckochecker-demo-") as folder, start_simulator() as simulator:
        workdir = Path(folder)
        control = simulator.control
        control.add_api_key(DEMO_OPENAI_KEY)
        control.add_token(DEMO_KEBOOLA_TOKEN, description="demo pipeline")
        control.configure(job_duration=5)
        port = _free_port()
        environment = _demo_environment(workdir, simulator, port)
        app = AppContext(settings=load_settings(environment, env_file=None), env_file=workdir / ".env")
        cli = [sys.executable, str(CLI_SCRIPT)]
        click.echo(f"Demo folder {workdir}; simulator at {simulator.base_url}\n")
        _run([*cli, "db", "init"], workdir, environment)
        started = False
        try:
            _run([*cli, "start", "--daemon"], workdir, environment)
            started = True
            success(f"Service started (embedded mode): API on http://127.0.0.1:{port}, a worker and beat")
            click.echo(f"  Dashboard: http://127.0.0.1:{port}/  (no sign-in: the demo listens on loopback only)")
            _create_secrets_and_job(cli, workdir, environment, simulator)
            job_page = f"http://127.0.0.1:{port}/jobs/1"
            success(
                f"Job 1 created: checks every {POLL_INTERVAL_SECONDS} seconds, and at once when a webhook says a batch "
                f"ended. Watch it live in the dashboard: {job_page}\n"
            )
            opened = _open_in_browser(job_page, wanted=sys.stdout.isatty() if open_browser is None else open_browser)
            job = watch_job(app, 1, timeout=JOB_TIMEOUT_SECONDS)
            if keep_running or (keep_running is None and opened):
                _keep_running_until_interrupted(job_page)
        finally:
            if started:
                subprocess.run([*cli, "stop"], cwd=workdir, env=environment, capture_output=True)
            app.close()
        _show_what_keboola_received(control.keboola_jobs(), job.status)
        _show_reaction(control)


def _open_in_browser(page: str, *, wanted: bool) -> bool:
    if not wanted:
        return False
    if webbrowser.open(page):
        click.echo(f"Opened {page} in your browser: the job's progress bars move as the batches advance.\n")
        return True
    click.echo(f"No browser could be opened here; open {page} yourself.\n")
    return False


def _demo_environment(workdir: Path, simulator: RunningSimulator, port: int) -> dict[str, str]:
    """The demo's own settings: nothing from the user's environment or .env leaks in.

    No API_TOKEN: the API and dashboard listen on loopback only and hold nothing but simulated data, so the
    browser opens straight onto the demo job instead of a sign-in page.
    """
    environment = {key: value for key, value in os.environ.items() if key not in ENVIRONMENT_KEYS}
    environment.update(
        DATABASE_URL=f"sqlite:///{workdir / 'demo.db'}",
        SECRET_KEY=generate_key(),
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        MIN_POLL_INTERVAL="1",
        OPENAI_BASE_URL=simulator.openai_base_url,
        ALLOW_INSECURE_ENDPOINTS="true",
        LOG_FILE=str(workdir / "teckochecker.log"),
    )
    return environment


def _create_secrets_and_job(
    cli: list[str], workdir: Path, environment: dict[str, str], simulator: RunningSimulator
) -> None:
    """What a user does, through the CLI: two secrets, then a job watching the demo's batches."""
    _run([*cli, "secret", "add", "--name", "demo-openai", "--type", "openai", "--value", DEMO_OPENAI_KEY],
         workdir, environment)  # fmt: skip
    _run([*cli, "secret", "add", "--name", "demo-keboola", "--type", "keboola", "--value", DEMO_KEBOOLA_TOKEN],
         workdir, environment)  # fmt: skip
    signing_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    _run([*cli, "secret", "add", "--name", "demo-webhook", "--type", "openai_webhook", "--value", signing_secret],
         workdir, environment)  # fmt: skip
    # What a user does in OpenAI's dashboard: register the webhook URL, with its signing secret.
    simulator.control.configure_webhooks(environment["PUBLIC_URL"] + WEBHOOK_PATH, signing_secret)
    success("Secrets 'demo-openai', 'demo-keboola' and the webhook signing secret 'demo-webhook' added (encrypted)")
    # The batches start now, so the live view shows them progressing.
    for batch_id, final_status, duration, requests in BATCHES:
        simulator.control.create_batch(
            batch_id=batch_id, final_status=final_status, duration=duration, request_total=requests
        )
    batch_flags = [flag for batch_id, *_ in BATCHES for flag in ("--batch-id", batch_id)]
    _run(
        [*cli, "job", "create", "--name", "Demo: three batches", *batch_flags,
         "--openai-secret", "demo-openai", "--keboola-secret", "demo-keboola",
         "--keboola-stack", simulator.stack_url, "--component-id", "kds-team.app-custom-python",
         "--config-id", "demo-config", "--poll-interval", str(POLL_INTERVAL_SECONDS)],
        workdir, environment,
    )  # fmt: skip


def _show_what_keboola_received(received: list[dict[str, Any]], job_status: str) -> None:
    """Print the Keboola jobs and their variables; fail unless exactly one ran, told of the broken batch."""
    click.echo("\nKeboola received:")
    for keboola_job in received:
        click.echo(f"  job {keboola_job['id']} ({keboola_job['status']}) with variables:")
        for variable in keboola_job["body"]["variableValuesData"]["values"]:
            click.echo(f"    {variable['name']} = {variable['value']}")
    failed = None
    if len(received) == 1:
        variables = {v["name"]: v["value"] for v in received[0]["body"]["variableValuesData"]["values"]}
        failed = json.loads(variables["batch_ids_failed"])
    if job_status != JobStatus.COMPLETED_WITH_FAILURES or failed != ["batch_demo_broken"]:
        raise click.ClickException(
            f"the demo did not end as expected: job {job_status}, {len(received)} Keboola job(s) received"
        )
    success("Demo finished: one Keboola job, started once, told which batch failed. Everything is stopped.")


def _show_reaction(control: SimulatorControl) -> None:
    """How long the Keboola job took to start after the last batch finished (the webhook's doing)."""
    finished = [d["terminal_at"] for d in control.webhooks()["deliveries"] if d["delivered"] and d["terminal_at"]]
    started = [job["created_unix"] for job in control.keboola_jobs()]
    if len(finished) == len(BATCHES) and started:
        click.echo(
            f"The Keboola job started {started[0] - max(finished):.1f} s after the last batch finished: OpenAI's "
            f"webhook (simulated) made the job check at once instead of at its next {POLL_INTERVAL_SECONDS} s poll."
        )
