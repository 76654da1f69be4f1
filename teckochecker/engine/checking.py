"""The check: ask OpenAI about jobs' unfinished batches, store what changed, and decide what is next.

No database transaction stays open during an HTTP call: the lease says who may work on the job, and
each write is guarded by the lease token. A transient failure is raised to the caller (the Celery task
decides about retries); a permanent one is recorded here with a message a person can act on.

This is the engine's hot path (every active job, every interval). Beat hands jobs out in groups that share
one lease token (one task), and a group is checked with a few prepared Core statements on the tables rather
than ORM objects: two short transactions, whatever the group's size. Its batches are refreshed per key,
with one GET each or by a list sweep (see `sweeping`), within the key's request budget (see `keys`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from teckochecker.clients.errors import PermanentError, ServiceError, TransientError
from teckochecker.clients.openai_batches import Batch, OpenAIBatchClient
from teckochecker.db import database_now, session_scope
from teckochecker.engine import leases
from teckochecker.engine.backoff import TransientFailureRules
from teckochecker.engine.fanout import run_in_parallel
from teckochecker.engine.keys import RequestBudget, pause_key
from teckochecker.engine.outcomes import Outcome
from teckochecker.engine.scheduling import START_GROUP_SIZE, plan_next_check
from teckochecker.engine.sweeping import SWEEP_MIN_WANTED, SweepResult, record_sweep, sweep
from teckochecker.engine.wakeups import announce_due
from teckochecker.logs import log_context
from teckochecker.models import (
    BATCH_NOT_FOUND,
    BATCH_TERMINAL_STATUSES,
    JobBatch,
    JobStatus,
    OpenAIKeyState,
    PollingJob,
    Secret,
)
from teckochecker.services.events import record_events
from teckochecker.vault import Vault

logger = logging.getLogger(__name__)
OpenAIClientFactory = Callable[[str], OpenAIBatchClient]
AUTH_STATUSES = frozenset({401, 403})
# Requests taken from a key's budget at a time for single GETs: one budget write per handful of calls.
BUDGET_CHUNK = 8
# Single GETs one group keeps in flight at once: a group of 8 at 2–10 s per answer then takes one answer's
# time, not eight.
GETS_IN_FLIGHT = 8
# Helpers join only when the group's first answer took longer than this: against a fast OpenAI, handing
# GETs to other threads costs more CPU than it saves time. Not lower: on a saturated machine even a 0 ms
# answer can take 50 ms, and helpers starting then made the 0 ms ceiling bench lose a third of its rate.
SLOW_ANSWER_SECONDS = 0.3
# How often a running sweep looks for jobs of its group that a webhook hinted meanwhile, and hands them back.
HINTS_LOOKED_FOR_EVERY_SECONDS = 0.5
# A 429 without Retry-After pauses the key for the fleet this long.
DEFAULT_429_PAUSE_SECONDS = 5.0
# A group whose check saw the batches of at most this many of its jobs all end keeps them for its own task to
# start their Keboola jobs (see `run_checks`). More, a sweep's harvest, go to beat, which spreads their starts
# over the workers in groups of this size.
STARTS_KEPT_AT_MOST = START_GROUP_SIZE

_jobs = PollingJob.__table__
_batches = JobBatch.__table__
_secrets = Secret.__table__
_states = OpenAIKeyState.__table__
_JOB_STATE = (
    _jobs.c.status,
    _jobs.c.last_error,
    _jobs.c.last_check_at,
    _jobs.c.last_success_at,
    _jobs.c.next_check_at,
    _jobs.c.poll_interval_seconds,
    _jobs.c.hinted_at,
    *leases.COLUMNS,
)
# Locks the rows and reads the jobs' state, only where we hold the lease; writes it back.
_HELD = leases.HeldRows(*_JOB_STATE)
# What a check needs before it calls OpenAI: each job's key (still encrypted), what the fleet knows about the
# key, and its batches' ids, status and creation time.
_WORK = (
    select(
        _jobs.c.id,
        _jobs.c.hinted_at,
        _secrets.c.id.label("key_id"),
        _secrets.c.name,
        _secrets.c.encrypted_value,
        _states.c.sweep_mode,
        _states.c.blocked_until,
        _batches.c.batch_id,
        _batches.c.status,
        _batches.c.openai_created_at,
    )
    .select_from(_jobs)
    .join(_secrets, _secrets.c.id == _jobs.c.openai_secret_id)
    .outerjoin(_states, _states.c.secret_id == _secrets.c.id)
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
    "openai_created_at",
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


@dataclass(frozen=True)
class CheckOutcome:
    """What the check of one job led to.

    `failure` is set when OpenAI should be asked again (outcome TRANSIENT_ERROR); the job keeps its lease
    for the retry. `starts_here`: the job moved to `triggering` and is still leased to the check's token, for
    the caller to start its Keboola job (`triggering.start_after_check`).
    """

    ran: bool
    outcome: Outcome = Outcome.CHECKED
    failure: TransientError | None = None
    starts_here: bool = False


SKIPPED_OUTCOME = CheckOutcome(ran=False, outcome=Outcome.SKIPPED)


@dataclass
class RefreshStats:
    """What a check cost: OpenAI requests by kind (`get`, `list`) and batches refreshed by method."""

    requests: Counter[str] = field(default_factory=Counter)
    refreshed: Counter[str] = field(default_factory=Counter)


@dataclass
class _KeyWork:
    """The part of a group that uses one OpenAI key: its jobs' pending batches, and what OpenAI said."""

    key_id: int
    secret: str
    encrypted_key: str
    sweep_mode: bool
    blocked_until: datetime | None
    pending: dict[int, list[str]] = field(default_factory=dict)
    # Each job's webhook hint as this check read it, before asking OpenAI.
    hints: dict[int, datetime | None] = field(default_factory=dict)
    created_at: dict[str, int | None] = field(default_factory=dict)
    observed: dict[str, Batch | None] = field(default_factory=dict)  # None: OpenAI says it does not exist
    failures: dict[str, ServiceError] = field(default_factory=dict)
    over_budget: set[str] = field(default_factory=set)
    # Batches whose GET is in flight: a 429 meanwhile stops the requests not yet sent, not these.
    asking: set[str] = field(default_factory=set)
    sweep: SweepResult | None = None
    sweep_seconds: float = 0.0
    # After a 429: how long the whole fleet leaves this key alone.
    pause_seconds: float | None = None

    def wanted(self) -> list[str]:
        """Every pending batch once, in the jobs' order."""
        return list(dict.fromkeys(batch_id for batch_ids in self.pending.values() for batch_id in batch_ids))

    def all_hinted(self) -> bool:
        """Webhooks pointed at every one of these jobs: beat handed them out as an ordinary group, to be asked
        about directly. A sweep's group in which a few jobs were hinted after its claim still sweeps for the
        others (one GET per batch of a whole window would take minutes) and hands the hinted ones back."""
        return all(hint is not None for hint in self.hints.values())

    def unasked(self) -> list[str]:
        done = self.observed.keys() | self.failures.keys() | self.over_budget | self.asking
        return [batch_id for batch_id in self.wanted() if batch_id not in done]


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
    poll_interval_seconds: int
    hinted_at: datetime | None
    lease_token: str | None
    lease_until: datetime | None
    events: list[tuple[str, str]] = field(default_factory=list)

    def record(self, kind: str, message: str) -> None:
        self.events.append((kind, message))


