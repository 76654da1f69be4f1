"""The dispatcher's half of the engine: find due jobs in the database and claim them.

The database is the source of truth and broker messages are only hints. A due job is claimed by an
atomic, guarded UPDATE, so two dispatchers never hand out the same job; a claim moves `next_check_at`
along the job's own grid (no drift, missed slots skipped) and sets a lease, so a lost message delays the
job by at most one interval, never loses it.

On PostgreSQL one statement claims a whole batch (`UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)
RETURNING`), with the grid arithmetic in SQL: beat stays cheap at thousands of claims a second. SQLite
(the embedded single-machine default) has no row locks: there each job is claimed by its own guarded
UPDATE, with the same grid rule computed by `plan_next_check`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, Uuid, bindparam, case, cast, extract, func, select, update
from sqlalchemy.orm import Session

from teckochecker.db import UTCDateTime
from teckochecker.engine import leases
from teckochecker.models import JobStatus, PollingJob

CHECK = "check"
TRIGGER = "trigger"
# A trigger message waits in its own, short queue; this covers that wait and the Keboola call.
TRIGGER_DISPATCH_LEASE = timedelta(seconds=120)
DISPATCH_BATCH_LIMIT = 1000
# Checks of jobs that share an OpenAI key go out together, up to this many per task and lease token: a
# task costs a worker about as much CPU as the check itself, and a group shares its two transactions.
# The group's calls to OpenAI are made one after another, so the last job of a group is checked up to
# (size - 1) calls later than its slot.
CHECK_GROUP_SIZE = 8

_jobs = PollingJob.__table__
_now = bindparam("now", type_=UTCDateTime())
_STATUS_OF = {CHECK: JobStatus.ACTIVE.value, TRIGGER: JobStatus.TRIGGERING.value}
_DUE = (
    _jobs.c.status.in_(bindparam("statuses", expanding=True)),
    _jobs.c.next_check_at <= _now,
    leases.is_free(_now),
)
_CANDIDATES = (
    select(_jobs.c.id, _jobs.c.status, _jobs.c.next_check_at, _jobs.c.poll_interval_seconds, _jobs.c.openai_secret_id)
    .where(*_DUE)
    .order_by(_jobs.c.next_check_at)
    .limit(bindparam("limit"))
)
# SQLite: one guarded UPDATE per job; the guard fails if another dispatcher claimed the job meanwhile.
_CLAIM_ONE = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id"), _jobs.c.next_check_at == bindparam("planned", type_=UTCDateTime()), *_DUE)
    .values(
        next_check_at=bindparam("new_next_check_at", type_=UTCDateTime()),
        **leases.grant(bindparam("new_lease_token"), bindparam("new_lease_until", type_=UTCDateTime())),
    )
    .returning(_jobs.c.id)
)


def _seconds(amount):
    return func.make_interval(0, 0, 0, 0, 0, 0, amount)


def _claim_many_statement():
    """PostgreSQL: lock up to `limit` due rows (skipping rows another dispatcher holds) and claim them at once.

    Checks of one key are numbered into groups of CHECK_GROUP_SIZE; a group's token is derived from the
    claim's own random id, the key and the group number, so every row of a group gets the same token.
    """
    locked = _CANDIDATES.with_for_update(skip_locked=True).subquery("locked")
    # PostgreSQL refuses window functions beside FOR UPDATE, hence the second level.
    position = func.row_number().over(
        partition_by=(locked.c.openai_secret_id, locked.c.status), order_by=locked.c.next_check_at
    )
    due = select(locked, ((position - 1) // CHECK_GROUP_SIZE).label("group_number")).subquery("due")
    claim = bindparam("claim", type_=String)
    group_token = func.md5(func.concat(claim, "/", due.c.openai_secret_id, "/", due.c.group_number))
    is_check = _jobs.c.status == JobStatus.ACTIVE.value
    interval = _jobs.c.poll_interval_seconds
    # The first slot after now on the grid planned + k × interval: the same rule as plan_next_check.
    steps = func.floor(extract("epoch", _now - due.c.next_check_at) / interval) + 1
    return (
        update(_jobs)
        .where(_jobs.c.id == due.c.id)
        .values(
            next_check_at=case((is_check, due.c.next_check_at + _seconds(steps * interval)), else_=due.c.next_check_at),
            **leases.grant(
                case((is_check, cast(cast(group_token, Uuid), String)), else_=cast(func.gen_random_uuid(), String)),
                _now + _seconds(case((is_check, interval), else_=TRIGGER_DISPATCH_LEASE.total_seconds())),
            ),
        )
        .returning(_jobs.c.id, _jobs.c.status, leases.TOKEN_COLUMN, due.c.next_check_at, interval)
    )


_CLAIM_MANY = _claim_many_statement()


@dataclass(frozen=True)
class Claim:
    """One job handed out: what to do with it, under which lease token, and when its lease ends."""

    job_id: int
    action: str
    lease_token: str
    planned_at: datetime
    expires_in: float


@dataclass(frozen=True)
class Dispatch:
    """One task to send: the jobs that share a lease token (the task id) and when the message goes stale."""

    action: str
    lease_token: str
    job_ids: tuple[int, ...]
    expires_in: float


def group_claims(claims: list[Claim]) -> list[Dispatch]:
    """One task per lease token, in the order of the claims."""
    groups: dict[str, list[Claim]] = {}
    for claim in claims:
        groups.setdefault(claim.lease_token, []).append(claim)
    return [
        Dispatch(group[0].action, token, tuple(claim.job_id for claim in group), min(c.expires_in for c in group))
        for token, group in groups.items()
    ]


def plan_next_check(planned: datetime, interval_seconds: int, now: datetime) -> datetime:
    """The first slot after `now` on the grid planned + k × interval: no drift, missed slots skipped."""
    if planned > now:
        return planned
    elapsed = (now - planned).total_seconds()
    steps = math.floor(elapsed / interval_seconds) + 1
    return planned + timedelta(seconds=steps * interval_seconds)


def _claim(job_id: int, status: str, token: str, planned: datetime, interval: int) -> Claim:
    if status == JobStatus.ACTIVE:
        return Claim(job_id, CHECK, token, planned, float(interval))
    return Claim(job_id, TRIGGER, token, planned, TRIGGER_DISPATCH_LEASE.total_seconds())


def _group_tokens(candidates: list[Any]) -> list[str]:
    """A token per candidate: checks of one key share one per CHECK_GROUP_SIZE, as the PostgreSQL claim does."""
    tokens = []
    groups: dict[int, tuple[str, int]] = {}
    for candidate in candidates:
        if candidate.status != JobStatus.ACTIVE:
            tokens.append(leases.new_token())
            continue
        token, size = groups.get(candidate.openai_secret_id, ("", CHECK_GROUP_SIZE))
        if size == CHECK_GROUP_SIZE:
            token, size = leases.new_token(), 0
        groups[candidate.openai_secret_id] = (token, size + 1)
        tokens.append(token)
    return tokens


def claim_due_jobs(
    session: Session, *, now: datetime, limit: int = DISPATCH_BATCH_LIMIT, actions: Collection[str] = (CHECK, TRIGGER)
) -> list[Claim]:
    """Claim up to `limit` due jobs for `actions`, oldest plan first. The caller commits, then sends the tasks."""
    parameters = {"now": now, "limit": limit, "statuses": [_STATUS_OF[action] for action in actions]}
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(_CLAIM_MANY, {**parameters, "claim": leases.new_token()}).all()
        return sorted((_claim(*row) for row in rows), key=lambda claim: claim.planned_at)
    claims = []
    candidates = session.execute(_CANDIDATES, parameters).all()
    for candidate, token in zip(candidates, _group_tokens(candidates), strict=True):
        claim = _claim(candidate.id, candidate.status, token, candidate.next_check_at, candidate.poll_interval_seconds)
        planned = claim.planned_at
        values = {
            **parameters,
            "job_id": claim.job_id,
            "planned": planned,
            "new_next_check_at": plan_next_check(planned, candidate.poll_interval_seconds, now)
            if claim.action == CHECK
            else planned,
            "new_lease_token": token,
            "new_lease_until": now + timedelta(seconds=claim.expires_in),
        }
        if session.execute(_CLAIM_ONE, values).first() is not None:
            claims.append(claim)
    return claims
