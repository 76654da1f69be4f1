"""The two tasks. Thin: the rules live in teckochecker.engine; these add Celery's retries and sending."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import Task
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.errors import TransientError
from teckochecker.db import utcnow
from teckochecker.engine import checking, triggering
from teckochecker.engine.backoff import MAX_BROKER_WAIT_SECONDS, retry_wait
from teckochecker.engine.leases import RUN_LEASE
from teckochecker.engine.scheduling import TRIGGER_DISPATCH_LEASE
from teckochecker.logs import log_context
from worker import metrics
from worker.celery_app import app
from worker.runtime import get_runtime

logger = logging.getLogger(__name__)

Extend = Callable[[sessionmaker[Session], int, str, timedelta], bool]
GiveUp = Callable[[sessionmaker[Session], int, str, str], None]
Defer = Callable[[sessionmaker[Session], int, str, datetime, str], None]


def _handle_transient(
    task: Task,
    failures: dict[int, TransientError],
    token: str,
    *,
    extend: Extend,
    give_up: GiveUp,
    defer: Defer,
) -> None:
    """Retry the failed jobs through Celery with backoff, defer a long wait to the database, or give up."""
    runtime = get_runtime()
    attempt = task.request.retries
    if attempt >= runtime.settings.max_retries:
        for job_id, error in failures.items():
            logger.warning("job %s: giving up after %s retries: %s", job_id, attempt, error)
            give_up(runtime.sessions, job_id, token, f"{error} (gave up after {attempt} retries)")
        return
    wait = max(retry_wait(attempt, runtime.settings.retry_delay, error.retry_after) for error in failures.values())
    if wait > MAX_BROKER_WAIT_SECONDS:
        for job_id, error in failures.items():
            logger.info("job %s: %s; asked to wait %.0fs, planned in the database", job_id, error, wait)
            defer(runtime.sessions, job_id, token, utcnow() + timedelta(seconds=wait), str(error))
        return
    retried = [job_id for job_id in failures if extend(runtime.sessions, job_id, token, timedelta(seconds=wait))]
    if not retried:
        return
    metrics.RETRIES.labels(task.name).inc(len(retried))
    for job_id in retried:
        logger.info("job %s: %s; retry %s in %.1fs", job_id, failures[job_id], attempt + 1, wait)
    # A retry would otherwise inherit the first message's expiry and could die before its countdown ends;
    # it stays valid exactly as long as the leases just extended for it. Only the failed jobs go again.
    expires = wait + RUN_LEASE.total_seconds()
    raise task.retry(args=tuple(retried), countdown=wait, exc=failures[retried[0]], expires=expires)


@app.task(bind=True, name="teckochecker.check_job", max_retries=None)
def check_job(self: Task, *job_ids: int) -> None:
    """Ask OpenAI about the unfinished batches of one job, or of a small group sharing a key and a lease.

    A job whose batches have all finished moves to `triggering`; beat hands it to `trigger_keboola`.
    """
    # The task id is the lease token: it survives retries, and keeps the arguments down to job ids.
    lease_token = self.request.id
    with log_context(job_id=job_ids[0] if len(job_ids) == 1 else None, task_id=lease_token):
        _check_jobs(self, job_ids, lease_token)


def _check_jobs(self: Task, job_ids: tuple[int, ...], lease_token: str) -> None:
    runtime = get_runtime()
    with metrics.CHECK_DURATION.time():
        outcomes = checking.run_checks(runtime.sessions, runtime.vault, runtime.openai_client, job_ids, lease_token)
    failures = {}
    for job_id, outcome in outcomes.items():
        metrics.CHECKS.labels(outcome.outcome).inc()
        if outcome.failure is not None:
            failures[job_id] = outcome.failure
    if failures:
        _handle_transient(
            self,
            failures,
            lease_token,
            extend=checking.extend_lease_for_retry,
            give_up=checking.give_up_check,
            defer=checking.defer_check,
        )


@app.task(bind=True, name="teckochecker.trigger_keboola", max_retries=None)
def trigger_keboola(self: Task, job_id: int) -> None:
    """Start the job's Keboola job exactly once, then follow it until it finishes."""
    lease_token = self.request.id
    with log_context(job_id=job_id, task_id=lease_token):
        _trigger_keboola(self, job_id, lease_token)


def _trigger_keboola(self: Task, job_id: int, lease_token: str) -> None:
    runtime = get_runtime()
    try:
        outcome = triggering.run_trigger(runtime.sessions, runtime.vault, runtime.keboola_client, job_id, lease_token)
    except TransientError as error:
        metrics.TRIGGERS.labels("transient_error").inc()
        _handle_transient(
            self,
            {job_id: error},
            lease_token,
            extend=triggering.extend_lease_for_retry,
            give_up=triggering.give_up_trigger,
            defer=triggering.defer_trigger,
        )
        return
    metrics.TRIGGERS.labels(outcome).inc()


def send_check(job_ids: tuple[int, ...], lease_token: str, expires: float, **options: Any) -> None:
    check_job.apply_async(job_ids, task_id=lease_token, expires=expires, **options)


def send_trigger(job_id: int, lease_token: str, **options: Any) -> None:
    trigger_keboola.apply_async(
        (job_id,), task_id=lease_token, expires=TRIGGER_DISPATCH_LEASE.total_seconds(), **options
    )
