"""The Keboola trigger: start one Keboola job for each finished polling job, exactly once, then follow it.

Exactly once rests on three things. Only the check that moved a job `active` → `triggering` (a
compare-and-set) makes it startable, and every write is guarded by the lease token. `trigger_attempted_at`
is committed *before* the Keboola call, so whoever works on the job next knows a job may exist and looks for
it (the Job Queue search, by configuration and variables) before starting another. And the Keboola job id
is recorded only where none is recorded yet, under the job's row lock.

Like the check, both halves run on prepared Core statements in two short transactions per group, with no
transaction open during a call: `run_starts` starts the Keboola jobs of a group of finished jobs that share
a Keboola token; `run_follows` looks once at the Keboola jobs of a group and plans the next look. Following
is a scheduled state check (beat hands the job out again when it is due), never a task that waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.errors import PermanentError, ServiceError, TransientError
from teckochecker.clients.keboola_hosts import UnsafeEndpointError
from teckochecker.clients.keboola_queue import KeboolaJob, KeboolaQueueClient, batch_variables
from teckochecker.db import database_now, session_scope
from teckochecker.engine import leases
from teckochecker.engine.backoff import TransientFailureRules, retry_wait
from teckochecker.engine.fanout import run_in_parallel
from teckochecker.engine.outcomes import Outcome
from teckochecker.models import BATCH_SUCCEEDED_STATUSES, JobBatch, JobStatus, PollingJob, Secret
from teckochecker.services.events import record_events
from teckochecker.vault import Vault

KeboolaClientFactory = Callable[[str, str], KeboolaQueueClient]
# Keboola's job search is an index that trails job creation by a few seconds: after an attempt whose
# outcome we do not know, wait this long before concluding from an empty search that no job exists.
SEARCH_SETTLE_TIME = timedelta(seconds=20)
# Look this far before our own attempt, so clock skew between us and Keboola cannot hide our job.
SEARCH_CLOCK_MARGIN = timedelta(minutes=5)
FOLLOW_INTERVAL_MAX_SECONDS = 30
# Keboola jobs of one group started at once, each its own call (the group is up to START_GROUP_SIZE jobs).
STARTS_IN_FLIGHT = 8
KEBOOLA_SUCCESS = "success"

_jobs = PollingJob.__table__
_batches = JobBatch.__table__
_secrets = Secret.__table__
_STATE = (
    _jobs.c.status,
    _jobs.c.last_error,
    _jobs.c.completed_at,
    _jobs.c.next_check_at,
    _jobs.c.keboola_job_id,
    _jobs.c.keboola_job_status,
    _jobs.c.keboola_project_id,
    _jobs.c.trigger_attempted_at,
    *leases.COLUMNS,
)
_HELD = leases.HeldRows(*_STATE)
# Everything a trigger needs, for a group at once: the target, the token (still encrypted), the batches.
_PLANS = (
    select(
        _jobs.c.id,
        _jobs.c.keboola_component_id,
        _jobs.c.keboola_configuration_id,
        _jobs.c.keboola_stack_url,
        _jobs.c.keboola_job_id,
        _jobs.c.trigger_attempted_at,
        _jobs.c.poll_interval_seconds,
        _secrets.c.name,
        _secrets.c.encrypted_value,
        _batches.c.batch_id,
        _batches.c.status,
    )
    .select_from(_jobs)
    .join(_secrets, _secrets.c.id == _jobs.c.keboola_secret_id)
    .outerjoin(_batches, _batches.c.job_id == _jobs.c.id)
    .where(_jobs.c.id.in_(bindparam("job_ids", expanding=True)))
    .order_by(_jobs.c.id, _batches.c.id)
)
_MARK_ATTEMPTED = (
    update(_jobs)
    .where(_jobs.c.id.in_(bindparam("job_ids", expanding=True)), leases.held_by(bindparam("token")))
    .values(trigger_attempted_at=bindparam("now"))
    .returning(_jobs.c.id)
)


@dataclass(frozen=True)
class TriggerOutcome:
    """What a start or follow did with one job; `failure` is set when Keboola should be asked again."""

    outcome: Outcome
    failure: TransientError | None = None


SKIPPED_OUTCOME = TriggerOutcome(Outcome.SKIPPED)


@dataclass
class _Trigger:
    """One job's trigger: what to send, and what happened when it was sent."""

    job_id: int
    component_id: str
    configuration_id: str
    stack_url: str
    secret: str
    encrypted_token: str
    keboola_job_id: str | None
    attempted_at: datetime | None
    interval: int
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # What happened.
    outcome: Outcome | None = None
    started_id: str | None = None
    how: str = "started"
    state: KeboolaJob | None = None
    wait_until: datetime | None = None
    refusal: str | None = None
    failure: TransientError | None = None
    no_job_started: bool = False

    @property
    def variables(self) -> list[dict[str, str]]:
        return batch_variables(self.completed, self.failed)

    @property
    def follow_every(self) -> timedelta:
        return timedelta(seconds=min(self.interval, FOLLOW_INTERVAL_MAX_SECONDS))

    def is_ours(self, candidate: KeboolaJob) -> bool:
        wanted = {item["name"]: item["value"] for item in self.variables}
        return candidate.config == self.configuration_id and all(
            candidate.variables.get(name) == value for name, value in wanted.items()
        )


