"""`GET /api/health`: can this API do its work right now? No token needed, so it reveals no internals."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import redis
from flask.views import MethodView
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.blueprint import Blueprint
from api.database import api_state
from api.schemas import HealthSchema
from teckochecker.config import Settings
from teckochecker.db import database_now
from teckochecker.services.workers import any_worker_recorded, workers_seen_since

logger = logging.getLogger(__name__)

blp = Blueprint("health", __name__, url_prefix="/api/health", description="Liveness of the API and its parts.")

BROKER_TIMEOUT_SECONDS = 3
WORKER_SILENCE = timedelta(seconds=60)


@dataclass(frozen=True)
class ComponentHealth:
    status: str  # "ok", "failing", or "unknown" (which does not make the service unhealthy)
    detail: str


def check_database() -> ComponentHealth:
    try:
        with api_state().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        # The cause goes to the log: this endpoint is public, and driver messages name hosts and users.
        logger.warning("health: database check failed: %s", exc)
        return ComponentHealth("failing", "SELECT 1 failed; see the server log")
    return ComponentHealth("ok", "SELECT 1 answered")


def check_broker(settings: Settings) -> ComponentHealth:
    if not settings.redis_url:
        return ComponentHealth("ok", "embedded broker (no REDIS_URL): no server needed")
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=BROKER_TIMEOUT_SECONDS, socket_timeout=BROKER_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        logger.warning("health: Redis ping failed: %s", exc)
        return ComponentHealth("failing", "Redis does not answer PING; see the server log")
    finally:
        client.close()
    return ComponentHealth("ok", "Redis answers PING")


def check_workers() -> ComponentHealth:
    """Workers write a heartbeat row every few seconds; silence for WORKER_SILENCE means none is working."""
    try:
        with api_state().sessions() as session:
            seen = workers_seen_since(session, database_now(session) - WORKER_SILENCE)
            recorded = seen or any_worker_recorded(session)
    except SQLAlchemyError as exc:
        logger.warning("health: worker heartbeat check failed: %s", exc)
        return ComponentHealth("unknown", "worker heartbeats could not be read")
    if seen:
        return ComponentHealth("ok", f"{len(seen)} worker(s) reported in the last {WORKER_SILENCE.seconds} s")
    if not recorded:
        # A fresh installation whose workers have not started yet, or an API deployed on its own.
        return ComponentHealth("unknown", "no worker has reported yet")
    return ComponentHealth("failing", f"no worker has reported in the last {WORKER_SILENCE.seconds} s")


def health_report(settings: Settings) -> tuple[dict[str, Any], int]:
    checks = {"database": check_database(), "broker": check_broker(settings), "workers": check_workers()}
    failing = [name for name, check in checks.items() if check.status == "failing"]
    report = {
        "status": "unavailable" if failing else "ok",
        "failing": failing,
        "checks": {name: asdict(check) for name, check in checks.items()},
    }
    return report, 503 if failing else 200


@blp.route("")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema, description="Every part works.")
    @blp.alt_response(
        503,
        schema=HealthSchema,
        description="A part is failing; `failing` names it.",
        example={
            "status": "unavailable",
            "failing": ["database"],
            "checks": {
                "database": {"status": "failing", "detail": "SELECT 1 failed; see the server log"},
                "broker": {"status": "ok", "detail": "embedded broker (no REDIS_URL): no server needed"},
                "workers": {"status": "unknown", "detail": "no worker heartbeats are recorded yet"},
            },
        },
    )
    def get(self) -> tuple[dict[str, Any], int]:
        """Health of the database, the broker and the workers

        No token needed. 200 when every part works, 503 naming the failing parts otherwise. A part whose
        state cannot be known (`unknown`) does not make the service unhealthy.
        """
        return health_report(api_state().settings)
