"""The step-by-step install of docs/USER_GUIDE.md, run as a user would: real processes in a fresh directory."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

SETTINGS_KEYS = ("DATABASE_URL", "SECRET_KEY", "API_TOKEN", "REDIS_URL", "LOG_FILE", "MIN_POLL_INTERVAL")


def _clean_environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in SETTINGS_KEYS and not k.startswith("PYTEST")}
    environment.update(extra)
    return environment


def _run(python: str, *args: str, cwd: Path, env: dict[str, str], input: str | None = None) -> str:
    completed = subprocess.run(
        [python, *args], cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, f"{args} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed.stdout


def _steps_3_to_5(python: str, workdir: Path, env: dict[str, str]) -> None:
    output = _run(python, str(REPO_ROOT / "scripts/init_db.py"), "--create-env", cwd=workdir, env=env)
    assert "SECRET_KEY" in output and (workdir / ".env").is_file()

    teckochecker = str(REPO_ROOT / "teckochecker.py")
    _run(python, teckochecker, "secret", "add", "--name", "openai-prod", "--type", "openai",
         cwd=workdir, env=env, input="sk-proj-quickstart\n")  # fmt: skip
    _run(python, teckochecker, "secret", "add", "--name", "keboola-prod", "--type", "keboola",
         cwd=workdir, env=env, input="kbc-token-quickstart\n")  # fmt: skip
    created = _run(
        python, teckochecker, "job", "create",
        "--name", "My batch job",
        "--batch-id", "batch_abc123",
        "--openai-secret", "openai-prod",
        "--keboola-secret", "keboola-prod",
        "--keboola-stack", "https://connection.eu-central-1.keboola.com",
        "--component-id", "kds-team.app-custom-python",
        "--config-id", "123456",
        "--poll-interval", "120",
        cwd=workdir, env=env,
    )  # fmt: skip
    assert "✓ Polling job 'My batch job' created successfully (ID: 1)" in created

    verified = _run(python, str(REPO_ROOT / "scripts/verify_setup.py"), cwd=workdir, env=env)
    assert "all 2 decrypt with SECRET_KEY" in verified and "All checks passed." in verified
    schema = _run(python, str(REPO_ROOT / "scripts/show_schema.py"), cwd=workdir, env=env)
    assert "polling_jobs" in schema
    # Both entry points run the same CLI.
    listed = _run(python, str(REPO_ROOT / "cli.py"), "job", "list", cwd=workdir, env=env)
    assert "My batch job" in listed
    for secret in ("sk-proj-quickstart", "kbc-token-quickstart"):
        assert secret not in listed + verified


def test_quick_start_in_a_new_virtual_environment(tmp_path: Path) -> None:
    """Steps 1-5: venv, pip install -r requirements.txt, init_db, secrets, a job (embedded SQLite)."""
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    env = _clean_environment()
    _run(python, "-m", "pip", "install", "--quiet", "-r", str(REPO_ROOT / "requirements.txt"), cwd=tmp_path, env=env)
    _steps_3_to_5(python, tmp_path, env)
    assert (tmp_path / "teckochecker.db").is_file()


def test_quick_start_against_postgresql(tmp_path: Path, empty_postgres_url: str) -> None:
    """Steps 3-5 with DATABASE_URL written as the guide writes it (postgresql://user@host/db)."""
    _steps_3_to_5(sys.executable, tmp_path, _clean_environment(DATABASE_URL=empty_postgres_url))
