"""The two tasks. Thin: the rules live in teckochecker.engine; these add Celery's retries and sending."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from celery import Task, shared_task
from sqlalchemy.exc import InterfaceError, OperationalError

from teckochecker.clients.errors import TransientError
from teckochecker.config import Settings
from teckochecker.engine import checking, triggering
from teckochecker.engine.backoff import MAX_BROKER_WAIT_SECONDS, TransientFailureRules, retry_wait
from teckochecker.engine.keys import RequestBudget
from teckochecker.engine.leases import RUN_LEASE, hand_back
from teckochecker.engine.scheduling import CHECK, FOLLOW, START, Dispatch
from teckochecker.errors import VaultError
from teckochecker.logs import log_context
from worker import metrics
from worker.runtime import Runtime

logger = logging.getLogger(__name__)
T = TypeVar("T")
# A task that loses the database mid-run waits for it this long, then runs again under the same lease (every
# step is guarded by it, so running again is safe). Well below the trigger's lease (START_LEASE), so a short
# outage costs seconds, not a whole lease; past it the task gives up and the lease's end hands the job out.
DATABASE_WAIT_SECONDS = 60.0


class EngineTask(Task):
    """The base of the engine's tasks: the process's Runtime, and Celery's retries of transient failures.

    Each task names the engine's rules for its action (`on_transient_failure`), so a retry, a deferral or
    giving up always goes through the rules of the action that failed.
    """

    on_transient_failure: ClassVar[TransientFailureRules]

    # One Runtime per process and settings, built on first use. Celery shares a task instance between a
    # worker's threads, hence the lock. A forked (prefork) child finds no entry under its own pid and builds
    # its own; it leaves its copy of the parent's entry alone, since closing or collecting that engine
    # would end the parent's database connections.
    _runtimes: ClassVar[dict[tuple[int, Settings], Runtime]] = {}
    _runtimes_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def runtime_for(cls, settings: Settings) -> Runtime:
        key = (os.getpid(), settings)
        runtime = EngineTask._runtimes.get(key)
        if runtime is None:
            with EngineTask._runtimes_lock:
                runtime = EngineTask._runtimes.get(key)
                if runtime is None:
                    runtime = EngineTask._runtimes[key] = Runtime.create(settings)
        return runtime

    @property
    def runtime(self) -> Runtime:
        return self.runtime_for(self.app.settings)

    def retry_transient(self, failures: dict[int, TransientError], lease_token: str) -> None:
        """Retry the failed jobs through Celery with backoff, defer a long wait to the database, or give up."""
        rules, runtime = self.on_transient_failure, self.runtime
        attempt = self.request.retries
        if attempt >= runtime.settings.max_retries:
            for job_id, error in failures.items():
                logger.warning("job %s: giving up after %s retries: %s", job_id, attempt, error)
                rules.give_up(runtime.sessions, job_id, lease_token, f"{error} (gave up after {attempt} retries)")
            return
        wait = max(retry_wait(attempt, runtime.settings.retry_delay, error.retry_after) for error in failures.values())
        if wait > MAX_BROKER_WAIT_SECONDS:
            for job_id, error in failures.items():
                logger.info("job %s: %s; asked to wait %.0fs, planned in the database", job_id, error, wait)
                rules.defer(runtime.sessions, job_id, lease_token, wait, str(error))
            return
        retried = [
            job_id
            for job_id in failures
            if rules.extend_lease(runtime.sessions, job_id, lease_token, timedelta(seconds=wait))
        ]
        if not retried:
            return
        metrics.RETRIES.labels(self.name).inc(len(retried))
        for job_id in retried:
            logger.info("job %s: %s; retry %s in %.1fs", job_id, failures[job_id], attempt + 1, wait)
        # A retry would otherwise inherit the first message's expiry and could die before its countdown ends;
        # it stays valid exactly as long as the leases just extended for it. Only the failed jobs go again.
        expires = wait + RUN_LEASE.total_seconds()
        raise self.retry(args=tuple(retried), countdown=wait, exc=failures[retried[0]], expires=expires)


# Shared tasks, as in Flask's Celery example: every app create_celery_app builds gets them.
@shared_task(
    bind=True,
    base=EngineTask,
    name="teckochecker.check_job",
    max_retries=None,
    on_transient_failure=checking.ON_TRANSIENT_FAILURE,
)
def check_job(self: EngineTask, *job_ids: int) -> None:
    """Ask OpenAI about the unfinished batches of a group of jobs that share a key and a lease (or of one job).

    A job whose batches have all finished moves to `triggering`, and this task starts its Keboola job (beat
    hands the jobs of a sweep that found many to `trigger_keboola` instead).
    """
    # The task id is the lease token: it survives retries, and keeps the arguments down to job ids.
    lease_token = self.request.id
    with (
        log_context(job_id=job_ids[0] if len(job_ids) == 1 else None, task_id=lease_token),
        _unreadable(self, job_ids, lease_token),
    ):
        _check_jobs(self, job_ids, lease_token)


def _check_jobs(self: EngineTask, job_ids: tuple[int, ...], lease_token: str) -> None:
    runtime = self.runtime
    stats = checking.RefreshStats()
    with metrics.CHECK_DURATION.time():
        outcomes = _through_database_outages(
            lambda: checking.run_checks(
                runtime.sessions,
                runtime.vault,
                runtime.openai_client,
                job_ids,
                lease_token,
                budget=RequestBudget(runtime.settings.openai_max_requests_per_minute),
                stats=stats,
                keep_starts=True,
            )
        )
    for kind, count in stats.requests.items():
        metrics.OPENAI_REQUESTS.labels(kind).inc(count)
    for method, count in stats.refreshed.items():
        metrics.BATCHES_REFRESHED.labels(method).inc(count)
    starting = [job_id for job_id, outcome in outcomes.items() if outcome.starts_here]
    if starting:
        # Started here, not by a trigger task beat would send: a webhook's job starts its Keboola job without
        # a second trip through beat and the broker. Their transient failures go back to beat, not to the
        # retry below, which is the check's.
        started = _through_database_outages(
            lambda: triggering.start_after_check(
                runtime.sessions,
                runtime.vault,
                runtime.keboola_client,
                starting,
                lease_token,
                retry_delay=runtime.settings.retry_delay,
                max_retries=runtime.settings.max_retries,
            )
        )
        for outcome in started.values():
            metrics.TRIGGERS.labels(outcome.outcome).inc()
    _count_and_retry(self, metrics.CHECKS, outcomes, lease_token)


def _through_database_outages(run: Callable[[], T]) -> T:
    """Run again, with backoff, when the database was unreachable (restarted, failed over) during the run."""
    deadline = time.monotonic() + DATABASE_WAIT_SECONDS
    pause = 1.0
    while True:
        try:
            return run()
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() + pause > deadline:
                raise
            logger.warning("the database is unreachable (%s); running again in %.0fs", error.orig, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


@contextmanager
def _unreadable(self: EngineTask, job_ids: tuple[int, ...], lease_token: str) -> Iterator[None]:
    """A secret this worker's SECRET_KEY cannot decrypt: nothing was sent with it; hand the jobs back at once,
    with the reason, and say it in the log (one line, no traceback: it is the set-up, not the code)."""
    try:
        yield
    except VaultError as error:
        handed = hand_back(self.runtime.sessions, job_ids, lease_token, str(error))
        logger.error("%s (jobs %s handed back to the other workers)", error, sorted(handed))


def _count_and_retry(self: EngineTask, counter: Any, outcomes: dict[int, Any], lease_token: str) -> None:
    """Count each job's outcome; retry, through Celery, only the jobs whose call failed transiently."""
    failures = {}
    for job_id, outcome in outcomes.items():
        counter.labels(outcome.outcome).inc()
        if outcome.failure is not None:
            failures[job_id] = outcome.failure
    if failures:
        self.retry_transient(failures, lease_token)


