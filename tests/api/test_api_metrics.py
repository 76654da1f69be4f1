"""/metrics: Prometheus counts and latencies by endpoint and status, summed over gunicorn's workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import AUTH, free_port
from tests.conftest import REPO_ROOT, wait_for_http


def _samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_requests_are_counted_by_route_and_status(client: FlaskClient, anonymous: FlaskClient) -> None:
    before = _samples(anonymous.get("/metrics").text, "teckochecker_http_requests_total")
    client.get("/api/jobs/1")
    client.get("/api/jobs/2")
    anonymous.get("/api/jobs")
    response = anonymous.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    after = _samples(response.text, "teckochecker_http_requests_total")
    missing = (("endpoint", "/api/jobs/<int(min=1, max=2147483647):job_id>"), ("method", "GET"), ("status", "404"))
    unauthorised = (("endpoint", "/api/jobs"), ("method", "GET"), ("status", "401"))
    assert after[missing] - before.get(missing, 0) == 2
    assert after[unauthorised] - before.get(unauthorised, 0) == 1
    assert "teckochecker_http_request_duration_seconds_bucket" in response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_metrics_add_up_across_gunicorn_workers(settings, tmp_path) -> None:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environment.update(DATABASE_URL=settings.database_url, API_TOKEN=AUTH["Authorization"].split()[1])
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, str(REPO_ROOT / "cli.py"), "api", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", "3"],
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/api/health", process=server)
        for _ in range(30):
            assert requests.get(f"{base}/api/stats", headers=AUTH, timeout=5).status_code == 200
        counted = _samples(requests.get(f"{base}/metrics", timeout=5).text, "teckochecker_http_requests_total")
        assert counted[(("endpoint", "/api/stats"), ("method", "GET"), ("status", "200"))] == 30
    finally:
        server.terminate()
        server.wait(timeout=30)
