"""`send_notifications(target_id)`: tell one target about its outbox rows, in one message, at most once.

Thin: teckochecker/notifications/sending.py holds the rules; this adds Celery's retries with backoff. The task
id is the lease token beat gave the rows. It runs on its own queue, so a slow target never delays a check.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task

from teckochecker.engine.backoff import MAX_BROKER_WAIT_SECONDS, retry_wait
from teckochecker.logs import log_context
from teckochecker.notifications import delivery, sending
from teckochecker.notifications.outbox import ATTEMPT_LEASE
from worker.tasks import EngineTask

logger = logging.getLogger(__name__)


@shared_task(bind=True, base=EngineTask, name="teckochecker.send_notifications", max_retries=None)
def send_notifications(self: EngineTask, target_id: int) -> None:
    """Send the target's leased outbox rows as one message; retry with backoff, record the failure at the end."""
    token = self.request.id
    with log_context(task_id=token):
        _send(self, target_id, token)


def _send(self: EngineTask, target_id: int, token: str) -> None:
    runtime = self.runtime
    attempt = self.request.retries + 1
    begun = sending.begin(
        runtime.sessions, runtime.vault, runtime.settings, runtime.redactor, target_id, token, attempt
    )
    if begun is None:
        return
    result = delivery.send(begun.url, begun.message, runtime.redactor)
    if result.ok:
        sending.succeeded(runtime.sessions, token)
        logger.info("notified '%s' of %s job event(s)", begun.target_name, len(begun.job_ids))
        return
    error = result.error or "unknown error"
    retries = self.request.retries
    if retries >= runtime.settings.max_retries:
        logger.warning("giving up notifying '%s' after %s retries: %s", begun.target_name, retries, error)
        sending.gave_up(runtime.sessions, token, begun.target_name, f"{error} (gave up after {retries} retries)")
        return
    wait = min(retry_wait(retries, runtime.settings.retry_delay, None), MAX_BROKER_WAIT_SECONDS)
    if not sending.hold_for_retry(runtime.sessions, token, timedelta(seconds=wait)):
        return
    logger.info("notifying '%s' failed (%s); retry %s in %.1fs", begun.target_name, error, retries + 1, wait)
    raise self.retry(countdown=wait, expires=wait + ATTEMPT_LEASE.total_seconds())


def send_notification_task(target_id: int, lease_token: str, expires: float, **options: object) -> None:
    send_notifications.apply_async((target_id,), task_id=lease_token, expires=expires, **options)
