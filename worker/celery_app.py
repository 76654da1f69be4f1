"""The Celery application: `celery -A worker worker` and `celery -A worker beat` find it as `worker.app`."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready

from worker.heartbeat import HeartbeatFile


def create_celery_app() -> Celery:
    # Creating the app opens no connection; settings are read from celeryconfig when first needed.
    app = Celery("teckochecker", include=["worker.tasks"])
    app.config_from_object("celeryconfig")
    app.steps["worker"].add(HeartbeatFile)
    worker_ready.connect(_serve_metrics, weak=False)
    after_setup_logger.connect(_style_logs, weak=False)
    after_setup_task_logger.connect(_style_logs, weak=False)
    return app


def _style_logs(logger: logging.Logger, **_: object) -> None:
    # Celery sets its loggers up itself; this gives them LOG_FORMAT, LOG_FILE and the job/task context.
    from teckochecker.config import load_settings
    from teckochecker.logs import style_handlers

    style_handlers(logger, load_settings())


def _serve_metrics(**_: object) -> None:
    from teckochecker.config import load_settings
    from worker.metrics import serve_metrics

    serve_metrics(load_settings(), "worker")


app = create_celery_app()
