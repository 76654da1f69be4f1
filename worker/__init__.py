"""Celery adapter of the engine: the app, the tasks and the beat dispatcher.

`app` is built from the process's Settings (the environment, then `.env`); importing it reads them and
nothing else: no file is written and no connection opened until the app is used.
"""

from teckochecker.config import load_settings
from worker.celery_app import create_celery_app

app = create_celery_app(load_settings())

__all__ = ["app"]
