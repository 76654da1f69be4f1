"""/metrics: Prometheus counts and latencies by endpoint and status, summed over gunicorn's workers."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from teckochecker.config import Settings
from tests.api.conftest import AUTH, serving_api


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


def _invented_requests(send: Callable[[str, str], object], count: int, start: int = 0) -> None:
    """Requests with made-up methods: on a made-up path (404), on a list (405) and on a job (405), in turn."""
    generator = random.Random(start)
    for number in range(start, start + count):
        method = "".join(generator.choices(string.ascii_uppercase, k=12))
        path = (f"/made-up/{generator.randrange(10**9)}", "/api/jobs", f"/api/jobs/{number + 1}")[number % 3]
        send(method, path)


def test_invented_methods_and_paths_leave_the_metrics_bounded(client: FlaskClient, anonymous: FlaskClient) -> None:
    def metrics_size() -> int:
        return len(anonymous.get("/metrics").data)

    def send(method: str, path: str) -> None:
        assert client.open(path, method=method).status_code in (404, 405)

    metrics_size()  # /metrics counts itself from its first request on
    _invented_requests(send, 10)
    after_ten = metrics_size()
    _invented_requests(send, 990, start=10)
    after_thousand = metrics_size()
    # Only the counts' digits may grow; one series per invented method would add about 2 KB each.
    assert after_thousand - after_ten < 2_000, (after_ten, after_thousand)
    text = anonymous.get("/metrics").text
    assert 'method="other",status="404"' in text and 'endpoint="unmatched"' in text


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.slow
@SQLITE_ONLY
def test_metrics_add_up_across_gunicorn_workers(api_settings: Settings, tmp_path: Path) -> None:
    with serving_api(api_settings, tmp_path, workers=3) as base:
        for _ in range(30):
            assert requests.get(f"{base}/api/stats", headers=AUTH, timeout=5).status_code == 200
        counted = _samples(requests.get(f"{base}/metrics", timeout=5).text, "teckochecker_http_requests_total")
    assert counted[(("endpoint", "/api/stats"), ("method", "GET"), ("status", "200"))] == 30


@pytest.mark.slow
@SQLITE_ONLY
def test_invented_methods_leave_the_workers_metrics_files_bounded(api_settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()

    def sizes(base: str) -> tuple[int, int]:
        """The size of /metrics and of the largest file a worker keeps its metrics in."""
        text_size = len(requests.get(f"{base}/metrics", timeout=5).content)
        return text_size, max((path.stat().st_size for path in folder.iterdir()), default=0)

    environment = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with serving_api(api_settings, tmp_path, environment=environment) as base, requests.Session() as session:

        def send(method: str, path: str) -> None:
            assert session.request(method, base + path, headers=AUTH, timeout=5).status_code in (404, 405)

        sizes(base)
        _invented_requests(send, 10)
        text_after_ten, largest_file_after_ten = sizes(base)
        _invented_requests(send, 990, start=10)
        text_after_thousand, largest_file_after_thousand = sizes(base)
    assert text_after_thousand - text_after_ten < 2_000, (text_after_ten, text_after_thousand)
    # Each worker process writes its own files; prometheus_client starts them at 64 KiB and doubles them when full.
    assert largest_file_after_thousand == largest_file_after_ten
