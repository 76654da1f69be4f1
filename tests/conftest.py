"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL at 127.0.0.1:5432.

PostgreSQL gets a throw-away database per test run (dropped at the end); each test starts from empty
tables. A PostgreSQL that cannot be reached is a failure, never a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests
from click.testing import CliRunner, Result
from sqlalchemy import Engine, delete, text
from sqlalchemy.orm import Session

from cli import main
from commands.context import AppContext
from teckochecker.config import Settings
from teckochecker.db import make_engine, make_session_factory
from teckochecker.models import Base
from teckochecker.schema import upgrade_to_head
from teckochecker.simulator import RunningSimulator, start_simulator
from teckochecker.vault import generate_key

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("TECKOCHECKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
# The Redis server the engine and service tests use (they flush their own numbered databases on it).
REDIS_SERVER_URL = os.environ.get("TECKOCHECKER_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")


def redis_test_url(database: int) -> str:
    return f"{REDIS_SERVER_URL}/{database}"


DATABASES = ("sqlite", "postgresql")


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for the test suite and is not reachable at {POSTGRES_ADMIN_URL}: {exc}")


@contextmanager
def _throwaway_postgres_database() -> Iterator[str]:
    name = f"teckochecker_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connection() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run (per xdist worker), shared by the database tests."""
    with _throwaway_postgres_database() as url:
        yield url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own, with no schema at all."""
    with _throwaway_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def make_database(tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str):
    """Factory: a migrated database URL of the given kind, migrated once per run."""
    migrated: dict[str, str] = {}

    def make(kind: str) -> str:
        if kind not in migrated:
            if kind == "sqlite":
                url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'teckochecker.db'}"
            else:
                url = postgres_server_url
            upgrade_to_head(url)
            migrated[kind] = url
        return migrated[kind]

    yield make
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


_engines: dict[str, Engine] = {}


def _engine_for(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def _empty_tables(engine: Engine) -> None:
    """Every test starts with empty tables and ids counting from 1, as on a new installation."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(table.name for table in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            return
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, make_database) -> str:
    url = make_database(request.param)
    _empty_tables(_engine_for(url))
    return url


@pytest.fixture
def engine(database_url: str) -> Engine:
    return _engine_for(database_url)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret_key=generate_key())


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    session = make_session_factory(engine)()
    try:
        yield session
        session.commit()
    finally:
        session.rollback()
        session.close()


@pytest.fixture
def vault(settings: Settings):
    from teckochecker.vault import Vault

    return Vault(settings.secret_key)


@pytest.fixture
def signing_secret(session: Session, vault) -> str:
    """An OpenAI webhook signing secret, stored as `openai-webhook`; its value, to sign deliveries with."""
    from teckochecker.services.secrets import add_secret
    from tests.webhook_signing import new_signing_secret

    secret = new_signing_secret()
    add_secret(session, vault, name="openai-webhook", type="openai_webhook", value=secret)
    session.commit()
    return secret


@pytest.fixture(scope="session")
def running_simulator() -> Iterator[RunningSimulator]:
    """The OpenAI + Keboola simulator on a free loopback port, for the whole run."""
    with start_simulator() as simulator:
        yield simulator


@pytest.fixture
def simulator(running_simulator: RunningSimulator) -> RunningSimulator:
    """The simulator, reset: no keys, tokens, batches, jobs or faults."""
    running_simulator.control.reset()
    return running_simulator


SIMULATOR_API_KEY = "sk-test-simulator-8e2d4c6b0a1f3e5d7c9b"
SIMULATOR_TOKEN = "4321-98765-kbcTokenForSimulatorTests9z8y"


def register_test_credentials(simulator: RunningSimulator) -> RunningSimulator:
    """Make the simulator accept SIMULATOR_API_KEY and SIMULATOR_TOKEN."""
    simulator.control.add_api_key(SIMULATOR_API_KEY)
    simulator.control.add_token(SIMULATOR_TOKEN, project_id="77", description="teckochecker")
    return simulator


@pytest.fixture
def api_key() -> str:
    return SIMULATOR_API_KEY


@pytest.fixture
def token() -> str:
    return SIMULATOR_TOKEN


def wait_for_http(url: str, *, timeout: float = 60, process: subprocess.Popen | None = None) -> None:
    """Wait until `url` answers at all (any status), failing early if `process` dies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            assert process is None or process.poll() is None, f"the server exited with {process.returncode}"
            assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f}s"
            time.sleep(0.3)


class CliHarness:
    """Runs the real CLI in-process with the test's settings, as a user would type it."""

    def __init__(self, settings: Settings, env_file: Path) -> None:
        self.settings = settings
        self.env_file = env_file

    def __call__(self, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        app = AppContext(settings=self.settings, env_file=self.env_file)
        return runner.invoke(main, list(args), obj=app, input=input, catch_exceptions=False)


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> CliHarness:
    return CliHarness(settings, tmp_path / ".env")


class ConnectionRecorder:
    """A TCP listener on loopback that records every connection and the first line it receives, then hangs up.

    Used as a stand-in host or as an HTTPS proxy (the first line is then `CONNECT host:port …`), to prove that
    nothing was sent somewhere it must not go.
    """

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self.first_lines: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    data = connection.recv(4096)
                except OSError:
                    data = b""
                self.first_lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._server.close()


@pytest.fixture
def connection_recorder() -> Iterator[ConnectionRecorder]:
    recorder = ConnectionRecorder()
    yield recorder
    recorder.close()
