"""`teckochecker api`: defaults from settings, and no open API on a non-loopback address."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result
from flask import Flask

from api.server import ApiWorker
from commands.api import KEEPALIVE_SECONDS, THREADS_PER_WORKER, ApiServer, api, bind_address
from commands.context import AppContext
from teckochecker.addresses import is_loopback
from teckochecker.config import Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[ApiServer]:
    """Servers the command would have started; gunicorn itself is exercised by the live curl test."""
    servers: list[ApiServer] = []
    monkeypatch.setattr(ApiServer, "run", lambda self: servers.append(self))
    return servers


def run(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(api, list(args), obj=AppContext(settings=settings))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_without_a_token_it_refuses_a_non_loopback_host(started: list[ApiServer], host: str) -> None:
    result = run(Settings(), "--host", host)
    assert result.exit_code == 1
    assert f"Refusing to listen on {host}: API_TOKEN is not set" in result.output
    assert started == []


def test_without_a_token_it_refuses_api_host_from_settings(started: list[ApiServer]) -> None:
    result = run(Settings(api_host="0.0.0.0"))
    assert result.exit_code == 1 and "API_TOKEN is not set" in result.output


def test_without_a_token_it_serves_loopback_with_a_warning(started: list[ApiServer]) -> None:
    result = run(Settings())
    assert result.exit_code == 0, result.output
    assert "Warning: API_TOKEN is not set" in result.output
    [server] = started
    assert server.cfg.bind == ["127.0.0.1:8000"] and server.cfg.workers == 2


def test_with_a_token_it_serves_any_host(started: list[ApiServer]) -> None:
    result = run(Settings(api_token="t", api_host="0.0.0.0", api_port=9000, log_level="DEBUG"), "--workers", "3")
    assert result.exit_code == 0, result.output
    [server] = started
    assert server.cfg.bind == ["0.0.0.0:9000"] and server.cfg.workers == 3 and server.cfg.loglevel == "debug"
    assert isinstance(server.load(), Flask)


def test_options_override_settings(started: list[ApiServer]) -> None:
    assert run(Settings(api_token="t"), "--host", "::1", "--port", "8123").exit_code == 0
    assert started[0].cfg.bind == ["[::1]:8123"]


def test_loopback_and_bind_addresses() -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.0.0.1", "example.com", ""))
    assert bind_address("::1", 80) == "[::1]:80" and bind_address("127.0.0.1", 80) == "127.0.0.1:80"


def test_it_serves_with_threads_and_the_worker_that_limits_slow_clients(started: list[ApiServer]) -> None:
    assert run(Settings()).exit_code == 0
    [server] = started
    assert server.cfg.worker_class is ApiWorker and server.cfg.threads == THREADS_PER_WORKER
    assert server.cfg.keepalive == KEEPALIVE_SECONDS and server.cfg.child_exit.__name__ == "_forget_worker_metrics"
