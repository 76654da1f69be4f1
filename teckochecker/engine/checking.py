"""The check: ask OpenAI about a job's unfinished batches, store what changed, and decide what is next.

No database transaction stays open during an HTTP call: the lease says who may work on the job, and
each write is guarded by the lease token. A transient failure is raised to the caller (the Celery task
decides about retries); a permanent one is recorded here with a message a person can act on.

This is the engine's hot path (every active job, every interval). Beat hands jobs out in small groups
that share one lease token (one task), and a group is checked with a few prepared Core statements on
the tables rather than ORM objects: two short transactions of two to four statements, whatever the
group's size.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.errors import PermanentError, ServiceError, TransientError
from teckochecker.clients.openai_batches import Batch, OpenAIBatchClient
from teckochecker.db import session_scope, utcnow
from teckochecker.engine import leases
from teckochecker.engine.backoff import TransientFailureRules
from teckochecker.engine.outcomes import Outcome
from teckochecker.logs import log_context
from teckochecker.models import BATCH_NOT_FOUND, BATCH_TERMINAL_STATUSES, JobBatch, JobStatus, PollingJob, Secret
from teckochecker.services.events import record_events
from teckochecker.vault import Vault

logger = logging.getLogger(__name__)
OpenAIClientFactory = Callable[[str], OpenAIBatchClient]
AUTH_STATUSES = frozenset({401, 403})

_jobs = PollingJob.__table__
_batches = JobBatch.__table__
_secrets = Secret.__table__
_JOB_STATE = (
    _jobs.c.status,
    _jobs.c.last_error,
    _jobs.c.last_check_at,
    _jobs.c.last_success_at,
    _jobs.c.next_check_at,
    *leases.COLUMNS,
)
# Locks the rows and reads the jobs' state, only where we hold the lease.
_HOLD = leases.hold_statement(_jobs.c.id, *_JOB_STATE)
# What a check needs before it calls OpenAI: each job's key (still encrypted) and its batches' ids and status.
_WORK = (
    select(_jobs.c.id, _secrets.c.name, _secrets.c.encrypted_value, _batches.c.batch_id, _batches.c.status)
    .select_from(_jobs)
    .join(_secrets, _secrets.c.id == _jobs.c.openai_secret_id)
    .outerjoin(_batches, _batches.c.job_id == _jobs.c.id)
    .where(_jobs.c.id.in_(bindparam("job_ids", expanding=True)))
    .order_by(_jobs.c.id, _batches.c.id)
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
_BATCH_ROWS = select(
    _batches.c.id, _batches.c.job_id, _batches.c.batch_id, *(_batches.c[name] for name in _BATCH_FIELDS)
).where(_batches.c.job_id.in_(bindparam("job_ids", expanding=True)))
# Parameters named after their columns are reserved by SQLAlchemy in SET clauses, hence the prefix.
_SAVE_BATCH = (
    update(_batches)
    .where(_batches.c.id == bindparam("row_id"))
    .values(**{name: bindparam(f"new_{name}") for name in _BATCH_FIELDS})
)
_SAVE_JOB = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"))
    .values(**{column.name: bindparam(f"new_{column.name}") for column in _JOB_STATE})
)


@dataclass(frozen=True)
class CheckOutcome:
    """What the check of one job led to.

    `failure` is set when OpenAI should be asked again (outcome TRANSIENT_ERROR); the job keeps its lease
    for the retry.
    """

    ran: bool
    outcome: Outcome = Outcome.CHECKED
    failure: TransientError | None = None


SKIPPED_OUTCOME = CheckOutcome(ran=False, outcome=Outcome.SKIPPED)


@dataclass(frozen=True)
class _Observation:
    batch_id: str
    batch: Batch | None  # None: OpenAI says the batch does not exist


@dataclass
class _Work:
    """One job's part of a check: its key, the batches to ask about, and what OpenAI said."""

    job_id: int
    secret: str
    encrypted_key: str
    pending: list[str]
    observations: list[_Observation] = field(default_factory=list)
    failure: ServiceError | None = None


