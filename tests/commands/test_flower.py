"""`teckochecker flower`: basic auth from FLOWER_BASIC_AUTH, loopback only without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.api.conftest import free_port
from tests.conftest import REPO_ROOT, wait_for_http

pytestmark = pytest.mark.slow


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environment.pop("REDIS_URL", None)
    environment.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}", **extra)
    return environment


def test_flower_asks_for_the_configured_password(tmp_path: Path) -> None:
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "cli.py"), "flower", "--address", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=_environment(tmp_path, FLOWER_BASIC_AUTH="admin:s3cret"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthcheck", process=flower)
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/", auth=("admin", "wrong"), timeout=5).status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/workers", auth=("admin", "s3cret"), timeout=10).status_code == 200
    finally:
        flower.terminate()
        flower.wait(timeout=30)


def test_flower_without_a_password_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "cli.py"), "flower", "--address", "0.0.0.0"],
        cwd=tmp_path,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert "without FLOWER_BASIC_AUTH" in completed.stderr
