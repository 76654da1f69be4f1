"""The container probes: a heartbeat file for liveness, a Celery ping for startup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from teckochecker.vault import generate_key
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_worker_probes_follow_the_worker(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        SECRET_KEY=generate_key(),
        WORKER_HEARTBEAT_FILE=str(heartbeat),
    )
    env.pop("REDIS_URL", None)
    assert _cli("db", "init", cwd=tmp_path, env=env).returncode == 0
    assert _cli("probe", "worker", cwd=tmp_path, env=env).returncode == 1

    worker = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "cli.py"), "worker", "--concurrency", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not heartbeat.exists():
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.5)
        alive = _cli("probe", "worker", cwd=tmp_path, env=env)
        assert alive.returncode == 0 and "heartbeat" in alive.stdout
        pinged = _cli("probe", "worker", "--ping", cwd=tmp_path, env=env)
        assert pinged.returncode == 0, pinged.stderr
        os.utime(heartbeat, (time.time() - 120, time.time() - 120))
        stale = _cli("probe", "worker", cwd=tmp_path, env=env)
        assert stale.returncode == 1 and "old" in stale.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    gone = _cli("probe", "worker", cwd=tmp_path, env=env)
    assert gone.returncode == 1 and "no heartbeat" in gone.stderr
