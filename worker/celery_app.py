"""The Celery application, built from Settings: `celery -A worker worker|beat` find it as `worker.app`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready

from teckochecker.config import Settings
from teckochecker.logs import style_handlers
from worker.broker import broker_options, broker_transport
from worker.consumer_watchdog import ConsumerWatchdog
from worker.heartbeat import HeartbeatFile
from worker.metrics import serve_metrics


class EngineCelery(Celery):
    """A Celery app that carries the Settings it was built from: its tasks' runtime, logs and metrics use them."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("teckochecker", **kwargs)
        self.settings = settings
        self.steps["worker"].add(HeartbeatFile)
        self.steps["worker"].add(ConsumerWatchdog)
        after_setup_logger.connect(self._style_logs, weak=False)
        after_setup_task_logger.connect(self._style_logs, weak=False)
        worker_ready.connect(self._serve_metrics, weak=False)

    def _style_logs(self, logger: logging.Logger, **_: object) -> None:
        # Celery sets its loggers up itself; this gives them LOG_FORMAT, LOG_FILE and the job/task context.
        style_handlers(logger, self.settings)

    def _serve_metrics(self, sender: Any, **_: object) -> None:
        # Sent by the consumer of whichever worker started in this process.
        if sender.app is self:
            serve_metrics(self.settings, "worker")


def create_celery_app(settings: Settings) -> EngineCelery:
    """The reliability settings of celeryconfig, the broker of `settings`. Opens nothing, writes nothing."""
    app = EngineCelery(settings, include=["worker.tasks", "worker.notification_tasks", "worker.consumer_watchdog"])
    app.config_from_object("celeryconfig")
    broker_url, transport_options = broker_options(settings)
    # Given before the configuration is read, these complete celeryconfig's settings.
    app.conf.update(
        broker_url=broker_url, broker_transport=broker_transport(settings), broker_transport_options=transport_options
    )
    return app
