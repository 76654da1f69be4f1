"""API fixtures: an app per test on the shared SQLite/PostgreSQL `settings`, clients with and without the token,
and `teckochecker api` (gunicorn) in its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from api import create_app
from api.database import api_state
from teckochecker.config import Settings
from tests.conftest import REPO_ROOT

TOKEN = "test-api-token-5f0c2e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# The create-job body of docs/USER_GUIDE.md; the secrets it names are ids 1 (openai) and 2 (keboola).
GUIDE_JOB = {
    "name": "Test job",
    "batch_id": "batch_123",
    "openai_secret_id": 1,
    "keboola_secret_id": 2,
    "keboola_stack_url": "https://connection.eu-central-1.keboola.com",
    "keboola_component_id": "kds-team.app-custom-python",
    "keboola_configuration_id": "123456",
    "poll_interval_seconds": 120,
}
STARTUP_SECONDS = 30
# Settings a developer's shell may hold; `teckochecker api` under test gets only the test's own.
SETTINGS_KEYS = (
    "DATABASE_URL", "SECRET_KEY", "API_TOKEN", "API_HOST", "API_PORT", "REDIS_URL", "CORS_ORIGINS",
    "PROMETHEUS_MULTIPROC_DIR",
)  # fmt: skip


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.with_overrides(api_token=TOKEN)


@pytest.fixture
def app_factory() -> Iterator[Any]:
    """Builds apps with any settings and disposes of their engines afterwards (PostgreSQL keeps no idle sessions)."""
    apps: list[Flask] = []

    def make(settings: Settings) -> Flask:
        app = create_app(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            api_state().engine.dispose()


@pytest.fixture
def app(app_factory: Any, api_settings: Settings) -> Flask:
    return app_factory(api_settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client that sends the API token with every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = AUTH["Authorization"]
    return client


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def guide_secrets(client: FlaskClient) -> tuple[int, int]:
    """The two secrets the guide's job refers to: openai (id 1) and keboola (id 2)."""
    openai = client.post("/api/admin/secrets", json={"name": "openai-test", "type": "openai", "value": "sk-test"})
    keboola = client.post("/api/admin/secrets", json={"name": "keboola-test", "type": "keboola", "value": "kbc-t"})
    assert openai.status_code == keboola.status_code == 201, (openai.json, keboola.json)
    return openai.json["id"], keboola.json["id"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served over real HTTP on a free loopback port, in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def serving_api(
    settings: Settings, workdir: Path, *, workers: int = 2, environment: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`teckochecker api` in its own process, configured through the environment as a user would; yields its URL
    once /api/health answers 200."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS_KEYS}
    env |= {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key or "", "API_TOKEN": TOKEN}
    env |= environment or {}
    command = [sys.executable, str(REPO_ROOT / "cli.py"), "api", "--port", str(port), "--workers", str(workers)]
    log_path = workdir / "api.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
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
        process.wait(timeout=30)


@pytest.fixture
def gunicorn_server(api_settings: Settings, tmp_path: Path) -> Iterator[str]:
    with serving_api(api_settings, tmp_path) as base_url:
        yield base_url
