"""A real engine for the worker tests: Celery worker and beat processes on Redis and PostgreSQL, the
simulator over sockets. Only MIN_POLL_INTERVAL (and RETRY_DELAY, a documented setting) are lowered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from teckochecker.config import Settings
from teckochecker.db import make_engine, make_session_factory, session_scope
from teckochecker.models import JobStatus, PollingJob
from teckochecker.schema import upgrade_to_head
from teckochecker.services.jobs import JobDraft, create_job
from teckochecker.services.secrets import add_secret
from teckochecker.vault import Vault, generate_key
from tests.conftest import REPO_ROOT, redis_test_url

OPENAI_KEY = "sk-worker-test-5f4e3d2c1b0a99887766"
KEBOOLA_TOKEN = "777-worker-test-kbc-token-qwertyuiop"
REDIS_DB = 13
FINISHED = {JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_FAILURES, JobStatus.FAILED}


@dataclass
class Engine:
    """Processes of a TeckoChecker installation, and the means to watch and disturb them."""

    workdir: Path
    environment: dict[str, str]
    settings: Settings
    simulator: Any
    redis: redis.Redis
    processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._engine = make_engine(self.settings.database_url)
        self.sessions = make_session_factory(self._engine)
        self.vault = Vault(self.settings.secret_key)

    def start(
        self, role: str, *args: str, name: str | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = (self.workdir / f"{name or role}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "cli.py"), role, *args],
            cwd=self.workdir,
            env={**self.environment, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def start_worker(self, name: str = "w1", concurrency: int = 8, **kwargs: Any) -> subprocess.Popen:
        return self.start("worker", f"--concurrency={concurrency}", f"--hostname={name}@%h", name=name, **kwargs)

    def start_beat(self, name: str = "beat", **kwargs: Any) -> subprocess.Popen:
        return self.start("beat", name=name, **kwargs)

    def kill(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self._engine.dispose()

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.workdir.glob("*.log"))

    def create_job(self, batch_ids: list[str], **overrides: Any) -> int:
        values = {
            "name": f"job for {batch_ids[0]}",
            "batch_ids": batch_ids,
            "openai_secret": "openai",
            "keboola_secret": "keboola",
            "keboola_stack_url": self.simulator.stack_url,
            "keboola_component_id": "kds-team.app-custom-python",
            "keboola_configuration_id": "42",
            "poll_interval_seconds": 1,
            **overrides,
        }
        with session_scope(self.sessions) as session:
            return create_job(session, self.settings, JobDraft(**values)).id

    def job(self, job_id: int) -> PollingJob:
        with session_scope(self.sessions) as session:
            job = session.get(PollingJob, job_id)
            _ = job.batches, job.openai_secret, job.keboola_secret
            return job

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n--- logs ---\n{self.logs()[-6000:]}")

    def wait_finished(self, job_ids: list[int], timeout: float = 60) -> dict[int, PollingJob]:
        def finished() -> bool:
            with session_scope(self.sessions) as session:
                statuses = session.scalars(select(PollingJob.status).where(PollingJob.id.in_(job_ids))).all()
                return len(statuses) == len(job_ids) and all(status in FINISHED for status in statuses)

        self.wait_until(finished, timeout, f"jobs {job_ids} to finish")
        return {job_id: self.job(job_id) for job_id in job_ids}

    def batch_requests(self) -> int:
        return self.simulator.control.counters()["requests"].get("GET /v1/batches/{batch_id}", 0)

    def keboola_jobs_by_config(self) -> dict[str, list[dict]]:
        jobs: dict[str, list[dict]] = {}
        for job in self.simulator.control.keboola_jobs():
            jobs.setdefault(job["body"]["config"], []).append(job)
        return jobs


@pytest.fixture
def engine_installation(tmp_path: Path, empty_postgres_url: str, simulator) -> Iterator[Engine]:
    settings = Settings(
        database_url=empty_postgres_url,
        secret_key=generate_key(),
        redis_url=redis_test_url(REDIS_DB),
        min_poll_interval=1,
        retry_delay=1,
        openai_base_url=simulator.openai_base_url,
        allow_insecure_endpoints=True,
    )
    upgrade_to_head(settings.database_url)
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "REDIS_URL": settings.redis_url,
        "MIN_POLL_INTERVAL": "1",
        "RETRY_DELAY": "1",
        "OPENAI_BASE_URL": settings.openai_base_url,
        "ALLOW_INSECURE_ENDPOINTS": "true",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    installation = Engine(tmp_path, environment, settings, simulator, client)
    with session_scope(installation.sessions) as session:
        add_secret(session, installation.vault, name="openai", type="openai", value=OPENAI_KEY)
        add_secret(session, installation.vault, name="keboola", type="keboola", value=KEBOOLA_TOKEN)
    simulator.control.add_api_key(OPENAI_KEY)
    simulator.control.add_token(KEBOOLA_TOKEN)
    simulator.control.configure(job_duration=1)
    try:
        yield installation
    finally:
        installation.stop_all()
        client.flushdb()
        client.close()
