"""start / status / stop as a user runs them: real processes, in the embedded default and on Redis + PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from teckochecker.vault import generate_key
from tests.conftest import REPO_ROOT, redis_test_url, wait_for_http

pytestmark = pytest.mark.slow

OPENAI_KEY = "sk-service-test-112233445566"
KEBOOLA_TOKEN = "888-service-test-token"
REDIS_URL = redis_test_url(12)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Installation:
    def __init__(self, workdir: Path, environment: dict[str, str], port: int) -> None:
        self.workdir = workdir
        self.environment = environment
        self.port = port

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO_ROOT / "cli.py"), *args],
            cwd=self.workdir,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str) -> str:
        completed = self.run(*args)
        assert completed.returncode == 0, f"{args}: {completed.stdout}{completed.stderr}{self.log()}"
        return completed.stdout

    def log(self) -> str:
        path = self.workdir / "teckochecker.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def wait_for_workers(self, timeout: float = 60) -> subprocess.CompletedProcess:
        """`status`, once it reports the worker online (the API can answer before the worker is ready)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.run("status")
            if "1 online" in status.stdout or time.monotonic() > deadline:
                assert "1 online" in status.stdout, status.stdout + self.log()
                return status
            time.sleep(1)

    def job(self, job_id: int) -> dict:
        return json.loads(self.ok("job", "show", str(job_id), "--json"))

    def wait_for_status(self, job_id: int, statuses: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} is {job['status']}, not {statuses}\n{self.log()}")

    def create_job(self, batch_id: str, config_id: str, stack_url: str) -> None:
        self.ok("job", "create", "--name", f"job {batch_id}", "--batch-id", batch_id, "--openai-secret", "openai",
                "--keboola-secret", "keboola", "--keboola-stack", stack_url, "--component-id", "c",
                "--config-id", config_id, "--poll-interval", "1")  # fmt: skip


@pytest.fixture(params=["embedded", "server"])
def installation(request, tmp_path: Path, empty_postgres_url: str, simulator):
    port = _free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environment.update(
        SECRET_KEY=generate_key(),
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        MIN_POLL_INTERVAL="1",
        OPENAI_BASE_URL=simulator.openai_base_url,
        ALLOW_INSECURE_ENDPOINTS="true",
        LOG_FILE=str(tmp_path / "teckochecker.log"),
    )
    if request.param == "embedded":
        environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'teckochecker.db'}"
        environment.pop("REDIS_URL", None)
    else:
        environment["DATABASE_URL"] = empty_postgres_url
        environment["REDIS_URL"] = REDIS_URL
        redis.Redis.from_url(REDIS_URL).flushdb()
    simulator.control.add_api_key(OPENAI_KEY)
    simulator.control.add_token(KEBOOLA_TOKEN)
    simulator.control.configure(job_duration=1)
    installation = Installation(tmp_path, environment, port)
    installation.ok("db", "init")
    installation.ok("secret", "add", "--name", "openai", "--type", "openai", "--value", OPENAI_KEY)
    installation.ok("secret", "add", "--name", "keboola", "--type", "keboola", "--value", KEBOOLA_TOKEN)
    yield installation
    installation.run("stop", timeout=400)


def test_start_status_a_job_then_stop(installation, simulator) -> None:
    started = installation.ok("start", "--daemon")
    assert "TeckoChecker started in the background" in started
    assert f"Dashboard: http://127.0.0.1:{installation.port}/" in started
    running = installation.wait_for_workers()
    assert running.returncode == 0, running.stdout
    assert "🟢 Running" in running.stdout
    mode = "embedded" if "REDIS_URL" not in installation.environment else "server"
    assert f"│ Mode           │ {mode}" in running.stdout
    health = requests.get(f"http://127.0.0.1:{installation.port}/api/health", timeout=5)
    assert health.status_code == 200 and health.json()["checks"]["workers"]["status"] == "ok"

    simulator.control.create_batch(batch_id="batch_service", final_status="completed", duration=2)
    installation.create_job("batch_service", "svc", simulator.stack_url)
    job = installation.wait_for_status(1, {"completed"})
    assert job["keboola_job_status"] == "success"
    assert len(simulator.control.keboola_jobs()) == 1
    _assert_only_the_owner_can_read_what_the_service_wrote(installation)

    stopped = installation.ok("stop")
    assert "✓ TeckoChecker daemon stopped" in stopped
    after = installation.run("status")
    assert after.returncode == 3 and "🔴 Stopped" in after.stdout
    assert "TeckoChecker is not running." in installation.ok("stop")
    assert not (installation.workdir / ".teckochecker" / "teckochecker.pid").exists()