@dataclass
class _HeldRow:
    """A job's row while we hold its lease and its lock: changed in memory, written once by `_save`."""

    id: int
    status: str
    last_error: str | None
    completed_at: datetime | None
    next_check_at: datetime | None
    keboola_job_id: str | None
    keboola_job_status: str | None
    keboola_project_id: str | None
    trigger_attempted_at: datetime | None
    lease_token: str | None
    lease_until: datetime | None
    events: list[tuple[str, str]] = field(default_factory=list)

    def record(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def fail(self, message: str, now: datetime) -> None:
        self.status = JobStatus.FAILED.value
        self.last_error = message
        self.completed_at = now
        self.next_check_at = None
        self.record("failed", message)


def _read_plans(session: Session, job_ids: Collection[int]) -> list[_Trigger]:
    triggers: dict[int, _Trigger] = {}
    for row in session.execute(_PLANS, {"job_ids": list(job_ids)}):
        trigger = triggers.get(row.id)
        if trigger is None:
            trigger = triggers[row.id] = _Trigger(
                row.id,
                row.keboola_component_id,
                row.keboola_configuration_id,
                row.keboola_stack_url,
                row.name,
                row.encrypted_value,
                row.keboola_job_id,
                row.trigger_attempted_at,
                row.poll_interval_seconds,
            )
        if row.batch_id is not None:
            (trigger.completed if row.status in BATCH_SUCCEEDED_STATUSES else trigger.failed).append(row.batch_id)
    return list(triggers.values())


def _hold(session: Session, job_ids: Collection[int], lease_token: str) -> dict[int, _HeldRow]:
    rows = session.execute(_HELD.hold, {"job_ids": list(job_ids), "token": lease_token})
    return {row.id: _HeldRow(*row) for row in rows}


def _save(session: Session, rows: Collection[_HeldRow]) -> None:
    _HELD.save(session, rows)
    record_events(session, [(row.id, kind, message) for row in rows for kind, message in row.events])


class _Group:
    """The calls of one group: a client per Keboola token and stack, and leases renewed as time passes."""

    def __init__(
        self, sessions: sessionmaker[Session], vault: Vault, factory: KeboolaClientFactory, token: str, now: datetime
    ) -> None:
        self.sessions, self.vault, self.factory, self.lease_token = sessions, vault, factory, token
        self._started = time.monotonic()
        self._now = now
        self._renewed_at = time.monotonic()
        self._clients: dict[tuple[str, str], KeboolaQueueClient] = {}
        # A group's starts run in several threads: they share the clients and the lease renewal.
        self._lock = threading.Lock()
        self.ours: set[int] = set()

    def now(self) -> datetime:
        """The database's time, advanced by what has passed here since it was read."""
        return self._now + timedelta(seconds=time.monotonic() - self._started)

    def client(self, trigger: _Trigger) -> KeboolaQueueClient:
        key = (trigger.encrypted_token, trigger.stack_url)
        with self._lock:
            if key not in self._clients:
                token = self.vault.decrypt(trigger.encrypted_token, secret_name=trigger.secret)
                self._clients[key] = self.factory(token, trigger.stack_url)
            return self._clients[key]

    def still_ours(self, job_id: int) -> bool:
        with self._lock:
            if time.monotonic() - self._renewed_at > leases.RUN_LEASE.total_seconds() / 3:
                with session_scope(self.sessions) as session:
                    now = database_now(session)
                    self.ours = leases.renew(session, self.ours, self.lease_token, now=now, status=_TRIGGERING)
                self._renewed_at = time.monotonic()
            return job_id in self.ours


_TRIGGERING = JobStatus.TRIGGERING.value


def run_starts(
    sessions: sessionmaker[Session],
    vault: Vault,
    keboola_client: KeboolaClientFactory,
    job_ids: Sequence[int],
    lease_token: str,
) -> dict[int, TriggerOutcome]:
    """Start (exactly once) the Keboola jobs of a group of finished jobs held under `lease_token`."""
    outcomes = dict.fromkeys(job_ids, SKIPPED_OUTCOME)
    with session_scope(sessions) as session:
        now = database_now(session)
        held = leases.renew(session, job_ids, lease_token, now=now, status=_TRIGGERING)
        triggers = [t for t in _read_plans(session, held) if t.keboola_job_id is None] if held else []
        fresh = [t.job_id for t in triggers if t.attempted_at is None]
        # Committed before any call: whoever works on these jobs next must look for what we may start.
        if fresh:
            session.execute(_MARK_ATTEMPTED, {"job_ids": fresh, "token": lease_token, "now": now})
    group = _Group(sessions, vault, keboola_client, lease_token, now)
    group.ours = set(held)
    waiting = iter(triggers)
    taking = threading.Lock()

    def start_until_done() -> None:
        while True:
            with taking:
                trigger = next(waiting, None)
            if trigger is None:
                return
            if group.still_ours(trigger.job_id):
                _start(group, trigger)
            else:
                trigger.outcome = Outcome.SKIPPED

    # Each start is its own call to Keboola (and, after an unknown outcome, a search first): in a burst, the
    # last job of a group one after another would wait for all the starts before it.
    run_in_parallel(start_until_done, min(STARTS_IN_FLIGHT, len(triggers)))
    _finish(sessions, held, triggers, lease_token, _conclude_start, outcomes)
    return outcomes


def start_after_check(
    sessions: sessionmaker[Session],
    vault: Vault,
    keboola_client: KeboolaClientFactory,
    job_ids: Sequence[int],
    lease_token: str,
    *,
    retry_delay: float,
    max_retries: int,
) -> dict[int, TriggerOutcome]:
    """Start the Keboola jobs of jobs the caller's check just moved to `triggering` and kept under its lease
    (`checking.run_checks(keep_starts=True)`), exactly as a trigger task would.

    A transient failure is not retried here, in the check's task: the job is planned again after the first
    retry's wait and beat hands it to a trigger task, whose retries then run as for any other start. After an
    answer that leaves unknown whether Keboola started a job, that task first searches for it. With no
    retries allowed (`max_retries` 0) the job fails at once, as a trigger task's would.
    """
    outcomes = run_starts(sessions, vault, keboola_client, job_ids, lease_token)
    for job_id, outcome in outcomes.items():
        if outcome.failure is None:
            continue
        if max_retries <= 0:
            give_up_trigger(sessions, job_id, lease_token, f"{outcome.failure} (gave up after 0 retries)")
        else:
            wait = retry_wait(0, retry_delay, outcome.failure.retry_after)
            _plan_again(sessions, job_id, lease_token, wait, f"Could not start the Keboola job yet: {outcome.failure}")
    return outcomes


def _finish(
    sessions: sessionmaker[Session],
    held: Collection[int],
    triggers: list[_Trigger],
    lease_token: str,
    conclude: Callable[[_HeldRow, _Trigger, datetime], TriggerOutcome],
    outcomes: dict[int, TriggerOutcome],
) -> None:
    """Write what the calls found, in one transaction; jobs held but not this action's are handed back."""
    with session_scope(sessions) as session:
        now = database_now(session)
        rows = _hold(session, held, lease_token)
        for trigger in triggers:
            row = rows.get(trigger.job_id)
            if row is not None:
                outcomes[trigger.job_id] = conclude(row, trigger, now)
        for job_id in rows.keys() - {trigger.job_id for trigger in triggers}:
            # Its Keboola job was recorded (or forgotten) since the claim: the other action takes it, now.
            leases.release(rows[job_id])
        _save(session, rows.values())


def _start(group: _Group, trigger: _Trigger) -> None:
    """Find the Keboola job an earlier attempt may have started, or start one; records what happened."""
    client = group.client(trigger)
    try:
        if trigger.attempted_at is not None and not _found_earlier(group, client, trigger):
            return
        if trigger.started_id is None:
            trigger.started_id = client.start_job(trigger.component_id, trigger.configuration_id, trigger.variables)
        trigger.outcome = Outcome.STARTED
    except UnsafeEndpointError as error:
        trigger.outcome = Outcome.REFUSED
        trigger.refusal = (
            f"Refused to send the Keboola token: {error}. Fix the stack with `teckochecker job update "
            f"{trigger.job_id} --keboola-stack URL`, then `teckochecker job retry {trigger.job_id}`."
        )
    except ServiceError as error:
        # A 4xx answer (a refusal, 429 included) proves no job was started: nothing to look for later.
        trigger.no_job_started = error.status is not None and 400 <= error.status < 500
        if isinstance(error, PermanentError):
            trigger.outcome = Outcome.REFUSED
            trigger.refusal = f"Keboola refused to run configuration {trigger.configuration_id}: {error}"
        else:
            trigger.outcome, trigger.failure = Outcome.TRANSIENT_ERROR, error  # type: ignore[assignment]


def _found_earlier(group: _Group, client: KeboolaQueueClient, trigger: _Trigger) -> bool:
    """After an attempt whose outcome is unknown: True to go on (found it, or safe to start again)."""
    assert trigger.attempted_at is not None
    since = trigger.attempted_at - SEARCH_CLOCK_MARGIN
    found = [
        job for job in client.search_jobs(trigger.component_id, trigger.configuration_id, since) if trigger.is_ours(job)
    ]
    if found:
        earliest = min(found, key=lambda job: (job.created_time is None, job.created_time, job.id))
        trigger.started_id, trigger.how = earliest.id, "found (started by an earlier attempt)"
        return True
    if group.now() - trigger.attempted_at < SEARCH_SETTLE_TIME:
        trigger.outcome = Outcome.WAITING_FOR_SEARCH
        trigger.wait_until = trigger.attempted_at + SEARCH_SETTLE_TIME
        return False
    # Long enough for the index: no job exists. Say so before the new attempt, as for a first one.
    with session_scope(group.sessions) as session:
        now = database_now(session)
        marked = session.execute(
            _MARK_ATTEMPTED, {"job_ids": [trigger.job_id], "token": group.lease_token, "now": now}
        ).first()
    if marked is None:
        trigger.outcome = Outcome.SKIPPED
        return False
    return True


def _conclude_start(row: _HeldRow, trigger: _Trigger, now: datetime) -> TriggerOutcome:
    outcome = trigger.outcome or Outcome.SKIPPED
    if trigger.no_job_started:
        row.trigger_attempted_at = None
    if outcome is Outcome.TRANSIENT_ERROR:
        # The lease stays: the caller either retries under it or gives up and releases it.
        return TriggerOutcome(outcome, trigger.failure)
    if outcome is Outcome.STARTED and trigger.started_id is not None:
        if row.keboola_job_id is None:
            sent = ", ".join(f"{item['name']}={item['value']}" for item in trigger.variables)
            row.keboola_job_id, row.keboola_job_status = trigger.started_id, "created"
            row.record("keboola_started", f"Keboola job {trigger.started_id} {trigger.how} with {sent}")
        row.next_check_at = now + trigger.follow_every
    elif outcome is Outcome.WAITING_FOR_SEARCH:
        row.next_check_at = trigger.wait_until
    elif outcome is Outcome.REFUSED and trigger.refusal is not None:
        row.fail(trigger.refusal, now)
    leases.release(row)
    return TriggerOutcome(outcome)


def run_follows(
    sessions: sessionmaker[Session],
    vault: Vault,
    keboola_client: KeboolaClientFactory,
    job_ids: Sequence[int],
    lease_token: str,
) -> dict[int, TriggerOutcome]:
    """Look once at the Keboola jobs of a group held under `lease_token`; finish the jobs whose Keboola job has."""
    outcomes = dict.fromkeys(job_ids, SKIPPED_OUTCOME)
    with session_scope(sessions) as session:
        now = database_now(session)
        held = leases.renew(session, job_ids, lease_token, now=now, status=_TRIGGERING)
        triggers = [t for t in _read_plans(session, held) if t.keboola_job_id is not None] if held else []
    group = _Group(sessions, vault, keboola_client, lease_token, now)
    group.ours = set(held)
    for trigger in triggers:
        if not group.still_ours(trigger.job_id):
            trigger.outcome = Outcome.SKIPPED
            continue
        try:
            trigger.state = group.client(trigger).get_job(trigger.keboola_job_id)  # type: ignore[arg-type]
        except UnsafeEndpointError as error:
            trigger.outcome, trigger.refusal = Outcome.REFUSED, f"Refused to send the Keboola token: {error}"
        except PermanentError as error:
            trigger.outcome = Outcome.REFUSED
            trigger.refusal = f"Keboola cannot show job {trigger.keboola_job_id}: {error}"
        except TransientError as error:
            trigger.outcome, trigger.failure = Outcome.TRANSIENT_ERROR, error
    _finish(sessions, held, triggers, lease_token, _conclude_follow, outcomes)
    return outcomes


def _conclude_follow(row: _HeldRow, trigger: _Trigger, now: datetime) -> TriggerOutcome:
    if trigger.outcome is Outcome.TRANSIENT_ERROR:
        return TriggerOutcome(Outcome.TRANSIENT_ERROR, trigger.failure)
    if trigger.outcome is Outcome.REFUSED and trigger.refusal is not None:
        row.fail(trigger.refusal, now)
        leases.release(row)
        return TriggerOutcome(Outcome.REFUSED)
    state = trigger.state
    if state is None or row.status != _TRIGGERING:
        leases.release(row)
        return SKIPPED_OUTCOME
    keboola_job_id = row.keboola_job_id
    row.keboola_project_id = state.project_id or row.keboola_project_id
    if state.status != row.keboola_job_status:
        row.keboola_job_status = state.status
        if not state.is_finished:
            row.record("keboola_status", f"Keboola job {keboola_job_id} is {state.status}")
    leases.release(row)
    if not state.is_finished:
        row.next_check_at = now + trigger.follow_every
        return TriggerOutcome(Outcome.FOLLOWING)
    row.completed_at, row.next_check_at, row.last_error = now, None, None
    if state.status == KEBOOLA_SUCCESS:
        row.status = (JobStatus.COMPLETED_WITH_FAILURES if trigger.failed else JobStatus.COMPLETED).value
        detail = f"; failed batches: {', '.join(trigger.failed)}" if trigger.failed else ""
        row.record(row.status, f"Keboola job {keboola_job_id} succeeded{detail}")
        return TriggerOutcome(Outcome.FINISHED_SUCCESS)
    row.status = JobStatus.FAILED.value
    row.last_error = f"Keboola job {keboola_job_id} finished with status {state.status}"
    row.record("failed", row.last_error)
    return TriggerOutcome(Outcome.FINISHED_ERROR)


def _held_one(session: Session, job_id: int, lease_token: str) -> _HeldRow | None:
    return _hold(session, [job_id], lease_token).get(job_id)


def give_up_trigger(sessions: sessionmaker[Session], job_id: int, lease_token: str, message: str) -> None:
    """Retries ran out. Before a Keboola job is known this fails the job (`job retry` re-arms it);
    once one is known, following it just resumes at the next interval."""
    with session_scope(sessions) as session:
        row = _held_one(session, job_id, lease_token)
        if row is None:
            return
        now = database_now(session)
        if row.keboola_job_id is None:
            row.fail(f"Could not start the Keboola job: {message}", now)
        else:
            row.last_error = f"Could not follow Keboola job {row.keboola_job_id}: {message}"
            row.next_check_at = now + timedelta(seconds=FOLLOW_INTERVAL_MAX_SECONDS)
        leases.release(row)
        _save(session, [row])


def defer_trigger(sessions: sessionmaker[Session], job_id: int, lease_token: str, wait: float, message: str) -> None:
    """Keboola asked for a wait too long for the broker: come back to the job after it."""
    _plan_again(sessions, job_id, lease_token, wait, f"Keboola asked us to wait: {message}")


def _plan_again(sessions: sessionmaker[Session], job_id: int, lease_token: str, wait: float, error: str) -> None:
    """Give the job back to beat, due `wait` seconds from now, with `error` as its last error."""
    with session_scope(sessions) as session:
        row = _held_one(session, job_id, lease_token)
        if row is not None:
            row.last_error = error
            row.next_check_at = database_now(session) + timedelta(seconds=wait)
            leases.release(row)
            _save(session, [row])


ON_TRANSIENT_FAILURE = TransientFailureRules(JobStatus.TRIGGERING, give_up=give_up_trigger, defer=defer_trigger)
