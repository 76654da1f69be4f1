"""Wake the dispatcher when work falls due between its ticks: PostgreSQL NOTIFY and LISTEN.

Beat claims due jobs once a second. A webhook that makes jobs due now, or a check that moves jobs to
`triggering`, would otherwise wait for that tick, once per step. On PostgreSQL they announce it on CHANNEL
inside their own transaction (PostgreSQL delivers a notification only when that transaction commits, so beat
never wakes for work that was rolled back), and beat, listening on a connection of its own, claims at once.

The announcement is a hint, like the webhook itself: beat still claims only what the database says is due,
and a lost notification (beat restarting, the listening connection dropped) costs at most one tick. On
SQLite, the embedded single-machine default, nothing is announced and beat keeps its tick.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

logger = logging.getLogger(__name__)
CHANNEL = "teckochecker_due"
# After the listening connection is lost, how long to keep the plain tick before connecting again.
RECONNECT_EVERY_SECONDS = 5.0


def announces(session: Session) -> bool:
    """Whether this database carries announcements (PostgreSQL) or beat's tick is the only wake-up (SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def announcement() -> ColumnElement[Any]:
    """The NOTIFY as an SQL expression, to fold into a statement the caller sends anyway (PostgreSQL only)."""
    return func.pg_notify(CHANNEL, "")


def announce_due(session: Session) -> None:
    """Tell the dispatcher, when the caller's transaction commits, that jobs are due now."""
    if announces(session):
        session.execute(select(announcement()))


class DueListener:
    """A connection of its own, outside the engine's pool, listening on CHANNEL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Any = None
        self._next_attempt = 0.0

    @classmethod
    def for_engine(cls, engine: Engine) -> DueListener | None:
        """A listener on PostgreSQL; None on SQLite, where nothing is announced."""
        return cls(engine) if engine.dialect.name == "postgresql" else None

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for an announcement; True if one came. Every announcement already
        received is consumed, so a burst of them wakes the caller once. Without a connection (the database
        is unreachable) this only sleeps, so the caller falls back to its tick."""
        deadline = time.monotonic() + max(0.0, timeout)
        connection = self._connected()
        if connection is None:
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False
        try:
            woken = any(True for _ in connection.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1))
            if woken:
                # Drain what else has arrived: one wake-up for the whole burst.
                for _ in connection.notifies(timeout=0):
                    pass
            return woken
        except Exception:
            logger.warning("lost the connection that listens for due jobs; beat keeps its tick", exc_info=True)
            self.close()
            return False

    def _connected(self) -> Any:
        if self._connection is not None or time.monotonic() < self._next_attempt:
            return self._connection
        self._next_attempt = time.monotonic() + RECONNECT_EVERY_SECONDS
        try:
            # Connected as the pool connects (the same arguments and timeouts), then detached from it, so the
            # pool never hands it out or resets it.
            pooled = self._engine.raw_connection()
            connection = pooled.driver_connection
            pooled.detach()
            connection.rollback()
            connection.autocommit = True
            connection.execute(f"LISTEN {CHANNEL}")
        except Exception:
            logger.warning("cannot listen for due jobs; beat keeps its tick", exc_info=True)
            return None
        self._connection = connection
        return connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                logger.debug("closing the listening connection failed", exc_info=True)