def _hold(session: Session, job_ids: Collection[int], token: str) -> list[_HeldJob]:
    rows = session.execute(_HELD.hold, {"job_ids": list(job_ids), "token": token})
    return sorted((_HeldJob(*row) for row in rows), key=lambda job: job.id)


def _save(session: Session, jobs: list[_HeldJob]) -> None:
    _HELD.save(session, jobs)
    record_events(session, [(job.id, kind, message) for job in jobs for kind, message in job.events])


def _describe(batch: dict[str, Any]) -> str:
    counts = f"{batch['request_completed']}/{batch['request_total']} requests done, {batch['request_failed']} failed"
    return f"{batch['batch_id']} is {batch['status']} ({counts})"


def _observed_values(found: Batch | None, previous: dict[str, Any], now: datetime) -> dict[str, Any]:
    if found is None:
        values = {**previous, "status": BATCH_NOT_FOUND}
    else:
        values = {
            **previous,
            "status": found.status,
            "request_total": found.request_counts.total,
            "request_completed": found.request_counts.completed,
            "request_failed": found.request_counts.failed,
            "output_file_id": found.output_file_id,
            "error_file_id": found.error_file_id,
            "openai_created_at": found.created_at,
        }
    if values["status"] in BATCH_TERMINAL_STATUSES and values["finished_at"] is None:
        values["finished_at"] = now
    return values


