"""Over real HTTP: the curl examples of docs/USER_GUIDE.md against `teckochecker api` (gunicorn), and schemathesis
fuzzing every operation of the live app against its own `/openapi.json`."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from teckochecker.config import Settings
from tests.api.conftest import GUIDE_JOB, TOKEN, free_port
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

GUIDE_BASE_URL = "http://localhost:8000"
STARTUP_SECONDS = 30
SETTINGS_KEYS = ("DATABASE_URL", "SECRET_KEY", "API_TOKEN", "API_HOST", "API_PORT", "REDIS_URL", "CORS_ORIGINS")

# The REST section of docs/USER_GUIDE.md, verbatim (tests/test_user_guide.py checks that), each with the
# status it must answer; the secret's deletion comes last, once a job uses it.
GUIDE_CURLS = [
    ("curl http://localhost:8000/api/health", 200),
    ("curl http://localhost:8000/api/stats", 200),
    ("curl http://localhost:8000/api/admin/secrets", 200),
    (
        """curl -X POST http://localhost:8000/api/admin/secrets \\
  -H "Content-Type: application/json" \\
  -d '{"name": "openai-test", "type": "openai", "value": "sk-..."}'""",
        201,
    ),
    (
        """curl -X POST http://localhost:8000/api/admin/secrets \\
  -H "Content-Type: application/json" \\
  -d '{"name": "keboola-test", "type": "keboola", "value": "kbc-..."}'""",
        201,
    ),
    ("curl http://localhost:8000/api/jobs", 200),
    (
        """curl -X POST http://localhost:8000/api/jobs \\
  -H "Content-Type: application/json" \\
  -d '{
    "name": "Test job",
    "batch_id": "batch_123",
    "openai_secret_id": 1,
    "keboola_secret_id": 2,
    "keboola_stack_url": "https://connection.eu-central-1.keboola.com",
    "keboola_component_id": "kds-team.app-custom-python",
    "keboola_configuration_id": "123456",
    "poll_interval_seconds": 120
  }'""",
        201,
    ),
    ("curl http://localhost:8000/api/jobs/1", 200),
    ("curl -X POST http://localhost:8000/api/jobs/1/pause", 200),
    ("curl -X POST http://localhost:8000/api/jobs/1/resume", 200),
    # The secret is used by job 1, so the guide's delete is refused, naming the job.
    ("curl -X DELETE http://localhost:8000/api/admin/secrets/1", 409),
]


def curl(command: str, base_url: str, *extra: str) -> tuple[int, str]:
    words = shlex.split(command.replace("\\\n", " "))  # a backslash-newline continues the line, as in bash
    arguments = [base_url + word.removeprefix(GUIDE_BASE_URL) if word.startswith(GUIDE_BASE_URL) else word
                 for word in words]  # fmt: skip
    completed = subprocess.run(
        [*arguments, "--silent", "--show-error", "--write-out", "\n%{http_code}", *extra],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = completed.stdout.rpartition("\n")
    return int(status), body


@pytest.fixture
def gunicorn_server(api_settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`teckochecker api` in its own process, configured through the environment as a user would."""
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if key not in SETTINGS_KEYS}
    environment |= {
        "DATABASE_URL": api_settings.database_url,
        "SECRET_KEY": api_settings.secret_key or "",
        "API_TOKEN": TOKEN,
    }
    command = [sys.executable, str(REPO_ROOT / "cli.py"), "api", "--port", str(port), "--workers", "2"]
    log_path = tmp_path / "api.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, f"`teckochecker api` exited early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"`teckochecker api` did not start:\n{log_path.read_text()}"
            try:
                if requests.get(f"{base_url}/api/health", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                # gunicorn's master accepts connections before its workers have loaded the app.
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_guides_curl_examples_against_teckochecker_api(gunicorn_server: str) -> None:
    authorization = ("--header", f"Authorization: Bearer {TOKEN}")
    for command, expected in GUIDE_CURLS:
        status, body = curl(command, gunicorn_server, *authorization)
        assert status == expected, f"{command}\n→ {status} {body}"
        assert "sk-..." not in body
    assert "used by 1 job(s): 1 'Test job'" in body  # the last one: the refused delete names the job
    job = json.loads(curl("curl http://localhost:8000/api/jobs/1", gunicorn_server, *authorization)[1])
    assert job["status"] == "active" and job["batches"][0]["batch_id"] == "batch_123"

    status, body = curl("curl http://localhost:8000/api/jobs", gunicorn_server)
    assert status == 401 and json.loads(body)["code"] == 401


def test_schemathesis_finds_no_server_error_and_no_response_outside_the_spec(
    live_server: str, client: FlaskClient, guide_secrets, tmp_path: Path
) -> None:
    # Real data, so listing and showing return jobs with batches for the response schemas to be checked on.
    client.post("/api/jobs", json=GUIDE_JOB)
    several = {key: value for key, value in GUIDE_JOB.items() if key != "batch_id"}
    client.post("/api/jobs", json={**several, "name": "Several", "batch_ids": ["batch_a", "batch_b"]})
    client.post("/api/jobs/2/pause")

    completed = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{live_server}/openapi.json",
            "--header", f"Authorization: Bearer {TOKEN}",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--max-examples", "20",
            "--request-timeout", "10",
            # Verifying a secret calls OpenAI or Keboola themselves; tests/api/test_api_parity.py uses the simulator.
            "--exclude-path-regex", "/verify$",
        ],
        cwd=tmp_path,  # schemathesis and hypothesis keep their state in the working directory
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-8000:] + completed.stderr[-2000:]
    assert "18 selected / 19 total" in completed.stdout
