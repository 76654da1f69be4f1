"""docker-compose.yml, proven twice without a Docker engine: `docker-compose config` validates it, then
each service's own command and environment run here as local processes against the local PostgreSQL and
Redis (two workers), and a job is driven to completion through the API."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
import yaml

from teckochecker.vault import generate_key
from tests.conftest import REPO_ROOT, redis_test_url

pytestmark = pytest.mark.slow

REDIS_DB = 11
TOKEN = "compose-test-token-0123456789abcdef"


def _compose_config(workdir: Path) -> dict:
    """The configuration Compose would run, resolved (anchors, env_file, ${VARS}) by docker-compose itself."""
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose (Debian's docker-compose package) is needed: apt-get install docker-compose"
    shutil.copy(REPO_ROOT / "docker-compose.yml", workdir / "docker-compose.yml")
    env_text = (REPO_ROOT / ".env.example").read_text()
    values = {
        "SECRET_KEY": generate_key(),
        "API_TOKEN": TOKEN,
        "POSTGRES_PASSWORD": "compose-password",
        "FLOWER_BASIC_AUTH": "admin:compose-password",
    }
    lines = [f"{line.split('=')[0]}={values[line.split('=')[0]]}" if line.split("=")[0] in values else line
             for line in env_text.splitlines()]  # fmt: skip
    (workdir / ".env").write_text("\n".join(lines) + "\n")
    completed = subprocess.run(
        [docker_compose, "config"], cwd=workdir, capture_output=True, text=True, env={"PATH": os.environ["PATH"]}
    )
    assert completed.returncode == 0, completed.stderr
    return yaml.safe_load(completed.stdout)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_compose_file_is_valid_and_complete(tmp_path: Path) -> None:
    services = _compose_config(tmp_path)["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "beat", "flower"}
    for role in ("api", "worker", "beat", "flower"):
        assert services[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[role]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "noeviction" in services["redis"]["command"] and "--appendonly" in services["redis"]["command"]
    assert "container_name" not in services["worker"] and "ports" not in services["worker"], "worker must scale"
    assert services["worker"]["healthcheck"]["test"][-2:] == ["probe", "worker"]
    for role in ("worker", "beat"):
        # Metrics listen on loopback unless told otherwise; in a container the scraper comes from outside.
        assert services[role]["environment"]["METRICS_HOST"] == "0.0.0.0"
    compose_text = (REPO_ROOT / "docker-compose.yml").read_text()
    assert "SECRET_KEY=" not in compose_text and "API_TOKEN:" not in compose_text


def test_compose_services_run_as_local_processes_and_finish_a_job(
    tmp_path: Path, empty_postgres_url: str, simulator
) -> None:
    services = _compose_config(tmp_path)["services"]
    api_port = _free_port()
    local = {
        "DATABASE_URL": empty_postgres_url,
        "REDIS_URL": redis_test_url(REDIS_DB),
        # The test's outside world: the simulator, and short intervals.
        "OPENAI_BASE_URL": simulator.openai_base_url,
        "ALLOW_INSECURE_ENDPOINTS": "true",
        "MIN_POLL_INTERVAL": "1",
        "WORKER_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
        "METRICS_PORT": "",
    }
    redis.Redis.from_url(local["REDIS_URL"]).flushdb()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for key in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "API_TOKEN"):
        base.pop(key, None)

    def environment(service: str) -> dict[str, str]:
        declared = {k: "" if v is None else str(v) for k, v in services[service].get("environment", {}).items()}
        assert declared["DATABASE_URL"].endswith("@postgres:5432/teckochecker")
        assert declared["REDIS_URL"] == "redis://redis:6379/0"
        return {**base, **declared, **local}

    def command(service: str) -> list[str]:
        arguments = [str(part) for part in services[service]["command"]]
        if service == "api":
            arguments[arguments.index("--port") + 1] = str(api_port)
        return [sys.executable, str(REPO_ROOT / "cli.py"), *arguments]

    migrate = subprocess.run(command("migrate"), env=environment("migrate"), cwd=tmp_path, capture_output=True)
    assert migrate.returncode == 0, migrate.stderr
    processes = []
    try:
        for service in ("api", "worker", "worker", "beat"):
            log = (tmp_path / f"{service}-{len(processes)}.log").open("wb")
            processes.append(subprocess.Popen(command(service), env=environment(service), cwd=tmp_path,
                                              stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        api = f"http://127.0.0.1:{api_port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{api}/api/health", timeout=2).json()["checks"]["workers"]["status"] == "ok":
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the API and workers did not come up"
            time.sleep(0.5)

        simulator.control.add_api_key("sk-compose")
        simulator.control.add_token("kbc-compose")
        simulator.control.create_batch(batch_id="batch_compose", final_status="completed", duration=2)
        for name, kind, value in (("openai", "openai", "sk-compose"), ("keboola", "keboola", "kbc-compose")):
            created = requests.post(f"{api}/api/admin/secrets", json={"name": name, "type": kind, "value": value},
                                    headers=headers, timeout=10)  # fmt: skip
            assert created.status_code == 201, created.text
        job = requests.post(
            f"{api}/api/jobs",
            json={
                "name": "compose job",
                "batch_id": "batch_compose",
                "openai_secret": "openai",
                "keboola_secret": "keboola",
                "keboola_stack_url": simulator.stack_url,
                "keboola_component_id": "kds-team.app-custom-python",
                "keboola_configuration_id": "compose",
                "poll_interval_seconds": 1,
            },
            headers=headers,
            timeout=10,
        )
        assert job.status_code == 201, job.text
        job_url = f"{api}/api/jobs/{job.json()['id']}"
        deadline = time.monotonic() + 60
        while (state := requests.get(job_url, headers=headers, timeout=10).json())["status"] != "completed":
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
        assert state["keboola_job_status"] == "success"
        assert [j["body"]["config"] for j in simulator.control.keboola_jobs()] == ["compose"]
        assert all(process.poll() is None for process in processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