def _apply(
    job: _HeldJob, rows: dict[str, dict[str, Any]], observed: dict[str, Batch | None], now: datetime
) -> list[dict[str, Any]]:
    """Apply what OpenAI said to the job's batch rows (in place); returns the rows to write."""
    changed = []
    for batch_id, previous in list(rows.items()):
        if batch_id not in observed:
            continue
        current = _observed_values(observed[batch_id], previous, now)
        if current == previous:
            continue
        rows[batch_id] = current
        changed.append({"row_id": current["id"], **{f"new_{name}": current[name] for name in _BATCH_FIELDS}})
        if current["status"] != previous["status"]:
            message = f"{_describe(current)} (was {previous['status']})"
            job.record("batch_status", message)
            with log_context(job_id=job.id, batch_id=batch_id):
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
    budget: RequestBudget | None = None,
    stats: RefreshStats | None = None,
    keep_starts: bool = False,
) -> dict[int, CheckOutcome]:
    """Check a group of jobs handed out together under the lease `token`; one outcome per job id.

    The group shares its transactions: one to renew the leases and read what to ask, one to store what
    OpenAI said, whatever the group's size.

    With `keep_starts`, the jobs this check moved to `triggering` stay leased to `token` (up to
    STARTS_KEPT_AT_MOST of them; outcome `starts_here`), so the caller starts their Keboola jobs at once
    instead of waiting for beat to hand them out again. Should the caller die first, the lease runs out and
    beat hands the jobs out as if they had never been kept.
    """
    budget = budget or RequestBudget(None)
    stats = stats if stats is not None else RefreshStats()
    with session_scope(sessions) as session:
        now = database_now(session)
        held = leases.renew(session, job_ids, token, now=now, status=JobStatus.ACTIVE.value)
        keys = _read_work(session, held, now) if held else []
    outcomes = dict.fromkeys(job_ids, SKIPPED_OUTCOME)
    lease = _LeaseKeeper(sessions, token, {job_id for key in keys for job_id in key.pending})
    for key in keys:
        _refresh(sessions, vault, openai_client, key, lease, budget, stats)
    if not lease.ours:
        return outcomes
    # What was learned before a failure is stored either way.
    with session_scope(sessions) as session:
        now = database_now(session)
        jobs = _hold(session, lease.ours, token)
        rows: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in session.execute(_BATCH_ROWS, {"job_ids": [job.id for job in jobs]}):
            rows[row.job_id][row.batch_id] = row._asdict()
        key_of = {job_id: key for key in keys for job_id in key.pending}
        changed = []
        for job in jobs:
            key = key_of[job.id]
            changed += _apply(job, rows[job.id], key.observed, now)
            outcomes[job.id] = _conclude(job, rows[job.id], key, now)
        if keep_starts:
            _keep_for_start(jobs, outcomes, token, now)
        if changed:
            session.execute(_SAVE_BATCH, changed)
        _save(session, jobs)
        for key in keys:
            _remember(session, key, now)
        if any(job.next_check_at is not None and job.next_check_at <= now and job.lease_token is None for job in jobs):
            # A job that moved to `triggering` for beat to hand out, or that a webhook hinted again while
            # OpenAI answered.
            announce_due(session)
    return outcomes


def _keep_for_start(jobs: list[_HeldJob], outcomes: dict[int, CheckOutcome], token: str, now: datetime) -> None:
    finished = [job for job in jobs if outcomes[job.id].outcome is Outcome.ALL_FINISHED]
    if len(finished) > STARTS_KEPT_AT_MOST:
        return
    for job in finished:
        leases.keep(job, token, now + leases.RUN_LEASE)
        outcomes[job.id] = CheckOutcome(ran=True, outcome=Outcome.ALL_FINISHED, starts_here=True)