@shared_task(
    bind=True,
    base=EngineTask,
    name="teckochecker.trigger_keboola",
    max_retries=None,
    on_transient_failure=triggering.ON_TRANSIENT_FAILURE,
)
def trigger_keboola(self: EngineTask, *job_ids: int) -> None:
    """Start, exactly once, the Keboola jobs of a group of finished jobs that share a Keboola token."""
    lease_token = self.request.id
    with (
        log_context(job_id=job_ids[0] if len(job_ids) == 1 else None, task_id=lease_token),
        _unreadable(self, job_ids, lease_token),
    ):
        runtime = self.runtime
        outcomes = _through_database_outages(
            lambda: triggering.run_starts(runtime.sessions, runtime.vault, runtime.keboola_client, job_ids, lease_token)
        )
        _count_and_retry(self, metrics.TRIGGERS, outcomes, lease_token)


@shared_task(
    bind=True,
    base=EngineTask,
    name="teckochecker.follow_keboola",
    max_retries=None,
    on_transient_failure=triggering.ON_TRANSIENT_FAILURE,
)
def follow_keboola(self: EngineTask, *job_ids: int) -> None:
    """Look once at the running Keboola jobs of a group; the jobs whose Keboola job finished are done."""
    lease_token = self.request.id
    with (
        log_context(job_id=job_ids[0] if len(job_ids) == 1 else None, task_id=lease_token),
        _unreadable(self, job_ids, lease_token),
    ):
        runtime = self.runtime
        outcomes = _through_database_outages(
            lambda: triggering.run_follows(
                runtime.sessions, runtime.vault, runtime.keboola_client, job_ids, lease_token
            )
        )
        _count_and_retry(self, metrics.TRIGGERS, outcomes, lease_token)


TASKS_BY_ACTION = {CHECK: check_job, START: trigger_keboola, FOLLOW: follow_keboola}


def send_dispatch(dispatch: Dispatch, **options: Any) -> None:
    """Send one claimed group as its action's task; the lease token is the task id."""
    TASKS_BY_ACTION[dispatch.action].apply_async(
        dispatch.job_ids, task_id=dispatch.lease_token, expires=dispatch.expires_in, **options
    )
