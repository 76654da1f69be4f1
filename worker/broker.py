"""Which broker the engine uses: Redis when REDIS_URL is set, else kombu's filesystem transport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from teckochecker.config import Settings
from teckochecker.engine.backoff import MAX_BROKER_WAIT_SECONDS

# An unacknowledged message (a worker died holding it) comes back after this long. It must stay far
# above every retry countdown, or a task waiting for its countdown would be delivered twice.
REDIS_VISIBILITY_TIMEOUT = 3600
EMBEDDED_BROKER_DIR = Path(".teckochecker") / "broker"

assert REDIS_VISIBILITY_TIMEOUT >= 10 * MAX_BROKER_WAIT_SECONDS


def uses_embedded_broker(settings: Settings) -> bool:
    return not settings.redis_url


def broker_options(settings: Settings) -> tuple[str, dict[str, Any]]:
    if settings.redis_url:
        return settings.redis_url, {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
    # The filesystem transport needs no server and supports broadcast, so `celery inspect ping` works.
    folder = EMBEDDED_BROKER_DIR.resolve()
    queue_folder = folder / "queue"
    control_folder = folder / "control"
    for path in (queue_folder, control_folder):
        path.mkdir(parents=True, exist_ok=True)
    return "filesystem://", {
        "data_folder_in": str(queue_folder),
        "data_folder_out": str(queue_folder),
        "control_folder": str(control_folder),
    }