def _read_work(session: Session, job_ids: Collection[int], now: datetime) -> list[_KeyWork]:
    keys: dict[int, _KeyWork] = {}
    for row in session.execute(_WORK, {"job_ids": list(job_ids)}):
        key = keys.get(row.key_id)
        if key is None:
            paused = row.blocked_until if row.blocked_until is not None and row.blocked_until > now else None
            key = keys[row.key_id] = _KeyWork(row.key_id, row.name, row.encrypted_value, bool(row.sweep_mode), paused)
        pending = key.pending.setdefault(row.id, [])
        key.hints[row.id] = row.hinted_at
        if row.batch_id is not None and row.status not in BATCH_TERMINAL_STATUSES:
            pending.append(row.batch_id)
            key.created_at[row.batch_id] = row.openai_created_at
    return list(keys.values())


class _LeaseKeeper:
    """Renews the group's leases as time passes during the calls; knows which jobs are still ours.

    During a sweep it also hands back the jobs a webhook hinted since beat claimed them, before the first page
    and then now and then: a sweep of a whole window can take many seconds, and a hinted job is checked at
    once on its own instead.
    """

    def __init__(self, sessions: sessionmaker[Session], token: str, job_ids: set[int]) -> None:
        self.sessions = sessions
        self.token = token
        self.ours = job_ids
        self._renewed_at = time.monotonic()
        self._looked_at: float | None = None

    def keep(self, *, sweeping: bool = False) -> bool:
        """Renew if a third of the lease has passed; False once no job of the group is ours any more."""
        if time.monotonic() - self._renewed_at > leases.RUN_LEASE.total_seconds() / 3:
            with session_scope(self.sessions) as session:
                now = database_now(session)
                self.ours = leases.renew(session, self.ours, self.token, now=now, status=JobStatus.ACTIVE.value)
            self._renewed_at = time.monotonic()
        if sweeping and (
            self._looked_at is None or time.monotonic() - self._looked_at > HINTS_LOOKED_FOR_EVERY_SECONDS
        ):
            self._hand_back_hinted()
        return bool(self.ours)

    def _hand_back_hinted(self) -> None:
        with session_scope(self.sessions) as session:
            handed = leases.hand_back_hinted(session, self.token)
            if handed:
                announce_due(session)
        self.ours -= handed
        self._looked_at = time.monotonic()


class _Spender:
    """Takes requests from a key's budget a chunk at a time, renewing leases on the way."""

    def __init__(self, sessions: sessionmaker[Session], key: _KeyWork, lease: _LeaseKeeper, budget: RequestBudget):
        self.sessions, self.key, self.lease, self.budget = sessions, key, lease, budget
        self._granted = 0

    def spend(self, planned: int = 1, *, sweeping: bool = False) -> bool:
        if not self.lease.keep(sweeping=sweeping):
            return False
        if self._granted == 0:
            if self.budget.per_minute is None and self.key.blocked_until is None:
                self._granted = planned
            else:
                with session_scope(self.sessions) as session:
                    now = database_now(session)
                    self._granted = self.budget.take(session, self.key.key_id, planned, now)
            if self._granted == 0:
                return False
        self._granted -= 1
        return True


def _refresh(
    sessions: sessionmaker[Session],
    vault: Vault,
    openai_client: OpenAIClientFactory,
    key: _KeyWork,
    lease: _LeaseKeeper,
    budget: RequestBudget,
    stats: RefreshStats,
) -> None:
    """Ask OpenAI about the key's pending batches: a sweep when the key is swept and enough are wanted, then
    one GET for each batch still unknown. Records observations, failures and what the budget did not allow."""
    wanted = key.wanted()
    if not wanted:
        return
    # The plaintext key lives only for this call.
    client = openai_client(vault.decrypt(key.encrypted_key, secret_name=key.secret))
    spender = _Spender(sessions, key, lease, budget)
    if key.sweep_mode and not key.all_hinted() and len(wanted) >= SWEEP_MIN_WANTED:
        _sweep(client, key, spender, stats)
        # Jobs handed back during the sweep are no longer ours: their batches are not asked for here.
        key.pending = {job_id: batch_ids for job_id, batch_ids in key.pending.items() if job_id in lease.ours}
    if not _stopped_by(key):
        _single_gets(client, key, spender, stats)
    for batch_id in key.unasked():
        key.over_budget.add(batch_id)


