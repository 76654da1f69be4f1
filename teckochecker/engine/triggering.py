"""The Keboola trigger: start one Keboola job for a finished polling job, exactly once, then follow it.

Exactly once rests on three things. Only the check that moved the job `active` → `triggering` (a
compare-and-set) hands it to a trigger task, and every write is guarded by the lease token.
`trigger_attempted_at` is committed *before* the Keboola call, so whoever works on the job next knows a
job may exist and looks for it (the Job Queue search, by configuration and variables) before starting
another. And the Keboola job id is recorded only where none is recorded yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, lazyload, sessionmaker

from teckochecker.clients.errors import PermanentError, ServiceError
from teckochecker.clients.keboola_hosts import UnsafeEndpointError
from teckochecker.clients.keboola_queue import KeboolaJob, KeboolaQueueClient, batch_variables
from teckochecker.db import session_scope, utcnow
from teckochecker.engine import leases
from teckochecker.engine.backoff import TransientFailureRules
from teckochecker.engine.outcomes import Outcome
from teckochecker.models import BATCH_SUCCEEDED_STATUSES, JobStatus, PollingJob
from teckochecker.services.events import record_event
from teckochecker.services.secrets import reveal_secret
from teckochecker.vault import Vault

KeboolaClientFactory = Callable[[str, str], KeboolaQueueClient]
# Keboola's job search is an index that trails job creation by a few seconds: after an attempt whose
# outcome we do not know, wait this long before concluding from an empty search that no job exists.
SEARCH_SETTLE_TIME = timedelta(seconds=20)
# Look this far before our own attempt, so clock skew between us and Keboola cannot hide our job.
SEARCH_CLOCK_MARGIN = timedelta(minutes=5)
FOLLOW_INTERVAL_MAX_SECONDS = 30
KEBOOLA_SUCCESS = "success"


@dataclass(frozen=True)
class _Plan:
    component_id: str
    configuration_id: str
    stack_url: str
    keboola_token: str
    keboola_job_id: str | None
    attempted_at: datetime | None
    variables: list[dict[str, str]]
    follow_every: timedelta
    any_failed: bool


def _load(session: Session, job_id: int) -> PollingJob:
    # Secrets and batches load only where they are used (the plan), not with every write.
    return session.scalars(select(PollingJob).where(PollingJob.id == job_id).options(lazyload("*"))).one()


def _plan(session: Session, vault: Vault, job: PollingJob) -> _Plan:
    completed = [b.batch_id for b in job.batches if b.status in BATCH_SUCCEEDED_STATUSES]
    failed = [b.batch_id for b in job.batches if b.status not in BATCH_SUCCEEDED_STATUSES]
    return _Plan(
        component_id=job.keboola_component_id,
        configuration_id=job.keboola_configuration_id,
        stack_url=job.keboola_stack_url,
        keboola_token=reveal_secret(session, vault, job.keboola_secret_id),
        keboola_job_id=job.keboola_job_id,
        attempted_at=job.trigger_attempted_at,
        variables=batch_variables(completed, failed),
        follow_every=timedelta(seconds=min(job.poll_interval_seconds, FOLLOW_INTERVAL_MAX_SECONDS)),
        any_failed=bool(failed),
    )


def _ours(candidate: KeboolaJob, plan: _Plan) -> bool:
    wanted = {item["name"]: item["value"] for item in plan.variables}
    return candidate.config == plan.configuration_id and all(
        candidate.variables.get(name) == value for name, value in wanted.items()
    )


def _release(sessions: sessionmaker[Session], job_id: int, lease_token: str, *, next_at: datetime) -> None:
    with session_scope(sessions) as session:
        if leases.hold(session, job_id, lease_token):
            job = _load(session, job_id)
            job.next_check_at = next_at
            leases.release(job)


def _record_started(sessions: sessionmaker[Session], job_id: int, keboola_job_id: str, how: str, plan: _Plan) -> str:
    """Record the Keboola job id unless one is recorded already; returns the id that stands."""
    with session_scope(sessions) as session:
        written = session.execute(
            update(PollingJob)
            .where(PollingJob.id == job_id, PollingJob.keboola_job_id.is_(None))
            .values(keboola_job_id=keboola_job_id, keboola_job_status="created")
            .returning(PollingJob.id)
        ).first()
        job = _load(session, job_id)
        if written is not None:
            sent = ", ".join(f"{item['name']}={item['value']}" for item in plan.variables)
            record_event(session, job, "keboola_started", f"Keboola job {keboola_job_id} {how} with {sent}")
        return job.keboola_job_id or keboola_job_id


def _fail(sessions: sessionmaker[Session], job_id: int, lease_token: str, message: str) -> None:
    with session_scope(sessions) as session:
        if not leases.hold(session, job_id, lease_token):
            return
        job = _load(session, job_id)
        job.status = JobStatus.FAILED.value
        job.last_error = message
        job.completed_at = utcnow()
        job.next_check_at = None
        leases.release(job)
        record_event(session, job, "failed", message)


class _LeaseLost(Exception):
    """Another dispatch took the job over while this run waited; it must not touch the job again."""


def _start(
    sessions: sessionmaker[Session],
    client: KeboolaQueueClient,
    job_id: int,
    lease_token: str,
    plan: _Plan,
    now: datetime,
) -> str | None:
    """Find the Keboola job an earlier attempt may have started, or start one.

    None: the search index may still be catching up, so the job comes back after SEARCH_SETTLE_TIME.
    """
    if plan.attempted_at is not None:
        since = plan.attempted_at - SEARCH_CLOCK_MARGIN
        found = [job for job in client.search_jobs(plan.component_id, plan.configuration_id, since) if _ours(job, plan)]
        if found:
            earliest = min(found, key=lambda job: (job.created_time is None, job.created_time, job.id))
            return _record_started(sessions, job_id, earliest.id, "found (started by an earlier attempt)", plan)
        if now - plan.attempted_at < SEARCH_SETTLE_TIME:
            _release(sessions, job_id, lease_token, next_at=plan.attempted_at + SEARCH_SETTLE_TIME)
            return None

    with session_scope(sessions) as session:
        if job_id not in leases.renew(session, [job_id], lease_token, now=now, status=JobStatus.TRIGGERING.value):
            raise _LeaseLost
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(trigger_attempted_at=now))
    try:
        keboola_job_id = client.start_job(plan.component_id, plan.configuration_id, plan.variables)
    except ServiceError as error:
        if error.status is not None and 400 <= error.status < 500:
            # A 4xx answer (a refusal, 429 included) proves no job was started: nothing to look for later.
            with session_scope(sessions) as session:
                session.execute(
                    update(PollingJob)
                    .where(PollingJob.id == job_id, leases.held_by(lease_token))
                    .values(trigger_attempted_at=None)
                )
        raise
    return _record_started(sessions, job_id, keboola_job_id, "started", plan)


def _follow(
    sessions: sessionmaker[Session],
    client: KeboolaQueueClient,
    job_id: int,
    lease_token: str,
    keboola_job_id: str,
    plan: _Plan,
) -> Outcome:
    state = client.get_job(keboola_job_id)
    with session_scope(sessions) as session:
        if not leases.hold(session, job_id, lease_token):
            return Outcome.SKIPPED
        job = _load(session, job_id)
        now = utcnow()
        if state.status != job.keboola_job_status:
            job.keboola_job_status = state.status
            if not state.is_finished:
                record_event(session, job, "keboola_status", f"Keboola job {keboola_job_id} is {state.status}")
        if not state.is_finished:
            job.next_check_at = now + plan.follow_every
            leases.release(job)
            return Outcome.FOLLOWING
        job.completed_at = now
        job.next_check_at = None
        job.last_error = None
        if state.status == KEBOOLA_SUCCESS:
            job.status = (JobStatus.COMPLETED_WITH_FAILURES if plan.any_failed else JobStatus.COMPLETED).value
            failed = json.loads(next(v["value"] for v in plan.variables if v["name"] == "batch_ids_failed"))
            detail = f"; failed batches: {', '.join(failed)}" if failed else ""
            record_event(session, job, job.status, f"Keboola job {keboola_job_id} succeeded{detail}")
        else:
            job.status = JobStatus.FAILED.value
            job.last_error = f"Keboola job {keboola_job_id} finished with status {state.status}"
            record_event(session, job, "failed", job.last_error)
        leases.release(job)
        return Outcome.FINISHED_SUCCESS if state.status == KEBOOLA_SUCCESS else Outcome.FINISHED_ERROR


def run_trigger(
    sessions: sessionmaker[Session],
    vault: Vault,
    keboola_client: KeboolaClientFactory,
    job_id: int,
    lease_token: str,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Outcome:
    """Start (exactly once) or follow the job's Keboola job under lease `lease_token`; returns what happened.

    Raises TransientError when Keboola should be asked again; a refusal fails the job with Keboola's reason.
    """
    with session_scope(sessions) as session:
        if job_id not in leases.renew(session, [job_id], lease_token, now=clock(), status=JobStatus.TRIGGERING.value):
            return Outcome.SKIPPED
        plan = _plan(session, vault, _load(session, job_id))
    client = keboola_client(plan.keboola_token, plan.stack_url)
    try:
        keboola_job_id = plan.keboola_job_id or _start(sessions, client, job_id, lease_token, plan, clock())
        if keboola_job_id is None:
            return Outcome.WAITING_FOR_SEARCH
        return _follow(sessions, client, job_id, lease_token, keboola_job_id, plan)
    except _LeaseLost:
        return Outcome.SKIPPED
    except UnsafeEndpointError as error:
        _fail(
            sessions,
            job_id,
            lease_token,
            f"Refused to send the Keboola token: {error}. Fix the stack with `teckochecker job update {job_id} "
            f"--keboola-stack URL`, then `teckochecker job retry {job_id}`.",
        )
        return Outcome.REFUSED
    except PermanentError as error:
        _fail(sessions, job_id, lease_token, f"Keboola refused to run configuration {plan.configuration_id}: {error}")
        return Outcome.REFUSED


def give_up_trigger(sessions: sessionmaker[Session], job_id: int, lease_token: str, message: str) -> None:
    """Retries ran out. Before a Keboola job is known this fails the job (`job retry` re-arms it);
    once one is known, following it just resumes at the next interval."""
    with session_scope(sessions) as session:
        if not leases.hold(session, job_id, lease_token):
            return
        job = _load(session, job_id)
        if job.keboola_job_id is None:
            job.status = JobStatus.FAILED.value
            job.completed_at = utcnow()
            job.next_check_at = None
            job.last_error = f"Could not start the Keboola job: {message}"
            record_event(session, job, "failed", job.last_error)
        else:
            job.last_error = f"Could not follow Keboola job {job.keboola_job_id}: {message}"
            job.next_check_at = utcnow() + timedelta(seconds=FOLLOW_INTERVAL_MAX_SECONDS)
        leases.release(job)


def defer_trigger(
    sessions: sessionmaker[Session], job_id: int, lease_token: str, until: datetime, message: str
) -> None:
    """Keboola asked for a wait too long for the broker: come back to the job after it."""
    with session_scope(sessions) as session:
        if leases.hold(session, job_id, lease_token):
            job = _load(session, job_id)
            job.last_error = f"Keboola asked us to wait: {message}"
            job.next_check_at = until
            leases.release(job)


ON_TRANSIENT_FAILURE = TransientFailureRules(JobStatus.TRIGGERING, give_up=give_up_trigger, defer=defer_trigger)