@dataclass
class _HeldJob:
    """A job's row while we hold its lease and its lock: changed in memory, written once by `_save`.

    Its lease columns change only through `leases.release`.
    """

    id: int
    status: str
    last_error: str | None
    last_check_at: datetime | None
    last_success_at: datetime | None
    next_check_at: datetime | None
    lease_token: str | None
    lease_until: datetime | None
    events: list[tuple[str, str]] = field(default_factory=list)

    def record(self, kind: str, message: str) -> None:
        self.events.append((kind, message))


def _hold(session: Session, job_ids: Collection[int], token: str) -> list[_HeldJob]:
    rows = session.execute(_HOLD, {"job_ids": list(job_ids), "token": token})
    return sorted((_HeldJob(*row) for row in rows), key=lambda job: job.id)


def _save(session: Session, jobs: list[_HeldJob]) -> None:
    rows = [{"job_id": job.id, **{f"new_{c.name}": getattr(job, c.name) for c in _JOB_STATE}} for job in jobs]
    if rows:
        session.execute(_SAVE_JOB, rows)
    record_events(session, [(job.id, kind, message) for job in jobs for kind, message in job.events])


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


def _apply(
    job: _HeldJob, rows: dict[str, dict[str, Any]], observations: list[_Observation], now: datetime
) -> list[dict[str, Any]]:
    """Apply what OpenAI said to the job's batch rows (in place); returns the rows to write."""
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
            with log_context(job_id=job.id, batch_id=observation.batch_id):
                logger.info("%s", message)
    return changed


def _fail_on_rejected_key(job: _HeldJob, secret: str, error: PermanentError) -> None:
    job.status = JobStatus.FAILED.value
    job.last_error = (
        f"OpenAI rejected the key in secret '{secret}' ({error}). Fix it with "
        f"`teckochecker secret update {secret}`, then `teckochecker job resume {job.id}`."
    )
    job.next_check_at = None
    job.record("failed", job.last_error)


