"""Engines and sessions. Services flush; whoever opens the session (a command, request or task) commits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from teckochecker.files import private_file

CONNECT_TIMEOUT_SECONDS = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; TeckoChecker stores only timezone-aware UTC times")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC so that comparisons in SQL stay correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets the CLI read while a worker writes; busy_timeout waits out short write locks instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _private_database_file(database: str) -> Any:
    def create_private(*_: Any) -> None:
        # SQLite creates the -wal and -shm files with the mode of the database file.
        with contextlib.suppress(OSError):
            # A folder that does not exist, say: SQLite's own connect reports it, as a database error.
            private_file(Path(database))

    return create_private


def database_now(session: Session) -> datetime:
    """The database's current time (timezone-aware UTC), read in the session's transaction.

    Leases, claims, heartbeats and the Keboola trigger's "have I already tried?" compare times written by
    different machines. Taking every such time from the database keeps a worker or beat whose clock is off
    (by 30 s, say) from stealing a live lease or misjudging how long ago something happened. SQLite is the
    embedded single-machine default, whose processes share one clock: there it is this machine's.
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.statement_timestamp()))
    return utcnow()


def make_engine(database_url: str, *, server_pool: dict[str, Any] | None = None, **options: Any) -> Engine:
    """An engine for `database_url`. `server_pool` (pool_size, max_overflow, pool_timeout) sizes the pool of a
    database server; SQLite, a file on this machine, keeps SQLAlchemy's own."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            # Created on the first connection, not here: building an engine (to print the API spec, say)
            # must not leave a database file behind.
            event.listen(engine, "do_connect", _private_database_file(url.database))
        return engine
    # A database host that does not answer fails fast instead of hanging a health check or a worker.
    options |= server_pool or {}
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}, **options)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def redact_url(database_url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"
