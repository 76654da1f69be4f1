"""The consumer watchdog, with real worker processes and a real Redis: a worker whose consumer takes no more
tasks exits so its supervisor replaces it, a healthy one never does, and a Redis restart never leaves a
worker alive but idle."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from bench.chaos.servers import RedisServer, new_workdir
from teckochecker.config import Settings
from tests.worker.conftest import Engine
from worker.celery_app import create_celery_app
from worker.consumer_watchdog import CANARY_TASK, CONSUMER_DEAD_EXIT_CODE

pytestmark = pytest.mark.slow

TIMEOUT = 6
# The watchdog looks every TIMEOUT / 4 s and exits once the silence is longer than TIMEOUT.
DETECTION_BOUND = TIMEOUT + TIMEOUT / 4 + 4


def _start(engine: Engine, name: str, redis_url: str | None = None) -> subprocess.Popen:
    extra = {"WORKER_CONSUMER_TIMEOUT": str(TIMEOUT), **({"REDIS_URL": redis_url} if redis_url else {})}
    ready_before = engine.logs().count(f"{name}@{socket.gethostname()} ready.")
    worker = engine.start_worker(name, concurrency=4, extra_env=extra)
    engine.wait_until(
        lambda: engine.logs().count(f"{name}@{socket.gethostname()} ready.") > ready_before, 60, f"{name} to be ready"
    )
    return worker


def _exited_within(worker: subprocess.Popen, seconds: float) -> int | None:
    try:
        return worker.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def test_a_healthy_worker_stays_and_one_whose_consumer_stops_exits_saying_why(engine_installation: Engine) -> None:
    engine = engine_installation
    worker = _start(engine, "w1")

    # Healthy: several timeouts pass, canaries keep arriving, the worker stays, and they do not fill its log.
    assert _exited_within(worker, 3 * TIMEOUT) is None, engine.logs()[-3000:]
    # The startup banner lists the canary among the registered tasks; no received/succeeded line may name it.
    assert f"{CANARY_TASK}[" not in engine.logs()

    # The consumer stops taking messages from the worker's own queue (where the canaries go).
    hostname = f"w1@{socket.gethostname()}"
    app = create_celery_app(Settings(redis_url=engine.settings.redis_url))
    replies = app.control.cancel_consumer(f"{hostname}.dq2", destination=[hostname], reply=True, timeout=5)
    assert replies, "the worker did not answer the cancel_consumer command"

    stopped_at = time.monotonic()
    assert _exited_within(worker, DETECTION_BOUND + 5) == CONSUMER_DEAD_EXIT_CODE, engine.logs()[-3000:]
    # The silence is counted from the last canary received, at most one look (TIMEOUT / 4) before the cancel.
    assert time.monotonic() - stopped_at >= TIMEOUT - TIMEOUT / 4 - 1
    assert "its broker consumer is dead" in engine.logs()


def test_after_each_redis_restart_a_worker_consumes_again_or_exits_never_idles(engine_installation: Engine) -> None:
    engine = engine_installation
    with RedisServer(new_workdir("chaos-watchdog-redis-"), append_only=False) as redis_server:
        redis_url = redis_server.url
        worker = _start(engine, "w2", redis_url)
        for _ in range(3):
            redis_server.kill()
            time.sleep(3)
            redis_server.restart()
            # Within the bound the worker either takes real tasks again, or exits with the code that tells its
            # supervisor to start a new one. Never alive and idle.
            ran = engine.logs().count("teckochecker.check_job[")
            app = create_celery_app(Settings(redis_url=redis_url))
            app.send_task("teckochecker.check_job", args=(987654,), retry=True)
            engine.wait_until(
                lambda ran=ran, worker=worker: (
                    worker.poll() is not None or engine.logs().count("teckochecker.check_job[") >= ran + 2
                ),
                DETECTION_BOUND + 30,
                "the worker to run a task again or to exit",
            )
            if worker.poll() is not None:
                assert worker.returncode == CONSUMER_DEAD_EXIT_CODE, engine.logs()[-3000:]
                worker = _start(engine, "w2", redis_url)
