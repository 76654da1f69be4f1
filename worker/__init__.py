"""Celery adapter of the engine: the app, the tasks and the beat dispatcher."""

from worker.celery_app import app

__all__ = ["app"]
