"""The check: ask OpenAI about a job's unfinished batches, store what changed, and decide what is next.

No database transaction stays open during an HTTP call: the lease says who may work on the job, and
each write is guarded by the lease token. A transient failure is raised to the caller (the Celery task
decides about retries); a permanent one is recorded here with a message a person can act on.

This is the engine's hot path (every active job, every interval), so it reads and writes with a few
prepared Core statements on the tables rather than ORM objects: a steady check is two short
transactions of two or three statements each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.errors import PermanentError, ServiceError, TransientError
from teckochecker.clients.openai_batches import Batch, OpenAIBatchClient
from teckochecker.db import session_scope, utcnow
from teckochecker.engine import leases
from teckochecker.engine.scheduling import TRIGGER_DISPATCH_LEASE
from teckochecker.logs import log_context
from teckochecker.models import BATCH_NOT_FOUND, BATCH_TERMINAL_STATUSES, JobBatch, JobStatus, PollingJob, Secret
from teckochecker.services.events import record_job_events
from teckochecker.vault import Vault

logger = logging.getLogger(__name__)
OpenAIClientFactory = Callable[[str], OpenAIBatchClient]
AUTH_STATUSES = frozenset({401, 403})


SKIPPED = "skipped"
CHECKED = "checked"
ALL_FINISHED = "all_finished"
REFUSED = "refused"
TRANSIENT = "transient_error"

_jobs = PollingJob.__table__
_batches = JobBatch.__table__
_secrets = Secret.__table__
_JOB_STATE = (
    _jobs.c.status,
    _jobs.c.last_error,
    _jobs.c.last_check_at,
    _jobs.c.next_check_at,
    _jobs.c.lease_token,
    _jobs.c.lease_until,
)
# What a check needs before it calls OpenAI: the key (still encrypted) and every batch's id and status.
_WORK = (
    select(_secrets.c.name, _secrets.c.encrypted_value, _batches.c.batch_id, _batches.c.status)
    .select_from(_jobs)
    .join(_secrets, _secrets.c.id == _jobs.c.openai_secret_id)
    .outerjoin(_batches, _batches.c.job_id == _jobs.c.id)
    .where(_jobs.c.id == bindparam("job_id"))
    .order_by(_batches.c.id)
)
_BATCH_FIELDS = (
    "status",
    "request_total",
    "request_completed",
    "request_failed",
    "output_file_id",
    "error_file_id",
    "finished_at",
)
_BATCH_ROWS = select(_batches.c.id, _batches.c.batch_id, *(_batches.c[name] for name in _BATCH_FIELDS)).where(
    _batches.c.job_id == bindparam("job_id")
)
# Parameters named after their columns are reserved by SQLAlchemy in SET clauses, hence the prefix.
_SAVE_BATCH = (
    update(_batches)
    .where(_batches.c.id == bindparam("row_id"))
    .values(**{name: bindparam(f"new_{name}") for name in _BATCH_FIELDS})
)
# Locks the row (a write, portable to SQLite) and reads the job's state, only while we hold the lease.
_HOLD = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _jobs.c.lease_token == bindparam("token"))
    .values(lease_token=bindparam("token"))
    .returning(*_JOB_STATE)
)
_SAVE_JOB = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"))
    .values(**{column.name: bindparam(f"new_{column.name}") for column in _JOB_STATE})
)


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


@dataclass
class _HeldJob:
    """A job's row while we hold its lease and its lock: changed in memory, written once by `_save`."""

    id: int
    status: str
    last_error: str | None
    last_check_at: datetime | None
    next_check_at: datetime | None
    lease_token: str | None
    lease_until: datetime | None
    events: list[tuple[str, str]] = field(default_factory=list)

    def record(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def release(self) -> None:
        self.lease_token = None
        self.lease_until = None


def _hold(session: Session, job_id: int, token: str) -> _HeldJob | None:
    row = session.execute(_HOLD, {"job_id": job_id, "token": token}).first()
    return None if row is None else _HeldJob(job_id, *row)


def _save(session: Session, job: _HeldJob) -> None:
    values = {f"new_{column.name}": getattr(job, column.name) for column in _JOB_STATE}
    session.execute(_SAVE_JOB, {"job_id": job.id, **values})
    record_job_events(session, job.id, job.events)


def _describe(batch: dict[str, Any]) -> str:
    counts = f"{batch['request_completed']}/{batch['request_total']} requests done, {batch['request_failed']} failed"
    return f"{batch['batch_id']} is {batch['status']} ({counts})"


def _observed_values(observation: _Observation, previous: dict[str, Any], now: datetime) -> dict[str, Any]:
    if observation.batch is None:
        values = {**previous, "status": BATCH_NOT_FOUND}
    else:
        found = observation.batch
        values = {
            **previous,
            "status": found.status,
            "request_total": found.request_counts.total,
            "request_completed": found.request_counts.completed,
            "request_failed": found.request_counts.failed,
            "output_file_id": found.output_file_id,
            "error_file_id": found.error_file_id,
        }
    if values["status"] in BATCH_TERMINAL_STATUSES and values["finished_at"] is None:
        values["finished_at"] = now
    return values


def _apply(session: Session, job: _HeldJob, observations: list[_Observation], now: datetime) -> list[str]:
    """Store what OpenAI said about each batch; returns the status of every batch of the job afterwards."""
    rows = {row.batch_id: row._asdict() for row in session.execute(_BATCH_ROWS, {"job_id": job.id})}
    changed = []
    for observation in observations:
        previous = rows[observation.batch_id]
        current = _observed_values(observation, previous, now)
        if current == previous:
            continue
        rows[observation.batch_id] = current
        changed.append({"row_id": current["id"], **{f"new_{name}": current[name] for name in _BATCH_FIELDS}})
        if current["status"] != previous["status"]:
            message = f"{_describe(current)} (was {previous['status']})"
            job.record("batch_status", message)
            with log_context(batch_id=observation.batch_id):
                logger.info("%s", message)
    if changed:
        session.execute(_SAVE_BATCH, changed)
    return [row["status"] for row in rows.values()]


def _fail_on_rejected_key(job: _HeldJob, secret: str, error: PermanentError) -> None:
    job.status = JobStatus.FAILED.value
    job.last_error = (
        f"OpenAI rejected the key in secret '{secret}' ({error}). Fix it with "
        f"`teckochecker secret update {secret}`, then `teckochecker job resume {job.id}`."
    )
    job.next_check_at = None
    job.record("failed", job.last_error)


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
        work = session.execute(_WORK, {"job_id": job_id}).all()
    if not work:
        return CheckOutcome(ran=False, outcome=SKIPPED)
    secret = work[0].name
    pending = [row.batch_id for row in work if row.batch_id is not None and row.status not in BATCH_TERMINAL_STATUSES]
    client = openai_client(vault.decrypt(work[0].encrypted_value, secret_name=secret))

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
        job = _hold(session, job_id, token)
        if job is None:
            return CheckOutcome(ran=False, outcome=SKIPPED)
        now = clock()
        statuses = _apply(session, job, observations, now)
        job.last_check_at = now
        outcome = _conclude(job, statuses, secret, failure, now)
        _save(session, job)
    if isinstance(failure, TransientError):
        raise failure
    return outcome


def _conclude(
    job: _HeldJob, statuses: list[str], secret: str, failure: ServiceError | None, now: datetime
) -> CheckOutcome:
    if isinstance(failure, TransientError):
        # The lease stays: the caller either retries under it or gives up and releases it.
        return CheckOutcome(ran=True, outcome=TRANSIENT)
    if job.status != JobStatus.ACTIVE:
        # Paused (or edited into another state) while we were asking OpenAI: never trigger.
        job.release()
        return CheckOutcome(ran=True)
    if isinstance(failure, PermanentError):
        if failure.status in AUTH_STATUSES:
            _fail_on_rejected_key(job, secret, failure)
        else:
            _record_failure(job, f"OpenAI refused the check: {failure}")
        job.release()
        return CheckOutcome(ran=True, outcome=REFUSED)
    if job.last_error is not None:
        job.record("recovered", "Checks succeed again")
        job.last_error = None
    if all(status in BATCH_TERMINAL_STATUSES for status in statuses):
        trigger_token = leases.new_token()
        job.status = JobStatus.TRIGGERING.value
        job.lease_token = trigger_token
        job.lease_until = now + TRIGGER_DISPATCH_LEASE
        job.next_check_at = now
        job.record("triggering", "Every batch has finished; starting the Keboola job")
        return CheckOutcome(ran=True, trigger_token=trigger_token, outcome=ALL_FINISHED)
    job.release()
    return CheckOutcome(ran=True)


def _record_failure(job: _HeldJob, message: str) -> None:
    # One event per distinct failure: an outage that lasts hours must not write a row every interval.
    if job.last_error != message:
        job.record("check_failed", message)
    job.last_error = message


def give_up_check(sessions: sessionmaker[Session], job_id: int, token: str, message: str) -> None:
    """Retries ran out: record the failure, keep the job active; the next regular check comes as planned."""
    with session_scope(sessions) as session:
        job = _hold(session, job_id, token)
        if job is not None:
            _record_failure(job, message)
            job.release()
            _save(session, job)


def defer_check(sessions: sessionmaker[Session], job_id: int, token: str, until: datetime, message: str) -> None:
    """OpenAI asked for a wait too long for the broker: record it and plan the next check after it."""
    with session_scope(sessions) as session:
        job = _hold(session, job_id, token)
        if job is not None:
            _record_failure(job, message)
            if job.status == JobStatus.ACTIVE:
                job.next_check_at = max(job.next_check_at or until, until)
            job.release()
            _save(session, job)


def extend_lease_for_retry(sessions: sessionmaker[Session], job_id: int, token: str, wait: timedelta) -> bool:
    """Keep the job ours while a retry waits in the broker; False when the job moved on meanwhile."""
    with session_scope(sessions) as session:
        return leases.renew(
            session, job_id, token, now=utcnow(), status=JobStatus.ACTIVE.value, extra=wait + leases.RUN_LEASE
        )
