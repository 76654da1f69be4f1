"""The consumer watchdog: a worker whose broker consumer has died exits, so its supervisor starts a new one.

After a Redis restart, Celery's consumer can fail to reconnect inside kombu (celery/celery#9054, #8030, #8091)
and stay down while the process lives on: its timers run, its heartbeat stays fresh, it takes no task. The
engine loses nothing then (leases hand the jobs to other workers), but the fleet shrinks silently, and a
fleet of one stops. No liveness probe sees it, so the worker watches itself.

Every few seconds it sends a canary, a no-op task, to its own queue (Celery's `worker_direct` queue,
`<hostname>.dq2`, consumed by the same consumer as the engine's queues). Any task this worker receives proves
the consumer alive. When nothing has arrived for WORKER_CONSUMER_TIMEOUT seconds although canaries were
sent and the worker had room to take them, the consumer is dead: the worker says so and exits with
CONSUMER_DEAD_EXIT_CODE. Time with the broker unreachable (a canary cannot be sent) or with every slot busy
(the consumer rightly fetches nothing) does not count.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import bootsteps, shared_task
from celery.signals import task_received
from celery.utils.nodenames import worker_direct
from celery.worker import state as worker_state

from teckochecker.exit_codes import REPLACE_ME

logger = logging.getLogger(__name__)

CANARY_TASK = "teckochecker.consumer_canary"
CONSUMER_DEAD_EXIT_CODE = REPLACE_ME
LONGEST_CHECK_EVERY_SECONDS = 10.0
# Celery's own log lines for a task received and succeeded; the canary's would say nothing every few seconds.
TASK_LINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


@shared_task(name=CANARY_TASK, send_events=False, ignore_result=True)
def consumer_canary() -> None:
    """Nothing to do: that the consumer received it is the whole point."""


class _WithoutCanaryLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return CANARY_TASK not in record.getMessage()


_WITHOUT_CANARY_LINES = _WithoutCanaryLines()


class ConsumerWatchdog(bootsteps.StartStopStep):
    """Worker step: a thread of its own, so it keeps watching when the consumer's event loop is what died."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timeout = float(parent.app.settings.worker_consumer_timeout)
        self.check_every = min(LONGEST_CHECK_EVERY_SECONDS, self.timeout / 4)
        self._last_proof = time.monotonic()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def include_if(self, parent: Any) -> bool:
        # WORKER_CONSUMER_TIMEOUT=0 turns it off. The embedded broker is a folder on this machine: there is no
        # broker restart for its consumer to miss.
        settings = parent.app.settings
        return settings.worker_consumer_timeout > 0 and bool(settings.redis_url)

    def start(self, worker: Any) -> None:
        for name in TASK_LINE_LOGGERS:
            logging.getLogger(name).addFilter(_WITHOUT_CANARY_LINES)
        task_received.connect(self._received, weak=False)
        self._last_proof = time.monotonic()
        self._thread = threading.Thread(target=self._watch, args=(worker,), name="consumer-watchdog", daemon=True)
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stopped.set()
        task_received.disconnect(self._received)

    def _received(self, sender: Any = None, **_: object) -> None:
        self._last_proof = time.monotonic()

    def _watch(self, worker: Any) -> None:
        queue = worker_direct(worker.hostname)
        while not self._stopped.wait(self.check_every):
            if not _has_room(worker) or not _send_canary(worker.app, queue, expires=self.timeout):
                self._last_proof = time.monotonic()
                continue
            silent_for = time.monotonic() - self._last_proof
            if silent_for > self.timeout and not self._stopped.is_set():
                self._exit(worker, silent_for)

    def _exit(self, worker: Any, silent_for: float) -> None:
        logger.critical(
            "worker %s has received no task for %.0fs although the broker takes messages and it has free slots: "
            "its broker consumer is dead (a known Celery/kombu failure after a broker restart). Exiting with "
            "code %s so that its supervisor starts a fresh worker; its claimed jobs go back out when their "
            "leases end.",
            worker.hostname,
            silent_for,
            CONSUMER_DEAD_EXIT_CODE,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        # Not a warm shutdown: that waits on the very consumer that is stuck.
        os._exit(CONSUMER_DEAD_EXIT_CODE)


def _has_room(worker: Any) -> bool:
    """Whether the consumer may fetch a message now: fewer tasks held than its prefetch limit."""
    qos = getattr(worker.consumer, "qos", None)
    limit = getattr(qos, "value", 0)
    return not limit or len(worker_state.reserved_requests) < limit


def _send_canary(app: Any, queue: Any, *, expires: float) -> bool:
    """Send a canary to this worker's own queue; False when the broker cannot be reached."""
    message = app.amqp.create_task_message(
        f"canary-{os.getpid()}-{time.monotonic_ns()}", CANARY_TASK, (), {}, expires=expires
    )
    try:
        # A connection of its own each time: a pooled one may be a broken leftover of the broker's restart.
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            app.amqp.send_task_message(connection.Producer(), CANARY_TASK, message, queue=queue, retry=False)
    except Exception as error:
        logger.debug("could not send the consumer canary: %s", error)
        return False
    return True
