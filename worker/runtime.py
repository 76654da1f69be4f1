"""What a worker or beat process needs, created once per process on first use."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.keboola_queue import KeboolaQueueClient
from teckochecker.clients.openai_batches import OpenAIBatchClient
from teckochecker.config import Settings, load_settings
from teckochecker.db import make_engine, make_session_factory, session_scope
from teckochecker.engine.leases import HTTP_TIMEOUTS
from teckochecker.redaction import StoredSecretsRedactor
from teckochecker.services.secrets import stored_secret_values
from teckochecker.services.validation import keboola_hosts
from teckochecker.vault import Vault


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    vault: Vault

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


_lock = threading.Lock()
_runtime: Runtime | None = None


# Transactions last milliseconds and never span an HTTP call, so a few connections serve all of a
# worker's threads; the overflow absorbs a slow database, and two workers stay within PostgreSQL's
# default 100 connections.
POOL_SIZE = 10
POOL_OVERFLOW = 30


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            settings = load_settings()
            options = {}
            if not settings.database_url.startswith("sqlite"):
                options = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
            engine = make_engine(settings.database_url, **options)
            _runtime = Runtime(settings, engine, make_session_factory(engine), Vault(settings.secret_key))
        return _runtime


def _forget_after_fork() -> None:
    # A forked child must not share its parent's database connections.
    global _runtime
    _runtime = None


os.register_at_fork(after_in_child=_forget_after_fork)
