"""The Celery application: `celery -A worker worker` and `celery -A worker beat` find it as `worker.app`."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from worker.heartbeat import HeartbeatFile


def create_celery_app() -> Celery:
    # Creating the app opens no connection; settings are read from celeryconfig when first needed.
    app = Celery("teckochecker", include=["worker.tasks"])
    app.config_from_object("celeryconfig")
    app.steps["consumer"].add(HeartbeatFile)
    worker_ready.connect(_serve_metrics, weak=False)
    return app


def _serve_metrics(**_: object) -> None:
    from teckochecker.config import load_settings
    from worker.metrics import serve_metrics

    serve_metrics(load_settings().metrics_port, "worker")


app = create_celery_app()
