"""Over real HTTP: the curl examples of docs/USER_GUIDE.md against `teckochecker api` (gunicorn), and schemathesis
fuzzing every operation of the live app against its own `/openapi.json` with all its checks."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import GUIDE_JOB, TOKEN

pytestmark = pytest.mark.slow

GUIDE_BASE_URL = "http://localhost:8000"
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS_EXAMPLES = 50

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


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_schemathesis_with_every_check_finds_no_failure(
    gunicorn_server: str, client: FlaskClient, guide_secrets, tmp_path: Path
) -> None:
    """Every check schemathesis has: no 5xx, every response and header as documented, data the spec calls
    invalid refused and data it calls valid accepted (see schemathesis.toml), auth enforced, deleted objects
    gone. The objects schemathesis.toml names exist, so operations on one job or secret reach real rows."""
    client.post("/api/admin/secrets", json={"name": "unused", "type": "openai", "value": "sk-unused"})
    client.post("/api/jobs", json=GUIDE_JOB)
    several = {key: value for key, value in GUIDE_JOB.items() if key != "batch_id"}
    client.post("/api/jobs", json={**several, "name": "Several", "batch_ids": ["batch_a", "batch_b"]})
    client.post("/api/jobs/2/pause")
    by_name = {key: value for key, value in several.items() if not key.endswith("_secret_id")}
    for name in ("By name", "Nightly"):
        created = client.post(
            "/api/jobs", json={**by_name, "name": name, "batch_ids": ["batch_c"], "openai_secret": "openai-test",
                               "keboola_secret": "keboola-test"}
        )  # fmt: skip
        assert created.status_code == 201, created.json

    completed = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(SCHEMATHESIS_CONFIG),
            "run", f"{gunicorn_server}/openapi.json",
            "--header", f"Authorization: Bearer {TOKEN}",
            "--checks", "all",
            "--max-examples", str(SCHEMATHESIS_EXAMPLES),
            "--request-timeout", "10",
            # Verifying a secret calls OpenAI or Keboola themselves; tests/api/test_api_parity.py uses the simulator.
            "--exclude-path-regex", "/verify$",
        ],
        cwd=tmp_path,  # schemathesis and hypothesis keep their state in the working directory
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-12000:] + completed.stderr[-2000:]
    assert "20 selected / 21 total" in completed.stdout
