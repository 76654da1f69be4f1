"""The worker's heartbeats: a local file for container liveness probes, a database row for the fleet.

A Celery ping per probe costs seconds of CPU and fails for every worker at once when the broker
blinks; a stale heartbeat file means this worker process has stopped running its timers. The row in
`worker_heartbeats` lets the API's health check, on another machine, see that workers are alive.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from celery import bootsteps
from sqlalchemy.exc import SQLAlchemyError

from teckochecker.db import database_now, session_scope
from teckochecker.services.workers import record_heartbeat
from worker.tasks import EngineTask

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_SECONDS = 10.0


class HeartbeatFile(bootsteps.StartStopStep):
    """Worker step: beats on the worker's timer for the worker's whole life.

    It belongs to the worker, not to the broker consumer: a consumer restarting after a broker outage
    must not look like a dead worker, or every worker would be restarted during the outage.
    """

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.settings = parent.app.settings
        self.path = Path(self.settings.worker_heartbeat_file)
        self.timer_entry: Any = None

    def _beat(self, hostname: str) -> None:
        with contextlib.suppress(OSError):
            self.path.touch()
        try:
            with session_scope(EngineTask.runtime_for(self.settings).sessions) as session:
                record_heartbeat(session, hostname, database_now(session))
        except SQLAlchemyError as error:
            logger.warning("could not record the worker heartbeat: %s", error)

    def start(self, worker: Any) -> None:
        self._beat(worker.hostname)
        self.timer_entry = worker.timer.call_repeatedly(HEARTBEAT_EVERY_SECONDS, self._beat, (worker.hostname,))

    def stop(self, worker: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        self.path.unlink(missing_ok=True)
