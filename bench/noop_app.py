"""A Celery app with one no-op task, for the engine benchmark's baseline: what Celery alone manages here.

It takes every setting from celeryconfig (serializer, acks_late, prefetch, events, pool and concurrency
defaults) and its broker from Settings, as the engine's app does, so the only difference is the task
body: one Redis INCR, which the bench watches to know when all tasks have run. It uses its own queue, so
it never meets engine tasks.

    celery -A bench.noop_app worker -P threads -c 32 -Q bench.noop     (REDIS_URL set, repository on PYTHONPATH)
"""

from __future__ import annotations

import os

import redis
from celery import Celery
from kombu import Queue

from teckochecker.config import load_settings
from worker.broker import broker_options

QUEUE = "bench.noop"
TASK = "bench.noop"
COUNTER_KEY = os.environ.get("BENCH_NOOP_COUNTER", "bench:noop:done")

app = Celery("bench_noop")
app.config_from_object("celeryconfig")
broker_url, transport_options = broker_options(load_settings())
# Set before the configuration is read, so these win over celeryconfig's queues and routes.
app.conf.update(
    broker_url=broker_url,
    broker_transport_options=transport_options,
    task_default_queue=QUEUE,
    task_queues=(Queue(QUEUE),),
    task_routes={},
)

_client: redis.Redis | None = None


@app.task(name=TASK)
def noop() -> None:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(app.conf.broker_url)
    _client.incr(COUNTER_KEY)
