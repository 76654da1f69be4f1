"""What a worker or beat process works with: its settings, database, vault and HTTP clients.

The engine's task base class (worker/tasks.py) builds one Runtime per process on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.keboola_queue import KeboolaQueueClient
from teckochecker.clients.openai_batches import OpenAIBatchClient
from teckochecker.config import Settings
from teckochecker.db import make_engine, make_session_factory, session_scope
from teckochecker.engine.leases import RUN_LEASE
from teckochecker.redaction import StoredSecretsRedactor
from teckochecker.services.secrets import stored_secret_values
from teckochecker.services.validation import keboola_hosts
from teckochecker.vault import Vault

# Connect and read timeouts of every call to OpenAI and Keboola. Thread pools do not enforce Celery's
# time limits, so these bound a call; a lease must outlast one call with room to spare.
HTTP_TIMEOUTS = (5.0, 20.0)
assert sum(HTTP_TIMEOUTS) < RUN_LEASE.total_seconds()

# Transactions last milliseconds and never span an HTTP call, so a few connections serve all of a
# worker's threads; the overflow absorbs a slow database, and two workers stay within PostgreSQL's
# default 100 connections.
POOL_SIZE = 10
POOL_OVERFLOW = 30


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    vault: Vault

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        """A runtime for `settings`; it opens no connection until a session is used."""
        pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
        engine = make_engine(settings.database_url, server_pool=pool)
        return cls(settings, engine, make_session_factory(engine), Vault(settings.secret_key))

    @cached_property
    def redactor(self) -> StoredSecretsRedactor:
        """Keeps every stored secret, not only the key of the call, out of errors that are stored or logged."""
        return StoredSecretsRedactor(self._stored_secret_values)

    def _stored_secret_values(self) -> list[str]:
        with session_scope(self.sessions) as session:
            return stored_secret_values(session, self.vault)

    def openai_client(self, api_key: str) -> OpenAIBatchClient:
        connect, read = HTTP_TIMEOUTS
        return OpenAIBatchClient(
            api_key,
            self.settings.openai_base_url,
            redactor=self.redactor,
            connect_timeout=connect,
            read_timeout=read,
        )

    def keboola_client(self, token: str, stack_url: str) -> KeboolaQueueClient:
        connect, read = HTTP_TIMEOUTS
        return KeboolaQueueClient(
            token,
            stack_url,
            hosts=keboola_hosts(self.settings),
            redactor=self.redactor,
            connect_timeout=connect,
            read_timeout=read,
        )
