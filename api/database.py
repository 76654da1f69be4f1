"""One engine per app, one session per request: services only flush, the request commits once it succeeded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from flask import Flask, current_app, g
from flask.views import MethodView
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.config import Settings
from teckochecker.db import make_engine, make_session_factory, utcnow
from teckochecker.vault import Vault

EXTENSION_KEY = "teckochecker"
# Connections per API process, kept open. A request holds one for milliseconds, so ten serve the process's 64
# threads; a request that finds all ten busy waits for one rather than opening an eleventh, which PostgreSQL
# would fork a backend for and close again moments later (in a burst of webhooks that churn cost a quarter
# of the API's throughput). Past POOL_TIMEOUT_SECONDS the request is answered 503.
POOL_SIZE = 10
POOL_TIMEOUT_SECONDS = 10.0


@dataclass
class ApiState:
    """What one app holds for its whole life; stored in `app.extensions` so no global is needed."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    started_at: datetime = field(default_factory=utcnow)
    # Monotonic, so uptime survives changes of the wall clock.
    started_monotonic: float = field(default_factory=time.monotonic)

    @cached_property
    def vault(self) -> Vault:
        """Built on first use: an app without SECRET_KEY still serves everything but secret creation."""
        return Vault(self.settings.secret_key)

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic


def init_database(app: Flask, settings: Settings) -> ApiState:
    # create_engine does not connect, so building an app (e.g. to print its spec) needs no database.
    pool = {"pool_size": POOL_SIZE, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT_SECONDS}
    engine = make_engine(settings.database_url, server_pool=pool)
    state = ApiState(settings=settings, engine=engine, sessions=make_session_factory(engine))
    app.extensions[EXTENSION_KEY] = state
    app.teardown_appcontext(_remove_session)
    return state


def api_state() -> ApiState:
    return current_app.extensions[EXTENSION_KEY]


def db_session() -> Session:
    """The request's session, opened on first use so requests that need no database open none."""
    if "db_session" not in g:
        g.db_session = api_state().sessions()
    return g.db_session


def _remove_session(_error: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        # Closing rolls back whatever was not committed: a failed request leaves no trace.
        session.close()


class UnitOfWorkView(MethodView):
    """A resource view whose request is one unit of work, committed only when the view succeeded.

    The commit happens here, inside dispatch, rather than in `after_request`, so a failing commit (say, a
    constraint another writer violated first) still reaches the error handlers and becomes a JSON error.
    """

    def dispatch_request(self, **kwargs: Any) -> Any:
        response = super().dispatch_request(**kwargs)
        session = g.get("db_session")
        if session is not None:
            session.commit()
        return response
