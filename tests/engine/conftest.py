"""Engine tests: the domain rules against the simulator over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.keboola_queue import KeboolaQueueClient
from teckochecker.clients.openai_batches import OpenAIBatchClient
from teckochecker.config import Settings
from teckochecker.db import make_session_factory
from teckochecker.services.jobs import JobDraft, create_job
from teckochecker.services.secrets import add_secret
from teckochecker.services.validation import keboola_hosts

OPENAI_KEY = "sk-engine-test-0d9c8b7a6f5e4d3c2b1a"
KEBOOLA_TOKEN = "555-engine-test-kbc-token-zyxwvu"


@dataclass
class EngineWorld:
    """A database with two secrets, a simulator that accepts them, and client factories pointing at it."""

    sessions: sessionmaker[Session]
    settings: Settings
    vault: object
    simulator: object

    def openai_client(self, key: str) -> OpenAIBatchClient:
        return OpenAIBatchClient(key, self.simulator.openai_base_url, connect_timeout=2, read_timeout=2)

    def keboola_client(self, token: str, stack_url: str) -> KeboolaQueueClient:
        return KeboolaQueueClient(
            token, stack_url, hosts=keboola_hosts(self.settings), connect_timeout=2, read_timeout=2
        )

    def create_job(self, batch_ids: list[str], **overrides) -> int:
        values = {
            "name": "engine job",
            "batch_ids": batch_ids,
            "openai_secret": "openai",
            "keboola_secret": "keboola",
            "keboola_stack_url": self.simulator.stack_url,
            "keboola_component_id": "kds-team.app-custom-python",
            "keboola_configuration_id": "42",
            "poll_interval_seconds": 30,
            **overrides,
        }
        with self.sessions() as session, session.begin():
            return create_job(session, self.settings, JobDraft(**values)).id


@pytest.fixture
def world(engine, settings, vault, simulator) -> EngineWorld:
    settings = settings.with_overrides(allow_insecure_endpoints=True)
    sessions = make_session_factory(engine)
    with sessions() as session, session.begin():
        add_secret(session, vault, name="openai", type="openai", value=OPENAI_KEY)
        add_secret(session, vault, name="keboola", type="keboola", value=KEBOOLA_TOKEN)
    simulator.control.add_api_key(OPENAI_KEY)
    simulator.control.add_token(KEBOOLA_TOKEN)
    return EngineWorld(sessions, settings, vault, simulator)


class InFlight:
    """Wraps real clients (over the simulator's socket) to count the calls of one method in flight at once."""

    def __init__(self, make_client: Callable[..., Any], method: str) -> None:
        self.make_client, self.method = make_client, method
        self.now = self.most = 0
        self._lock = threading.Lock()

    def client(self, *args: Any) -> Any:
        real, meter = self.make_client(*args), self

        class Metered:
            def __getattr__(self, name: str) -> Any:
                if name != meter.method:
                    return getattr(real, name)

                def call(*call_args: Any, **kwargs: Any) -> Any:
                    with meter._lock:
                        meter.now += 1
                        meter.most = max(meter.most, meter.now)
                    try:
                        return getattr(real, name)(*call_args, **kwargs)
                    finally:
                        with meter._lock:
                            meter.now -= 1

                return call

        return Metered()
