"""The Celery application: `celery -A worker worker` and `celery -A worker beat` find it as `worker.app`."""

from __future__ import annotations

from celery import Celery

from worker.heartbeat import HeartbeatFile


def create_celery_app() -> Celery:
    # Creating the app opens no connection; settings are read from celeryconfig when first needed.
    app = Celery("teckochecker", include=["worker.tasks"])
    app.config_from_object("celeryconfig")
    app.steps["consumer"].add(HeartbeatFile)
    return app


app = create_celery_app()