def _sweep(client: OpenAIBatchClient, key: _KeyWork, spender: _Spender, stats: RefreshStats) -> None:
    wanted = key.wanted()
    created = [key.created_at.get(batch_id) for batch_id in wanted]
    oldest = None if any(value is None for value in created) else min(created)  # type: ignore[type-var]
    started = time.monotonic()
    result = sweep(
        lambda after: client.list_batches(after=after), wanted, oldest, spend=lambda: spender.spend(sweeping=True)
    )
    key.sweep, key.sweep_seconds = result, time.monotonic() - started
    key.observed.update(result.found)
    stats.requests["list"] += result.pages
    stats.refreshed["sweep"] += len(result.found)
    if result.failure is not None:
        _note_failure(key, result.failure, wanted)


def _stopped_by(key: _KeyWork) -> bool:
    """A failure that ends every further call with this key: it was rejected, or OpenAI asked us to wait."""
    return any(
        isinstance(error, PermanentError) and error.status in AUTH_STATUSES for error in key.failures.values()
    ) or any(isinstance(error, TransientError) and error.status == 429 for error in key.failures.values())


def _single_gets(client: OpenAIBatchClient, key: _KeyWork, spender: _Spender, stats: RefreshStats) -> None:
    """One GET per batch not yet known, up to GETS_IN_FLIGHT at a time; stops taking more at a rejected key,
    a 429, a lost lease or an empty budget. Answers to requests already in flight are still recorded."""
    unasked = key.unasked()
    queue = iter(enumerate(unasked))
    lock = threading.Lock()
    stopped = False

    def take() -> str | None:
        nonlocal stopped
        with lock:
            position, batch_id = next(queue, (None, None))
            if stopped or batch_id is None or _stopped_by(key):
                return None
            if not spender.spend(min(BUDGET_CHUNK, len(unasked) - position)):
                stopped = True
                return None
            stats.requests["get"] += 1
            key.asking.add(batch_id)
            return batch_id

    def ask(batch_id: str) -> None:
        answer = _ask(client, batch_id)
        with lock:
            key.asking.discard(batch_id)
            _record_answer(key, batch_id, answer, stats)

    def ask_until_done() -> None:
        nonlocal stopped
        try:
            while (batch_id := take()) is not None:
                ask(batch_id)
        except BaseException:
            stopped = True
            raise

    if any(hint is not None for hint in key.hints.values()):
        # A webhook said a batch ended and someone waits for its Keboola job: no GET waits for another.
        run_in_parallel(ask_until_done, min(GETS_IN_FLIGHT, len(unasked)))
        return
    first = take()
    if first is None:
        return
    # Only the answer is timed: taking from the budget may write to the database, which says nothing of OpenAI.
    started = time.monotonic()
    ask(first)
    slow = time.monotonic() - started > SLOW_ANSWER_SECONDS
    run_in_parallel(ask_until_done, min(GETS_IN_FLIGHT, len(unasked) - 1) if slow else 1)


def _ask(client: OpenAIBatchClient, batch_id: str) -> Batch | ServiceError:
    try:
        with log_context(batch_id=batch_id):
            return client.get_batch(batch_id)
    except ServiceError as error:
        return error


def _record_answer(key: _KeyWork, batch_id: str, answer: Batch | ServiceError, stats: RefreshStats) -> None:
    if isinstance(answer, Batch):
        key.observed[batch_id] = answer
        stats.refreshed["single"] += 1
    elif isinstance(answer, PermanentError) and answer.status == 404:
        key.observed[batch_id] = None
    else:
        _note_failure(key, answer, [batch_id])


def _note_failure(key: _KeyWork, error: ServiceError, batch_ids: list[str]) -> None:
    """A failure for these batches; a rejected key or a 429 also stands for every batch not yet asked."""
    for batch_id in batch_ids:
        key.failures.setdefault(batch_id, error)
    if isinstance(error, TransientError) and error.status == 429:
        key.pause_seconds = error.retry_after if error.retry_after is not None else DEFAULT_429_PAUSE_SECONDS
    if _stopped_by(key):
        for batch_id in key.unasked():
            key.failures[batch_id] = error


def _remember(session: Session, key: _KeyWork, now: datetime) -> None:
    """What this check taught the fleet about the key: how the sweep went, and a 429's pause."""
    if key.sweep is not None:
        record_sweep(session, key.key_id, key.sweep, key.sweep_seconds, now)
    if key.pause_seconds is not None:
        pause_key(session, key.key_id, now + timedelta(seconds=key.pause_seconds))


