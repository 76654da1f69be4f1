"""The check: ask OpenAI about a job's unfinished batches, store what changed, and decide what is next.

No database transaction stays open during an HTTP call: the lease says who may work on the job, and
each write is guarded by the lease token. A transient failure is raised to the caller (the Celery task
decides about retries); a permanent one is recorded here with a message a person can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.errors import PermanentError, ServiceError, TransientError
from teckochecker.clients.openai_batches import Batch, OpenAIBatchClient
from teckochecker.db import session_scope, utcnow
from teckochecker.engine import leases
from teckochecker.engine.scheduling import TRIGGER_DISPATCH_LEASE
from teckochecker.logs import log_context
from teckochecker.models import (
    BATCH_NOT_FOUND,
    BATCH_TERMINAL_STATUSES,
    JobBatch,
    JobStatus,
    PollingJob,
)
from teckochecker.services.events import record_event
from teckochecker.services.secrets import reveal_secret
from teckochecker.vault import Vault

logger = logging.getLogger(__name__)
OpenAIClientFactory = Callable[[str], OpenAIBatchClient]
AUTH_STATUSES = frozenset({401, 403})


SKIPPED = "skipped"
CHECKED = "checked"
ALL_FINISHED = "all_finished"
REFUSED = "refused"
TRANSIENT = "transient_error"


@dataclass(frozen=True)
class CheckOutcome:
    """What the check led to. `trigger_token` is set when the job just moved to `triggering`."""

    ran: bool
    trigger_token: str | None = None
    outcome: str = CHECKED


@dataclass(frozen=True)
class _Observation:
    batch_id: str
    batch: Batch | None  # None: OpenAI says the batch does not exist


def _describe(batch: JobBatch) -> str:
    counts = f"{batch.request_completed}/{batch.request_total} requests done, {batch.request_failed} failed"
    return f"{batch.batch_id} is {batch.status} ({counts})"


def _apply(session: Session, job: PollingJob, observations: list[_Observation], now: datetime) -> None:
    by_id = {batch.batch_id: batch for batch in job.batches}
    for observation in observations:
        row = by_id[observation.batch_id]
        previous = row.status
        if observation.batch is None:
            row.status = BATCH_NOT_FOUND
        else:
            found = observation.batch
            row.status = found.status
            row.request_total = found.request_counts.total
            row.request_completed = found.request_counts.completed
            row.request_failed = found.request_counts.failed
            row.output_file_id = found.output_file_id
            row.error_file_id = found.error_file_id
        if row.status in BATCH_TERMINAL_STATUSES and row.finished_at is None:
            row.finished_at = now
        if row.status != previous:
            record_event(session, job, "batch_status", f"{_describe(row)} (was {previous})")
            with log_context(batch_id=row.batch_id):
                logger.info("%s (was %s)", _describe(row), previous)


def _load(session: Session, job_id: int) -> PollingJob:
    return session.scalars(select(PollingJob).where(PollingJob.id == job_id)).one()


def _fail_on_rejected_key(session: Session, job: PollingJob, error: PermanentError) -> None:
    secret = job.openai_secret.name
    job.status = JobStatus.FAILED.value
    job.last_error = (
        f"OpenAI rejected the key in secret '{secret}' ({error}). Fix it with "
        f"`teckochecker secret update {secret}`, then `teckochecker job resume {job.id}`."
    )
    job.next_check_at = None
    record_event(session, job, "failed", job.last_error)


def run_check(
    sessions: sessionmaker[Session],
    vault: Vault,
    openai_client: OpenAIClientFactory,
    job_id: int,
    token: str,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> CheckOutcome:
    """Check one job under the lease `token`. Raises TransientError when OpenAI should be asked again."""
    with session_scope(sessions) as session:
        if not leases.renew(session, job_id, token, now=clock(), status=JobStatus.ACTIVE.value):
            return CheckOutcome(ran=False, outcome=SKIPPED)
        job = _load(session, job_id)
        pending = [batch.batch_id for batch in job.batches if batch.status not in BATCH_TERMINAL_STATUSES]
        key = reveal_secret(session, vault, job.openai_secret_id)

    client = openai_client(key)
    observations: list[_Observation] = []
    failure: ServiceError | None = None
    renewed_at = clock()
    for batch_id in pending:
        if clock() - renewed_at > leases.RUN_LEASE / 3:
            with session_scope(sessions) as session:
                if not leases.renew(session, job_id, token, now=clock(), status=JobStatus.ACTIVE.value):
                    return CheckOutcome(ran=False, outcome=SKIPPED)
            renewed_at = clock()
        try:
            with log_context(batch_id=batch_id):
                observations.append(_Observation(batch_id, client.get_batch(batch_id)))
        except PermanentError as error:
            if error.status == 404:
                observations.append(_Observation(batch_id, None))
                continue
            failure = error
            break
        except TransientError as error:
            failure = error
            break

    # What was learned before a failure is stored either way.
    with session_scope(sessions) as session:
        if not leases.hold(session, job_id, token):
            return CheckOutcome(ran=False, outcome=SKIPPED)
        job = _load(session, job_id)
        now = clock()
        _apply(session, job, observations, now)
        job.last_check_at = now
        outcome = _conclude(session, job, failure, now)
    if isinstance(failure, TransientError):
        raise failure
    return outcome


def _conclude(session: Session, job: PollingJob, failure: ServiceError | None, now: datetime) -> CheckOutcome:
    if isinstance(failure, TransientError):
        # The lease stays: the caller either retries under it or gives up and releases it.
        return CheckOutcome(ran=True, outcome=TRANSIENT)
    if job.status != JobStatus.ACTIVE:
        # Paused (or edited into another state) while we were asking OpenAI: never trigger.
        leases.release(job)
        return CheckOutcome(ran=True)
    if isinstance(failure, PermanentError):
        if failure.status in AUTH_STATUSES:
            _fail_on_rejected_key(session, job, failure)
        else:
            _record_failure(session, job, f"OpenAI refused the check: {failure}")
        leases.release(job)
        return CheckOutcome(ran=True, outcome=REFUSED)
    if job.last_error is not None:
        record_event(session, job, "recovered", "Checks succeed again")
        job.last_error = None
    if all(batch.status in BATCH_TERMINAL_STATUSES for batch in job.batches):
        trigger_token = leases.new_token()
        job.status = JobStatus.TRIGGERING.value
        job.lease_token = trigger_token
        job.lease_until = now + TRIGGER_DISPATCH_LEASE
        job.next_check_at = now
        record_event(session, job, "triggering", "Every batch has finished; starting the Keboola job")
        return CheckOutcome(ran=True, trigger_token=trigger_token, outcome=ALL_FINISHED)
    leases.release(job)
    return CheckOutcome(ran=True)


def _record_failure(session: Session, job: PollingJob, message: str) -> None:
    # One event per distinct failure: an outage that lasts hours must not write a row every interval.
    if job.last_error != message:
        record_event(session, job, "check_failed", message)
    job.last_error = message


def give_up_check(sessions: sessionmaker[Session], job_id: int, token: str, message: str) -> None:
    """Retries ran out: record the failure, keep the job active; the next regular check comes as planned."""
    with session_scope(sessions) as session:
        if leases.hold(session, job_id, token):
            job = _load(session, job_id)
            _record_failure(session, job, message)
            leases.release(job)


def defer_check(sessions: sessionmaker[Session], job_id: int, token: str, until: datetime, message: str) -> None:
    """OpenAI asked for a wait too long for the broker: record it and plan the next check after it."""
    with session_scope(sessions) as session:
        if leases.hold(session, job_id, token):
            job = _load(session, job_id)
            _record_failure(session, job, message)
            if job.status == JobStatus.ACTIVE:
                job.next_check_at = max(job.next_check_at or until, until)
            leases.release(job)


def extend_lease_for_retry(sessions: sessionmaker[Session], job_id: int, token: str, wait: timedelta) -> bool:
    """Keep the job ours while a retry waits in the broker; False when the job moved on meanwhile."""
    with session_scope(sessions) as session:
        return leases.renew(
            session, job_id, token, now=utcnow(), status=JobStatus.ACTIVE.value, extra=wait + leases.RUN_LEASE
        )