def _assert_only_the_owner_can_read_what_the_service_wrote(installation) -> None:
    workdir = installation.workdir
    private = {workdir / "teckochecker.log": 0o600, workdir / ".teckochecker": 0o700}
    private[workdir / ".teckochecker" / "teckochecker.pid"] = 0o600
    if "REDIS_URL" not in installation.environment:
        # The database holds the encrypted secrets; the embedded broker holds the task messages.
        for name in ("teckochecker.db", "teckochecker.db-wal", "teckochecker.db-shm"):
            private[workdir / name] = 0o600
        private[workdir / ".teckochecker" / "broker"] = 0o700
        # kombu writes its exchange files with the default mode; the 0700 folders keep them private.
        for path in (workdir / ".teckochecker" / "broker").rglob("*"):
            if path.is_dir() or path.suffix == ".msg":
                private[path] = 0o700 if path.is_dir() else 0o600
    modes = {str(path.relative_to(workdir)): oct(stat.S_IMODE(path.stat().st_mode)) for path in private}
    assert modes == {str(path.relative_to(workdir)): oct(mode) for path, mode in private.items()}


def test_start_refuses_a_second_instance(installation) -> None:
    installation.ok("start", "--daemon")
    again = installation.run("start", "--daemon")
    assert again.returncode == 1 and "already running" in again.stderr


def test_stop_during_a_trigger_loses_nothing(installation, simulator) -> None:
    simulator.control.add_fault("/jobs", method="POST", delay=4, count=1)
    simulator.control.create_batch(batch_id="batch_inflight", final_status="completed", duration=0)
    installation.ok("start", "--daemon")
    installation.create_job("batch_inflight", "inflight", simulator.stack_url)
    deadline = time.monotonic() + 30
    while simulator.control.counters()["requests"].get("POST /jobs", 0) == 0:
        assert time.monotonic() < deadline, installation.log()
        time.sleep(0.1)
    installation.ok("stop")
    installation.ok("start", "--daemon")
    installation.wait_for_status(1, {"completed"}, timeout=90)
    assert [job["body"]["config"] for job in simulator.control.keboola_jobs()] == ["inflight"]


def test_foreground_start_stops_cleanly_on_ctrl_c(installation) -> None:
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "cli.py"), "start"],
        cwd=installation.workdir,
        env=installation.environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for_http(f"http://127.0.0.1:{installation.port}/api/health", process=process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert "Swagger documentation" in output and "stopping" in output
    assert not (installation.workdir / ".teckochecker" / "teckochecker.pid").exists()
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{installation.port}/api/health", timeout=1)


# Stands in for the user's browser ($BROWSER is how Python's webbrowser finds one): it records the page it is
# asked to open and what that page showed, over a real socket.
BROWSER_STAND_IN = """
import pathlib, sys, requests
page = requests.get(sys.argv[2], timeout=10)
pathlib.Path(sys.argv[1]).write_text(sys.argv[2] + "\\n" + str(page.status_code) + "\\n" + page.text)
"""


def test_the_demo_runs_opens_the_job_live_in_the_dashboard_and_passes(tmp_path: Path) -> None:
    browser, seen = tmp_path / "browser.py", tmp_path / "seen.txt"
    browser.write_text(BROWSER_STAND_IN)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environment["BROWSER"] = f"{sys.executable} {browser} {seen} %s"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "cli.py"), "demo", "--open", "--no-keep-running"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert 'batch_ids_failed = ["batch_demo_broken"]' in completed.stdout
    assert "Demo finished" in completed.stdout
    assert "Watch it live in the dashboard: http://127.0.0.1:" in completed.stdout
    # The simulator's webhooks reached the demo's API: the job reacted without waiting for its 30 s poll.
    assert "s after the last batch finished" in completed.stdout
    # The browser opened straight onto the demo job's live page, with no sign-in in the way.
    url, status, page = seen.read_text().split("\n", 2)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/jobs/1") and f"Opened {url}" in completed.stdout
    assert status == "200" and "Demo: three batches" in page and "data-live-url=" in page