def _conclude(job: _HeldJob, rows: dict[str, dict[str, Any]], key: _KeyWork, now: datetime) -> CheckOutcome:
    outcome = _conclude_check(job, rows, key, now)
    # A retry, or a check the budget cut short, has not yet asked about every batch: the hint stays.
    if outcome.outcome not in (Outcome.TRANSIENT_ERROR, Outcome.OVER_BUDGET):
        _settle_hint(job, key, now)
    return outcome


def _settle_hint(job: _HeldJob, key: _KeyWork, now: datetime) -> None:
    """The check has answered the hint it read. A hint that came while it was asking OpenAI may be about a
    batch that finished after OpenAI answered: that one stays, and the job is due again at once."""
    if job.hinted_at is None:
        return
    if job.status == JobStatus.ACTIVE and job.hinted_at != key.hints.get(job.id):
        job.next_check_at = now
        return
    job.hinted_at = None


def _conclude_check(job: _HeldJob, rows: dict[str, dict[str, Any]], key: _KeyWork, now: datetime) -> CheckOutcome:
    pending = key.pending.get(job.id, [])
    failure = next((key.failures[batch_id] for batch_id in pending if batch_id in key.failures), None)
    job.last_check_at = now
    if isinstance(failure, TransientError):
        # The lease stays: the caller either retries under it or gives up and releases it.
        return CheckOutcome(ran=True, outcome=Outcome.TRANSIENT_ERROR, failure=failure)
    if job.status != JobStatus.ACTIVE:
        # Paused (or edited into another state) while we were asking OpenAI: never trigger.
        leases.release(job)
        return CheckOutcome(ran=True)
    if isinstance(failure, PermanentError):
        if failure.status in AUTH_STATUSES:
            _fail_on_rejected_key(job, key.secret, failure)
        else:
            _record_failure(job, f"OpenAI refused the check: {failure}")
        leases.release(job)
        return CheckOutcome(ran=True, outcome=Outcome.REFUSED)
    leases.release(job)
    _keep_half_an_interval_away(job, now)
    if any(batch_id in key.over_budget for batch_id in pending):
        # The budget (or a fleet-wide pause after a 429) left some batches unasked: they are asked at the
        # job's next slot, which the claim has already planned.
        return CheckOutcome(ran=True, outcome=Outcome.OVER_BUDGET)
    job.last_success_at = now
    if job.last_error is not None:
        job.record("recovered", "Checks succeed again")
        job.last_error = None
    if all(row["status"] in BATCH_TERMINAL_STATUSES for row in rows.values()):
        # The compare-and-set: only the check holding the lease of an active job gets here. Its Keboola job
        # is started by this check's task (see `run_checks`), or else by the trigger task beat hands the job
        # to at its next tick, under a new lease and within the trigger queue's cap.
        job.status = JobStatus.TRIGGERING.value
        job.next_check_at = now
        job.record("triggering", "Every batch has finished; starting the Keboola job")
        return CheckOutcome(ran=True, outcome=Outcome.ALL_FINISHED)
    return CheckOutcome(ran=True)


def _keep_half_an_interval_away(job: _HeldJob, now: datetime) -> None:
    """The claim planned the next slot when it handed the job out; a check that ran much later (queued
    behind a catch-up after an outage) moves it on along the job's own grid, so two checks are never less
    than half an interval apart."""
    if job.next_check_at is not None and job.next_check_at < now + timedelta(seconds=job.poll_interval_seconds / 2):
        job.next_check_at = plan_next_check(job.next_check_at, job.poll_interval_seconds, now)


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


def defer_check(sessions: sessionmaker[Session], job_id: int, token: str, wait: float, message: str) -> None:
    """OpenAI asked for a wait too long for the broker: record it and plan the next check after it."""
    with session_scope(sessions) as session:
        until = database_now(session) + timedelta(seconds=wait)
        for job in _hold(session, [job_id], token):
            _record_failure(job, message)
            if job.status == JobStatus.ACTIVE:
                job.next_check_at = max(job.next_check_at or until, until)
            leases.release(job)
            _save(session, [job])


ON_TRANSIENT_FAILURE = TransientFailureRules(JobStatus.ACTIVE, give_up=give_up_check, defer=defer_check)