def run_checks(
    sessions: sessionmaker[Session],
    vault: Vault,
    openai_client: OpenAIClientFactory,
    job_ids: Sequence[int],
    token: str,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> dict[int, CheckOutcome]:
    """Check a group of jobs handed out together under the lease `token`; one outcome per job id.

    The group shares its transactions: one to renew the leases and read what to ask, one to store what
    OpenAI said, whatever the group's size. The calls to OpenAI are made one after another.
    """
    with session_scope(sessions) as session:
        held = leases.renew(session, job_ids, token, now=clock(), status=JobStatus.ACTIVE.value)
        work = _read_work(session, held) if held else []
    outcomes = dict.fromkeys(job_ids, SKIPPED_OUTCOME)
    works = _ask_openai(sessions, vault, openai_client, work, token, clock)
    if not works:
        return outcomes

    # What was learned before a failure is stored either way.
    with session_scope(sessions) as session:
        jobs = _hold(session, list(works), token)
        rows: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in session.execute(_BATCH_ROWS, {"job_ids": [job.id for job in jobs]}):
            rows[row.job_id][row.batch_id] = row._asdict()
        now = clock()
        changed = []
        for job in jobs:
            job_work = works[job.id]
            changed += _apply(job, rows[job.id], job_work.observations, now)
            job.last_check_at = now
            statuses = [row["status"] for row in rows[job.id].values()]
            outcomes[job.id] = _conclude(job, statuses, job_work.secret, job_work.failure, now)
        if changed:
            session.execute(_SAVE_BATCH, changed)
        _save(session, jobs)
    return outcomes


def _read_work(session: Session, job_ids: Collection[int]) -> list[_Work]:
    works: dict[int, _Work] = {}
    for row in session.execute(_WORK, {"job_ids": list(job_ids)}):
        work = works.get(row.id) or works.setdefault(row.id, _Work(row.id, row.name, row.encrypted_value, []))
        if row.batch_id is not None and row.status not in BATCH_TERMINAL_STATUSES:
            work.pending.append(row.batch_id)
    return list(works.values())


def _ask_openai(
    sessions: sessionmaker[Session],
    vault: Vault,
    openai_client: OpenAIClientFactory,
    works: list[_Work],
    token: str,
    clock: Callable[[], datetime],
) -> dict[int, _Work]:
    """Ask about every pending batch, renewing the leases as time passes; returns the work still ours."""
    ours = {work.job_id: work for work in works}
    # A group shares one key as a rule: decrypt it once, and keep the plaintext only for this call.
    clients: dict[str, OpenAIBatchClient] = {}
    renewed_at = clock()
    for work in works:
        if work.job_id not in ours:
            continue
        client = clients.get(work.encrypted_key)
        if client is None:
            client = clients[work.encrypted_key] = openai_client(
                vault.decrypt(work.encrypted_key, secret_name=work.secret)
            )
        for batch_id in work.pending:
            if clock() - renewed_at > leases.RUN_LEASE / 3:
                with session_scope(sessions) as session:
                    still_ours = leases.renew(session, list(ours), token, now=clock(), status=JobStatus.ACTIVE.value)
                ours = {job_id: work for job_id, work in ours.items() if job_id in still_ours}
                renewed_at = clock()
                if work.job_id not in ours:
                    break
            try:
                with log_context(job_id=work.job_id, batch_id=batch_id):
                    work.observations.append(_Observation(batch_id, client.get_batch(batch_id)))
            except PermanentError as error:
                if error.status == 404:
                    work.observations.append(_Observation(batch_id, None))
                    continue
                work.failure = error
                break
            except TransientError as error:
                work.failure = error
                break
    return ours


def _conclude(
    job: _HeldJob, statuses: list[str], secret: str, failure: ServiceError | None, now: datetime
) -> CheckOutcome:
    if isinstance(failure, TransientError):
        # The lease stays: the caller either retries under it or gives up and releases it.
        return CheckOutcome(ran=True, outcome=Outcome.TRANSIENT_ERROR, failure=failure)
    if job.status != JobStatus.ACTIVE:
        # Paused (or edited into another state) while we were asking OpenAI: never trigger.
        leases.release(job)
        return CheckOutcome(ran=True)
    if isinstance(failure, PermanentError):
        if failure.status in AUTH_STATUSES:
            _fail_on_rejected_key(job, secret, failure)
        else:
            _record_failure(job, f"OpenAI refused the check: {failure}")
        leases.release(job)
        return CheckOutcome(ran=True, outcome=Outcome.REFUSED)
    job.last_success_at = now
    if job.last_error is not None:
        job.record("recovered", "Checks succeed again")
        job.last_error = None
    leases.release(job)
    if all(status in BATCH_TERMINAL_STATUSES for status in statuses):
        # The compare-and-set: only the check holding the lease of an active job gets here. Beat hands the
        # job to one trigger task at its next tick, under a new lease and within the trigger queue's cap.
        job.status = JobStatus.TRIGGERING.value
        job.next_check_at = now
        job.record("triggering", "Every batch has finished; starting the Keboola job")
        return CheckOutcome(ran=True, outcome=Outcome.ALL_FINISHED)
    return CheckOutcome(ran=True)


def _record_failure(job: _HeldJob, message: str) -> None:
    # One event per distinct failure: an outage that lasts hours must not write a row every interval.
    if job.last_error != message:
        job.record("check_failed", message)
    job.last_error = message


def give_up_check(sessions: sessionmaker[Session], job_id: int, token: str, message: str) -> None:
    """Retries ran out: record the failure, keep the job active; the next regular check comes as planned."""
    with session_scope(sessions) as session:
        for job in _hold(session, [job_id], token):
            _record_failure(job, message)
            leases.release(job)
            _save(session, [job])


def defer_check(sessions: sessionmaker[Session], job_id: int, token: str, until: datetime, message: str) -> None:
    """OpenAI asked for a wait too long for the broker: record it and plan the next check after it."""
    with session_scope(sessions) as session:
        for job in _hold(session, [job_id], token):
            _record_failure(job, message)
            if job.status == JobStatus.ACTIVE:
                job.next_check_at = max(job.next_check_at or until, until)
            leases.release(job)
            _save(session, [job])


ON_TRANSIENT_FAILURE = TransientFailureRules(JobStatus.ACTIVE, give_up=give_up_check, defer=defer_check)
