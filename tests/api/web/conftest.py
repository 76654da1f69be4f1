"""Dashboard fixtures: a signed-in Flask client for page tests, and for the browser tests one real installation
(simulator, API server, worker and beat on PostgreSQL and Redis) driven by Debian's headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from flask.testing import FlaskClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from teckochecker.config import Settings
from teckochecker.schema import upgrade_to_head
from teckochecker.simulator import RunningSimulator
from teckochecker.vault import generate_key
from tests.api.conftest import TOKEN, free_port
from tests.conftest import REPO_ROOT, _throwaway_postgres_database, redis_test_url, wait_for_http
from tests.worker.conftest import Engine

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# The browser installation's own Redis database (others: 0 health, 11 compose, 12 service, 13 worker).
REDIS_DB = 10
OPENAI_KEY = "sk-dashboard-test-0a1b2c3d4e5f60718293"
KEBOOLA_TOKEN = "555-dashboard-test-kbc-token-zyxwvuts"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token_in(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, token: str) -> None:
    page = client.get("/sign-in")
    response = client.post("/sign-in", data={"csrf_token": csrf_token_in(page.text), "token": token, "next": "/"})
    assert response.status_code == 302 and response.headers["Location"] == "/", response.text


@pytest.fixture
def dashboard(app) -> FlaskClient:
    """A browser-like client signed in with API_TOKEN (the write role)."""
    client = app.test_client()
    sign_in(client, TOKEN)
    return client


def post_form(client: FlaskClient, page: str, action: str, data: dict[str, str] | None = None):
    """Submit a form as the browser would: with the CSRF token of the page it is on."""
    token = csrf_token_in(client.get(page).text)
    return client.post(action, data={"csrf_token": token, **(data or {})})


# --- the real installation and the browser ------------------------------------------------------------


@dataclass
class Installation:
    """API server, worker and beat as processes (tests/worker's Engine starts and stops them), against the
    simulator, PostgreSQL and Redis; and the means to call the API and the CLI as a user would."""

    processes: Engine
    base_url: str
    api_token: str

    @property
    def simulator(self) -> RunningSimulator:
        return self.processes.simulator

    def cli(self, *args: str) -> str:
        completed = subprocess.run(
            [sys.executable, str(REPO_ROOT / "cli.py"), *args],
            cwd=self.processes.workdir,
            env=self.processes.environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        return completed.stdout

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.api_token}"}
        return requests.request(method, self.base_url + path, headers=headers, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def installation(
    tmp_path_factory: pytest.TempPathFactory, running_simulator: RunningSimulator
) -> Iterator[Installation]:
    workdir = tmp_path_factory.mktemp("dashboard")
    running_simulator.control.reset()
    running_simulator.control.add_api_key(OPENAI_KEY)
    running_simulator.control.add_token(KEBOOLA_TOKEN, project_id="4242", description="dashboard tests")
    running_simulator.control.configure(job_duration=2)
    port = free_port()
    api_token = "dashboard-test-api-token-" + generate_key()[:16]
    broker = redis.Redis.from_url(redis_test_url(REDIS_DB))
    broker.flushdb()
    with _throwaway_postgres_database() as database_url:
        settings = Settings(
            database_url=database_url,
            secret_key=generate_key(),
            api_token=api_token,
            redis_url=redis_test_url(REDIS_DB),
            min_poll_interval=1,
            retry_delay=1,
            openai_base_url=running_simulator.openai_base_url,
            allow_insecure_endpoints=True,
        )
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        environment.update(
            DATABASE_URL=settings.database_url,
            SECRET_KEY=settings.secret_key,
            API_TOKEN=api_token,
            REDIS_URL=settings.redis_url,
            MIN_POLL_INTERVAL="1",
            RETRY_DELAY="1",
            OPENAI_BASE_URL=settings.openai_base_url,
            ALLOW_INSECURE_ENDPOINTS="true",
            PYTHONUNBUFFERED="1",
        )
        upgrade_to_head(database_url)
        processes = Engine(workdir, environment, settings, running_simulator, broker)
        installation = Installation(processes, f"http://127.0.0.1:{port}", api_token)
        try:
            api = processes.start("api", "--host", "127.0.0.1", "--port", str(port), "--workers", "2")
            processes.start_worker("dashboard", concurrency=4)
            processes.start_beat()
            wait_for_http(installation.base_url + "/api/health", process=api)
            yield installation
        finally:
            processes.stop_all()
            broker.flushdb()
            broker.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's Chromium in headless mode, driven by Debian's chromedriver: nothing is downloaded."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    # Selenium Manager would download a driver or browser if ours were missing: forbid it outright.
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="teckochecker-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (*CHROME_ARGUMENTS, f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the browser tests leave their screenshots: TECKOCHECKER_ARTIFACTS, else tmp/artifacts in the repo."""
    folder = Path(os.environ.get("TECKOCHECKER_ARTIFACTS") or REPO_ROOT / "tmp" / "artifacts") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
