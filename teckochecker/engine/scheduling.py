"""The dispatcher's half of the engine: find due jobs in the database and claim them.

The database is the source of truth and broker messages are only hints. A due job is claimed by an
atomic, guarded UPDATE, so two dispatchers never hand out the same job; a claim moves `next_check_at`
along the job's own grid (no drift) and sets a lease, so a lost message delays the job by at most one
interval, never loses it. Time is the database's (`db.database_now`), so dispatchers and workers whose
clocks disagree still agree on what is due and who holds it.

Three actions: check an active job; start the Keboola job of a job whose batches have all finished; follow
a Keboola job that runs. Each is handed out in groups that share one lease token (one task): checks of one
OpenAI key up to CHECK_GROUP_SIZE, trigger runs of one Keboola token up to START_GROUP_SIZE and
FOLLOW_GROUP_SIZE.

A key whose batches are refreshed by list sweeps (see `sweeping`) is handed out differently: once one of
its jobs is due within the sweep's lead time, every job of that key due within SWEEP_WINDOW of an interval
is claimed at once, as one group, so one sweep checks them all. Those jobs are checked a little early,
never late, and keep their own grids. A job checked less than half an interval ago (late, after an outage)
is not taken ahead: a sweep never checks a job twice within half an interval. Once due, it waits for its
key's next sweep, which starts within half an interval of that check, rather than start a small sweep of
its own. A job that a webhook hinted at, or that a user asked to check now (`hinted_at`), is the exception:
it is due at once and checked in an ordinary group, so a finished batch is seen in a second rather than
after a sweep of its key's whole window.

On PostgreSQL one statement claims a whole batch (`… FOR UPDATE SKIP LOCKED`), with the grid arithmetic in
SQL: beat stays cheap at thousands of claims a second. SQLite (the embedded single-machine default) has no
row locks: there each job is claimed by its own guarded UPDATE, with the same rules computed in Python.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, Float, Integer, String, bindparam, func, select, text, update
from sqlalchemy.orm import Session

from teckochecker.db import UTCDateTime
from teckochecker.engine import leases
from teckochecker.models import JobStatus, OpenAIKeyState, PollingJob

CHECK = "check"
START = "start"
FOLLOW = "follow"
ACTIONS = (CHECK, START, FOLLOW)
# A start message waits in the short trigger queue; this covers that wait and the Keboola calls of a group.
START_LEASE = timedelta(seconds=120)
FOLLOW_LEASE = timedelta(seconds=60)
DISPATCH_BATCH_LIMIT = 5000
# Checks of jobs that share an OpenAI key go out together, up to this many per task and lease token: a
# task costs a worker about as much CPU as the check itself, and a group shares its transactions. The
# group's single GETs are made one after another, so its last job is checked up to (size - 1) calls late.
CHECK_GROUP_SIZE = 8
# A sweep checks every job of its key in the window at once: its pages cover the key's whole list anyway,
# so a window cut in two would be swept twice. Beyond this many (within the drivers' bind-parameter
# limits) a window does go out as several sweeps.
SWEEP_GROUP_SIZE = 20_000
# How far ahead of a job's slot a sweep may check it, as a share of the job's interval. Sweeping a key
# about 1/SWEEP_WINDOW times per interval keeps its requests near 1/25 of its watched batches.
SWEEP_WINDOW = 0.25
START_GROUP_SIZE = 16
FOLLOW_GROUP_SIZE = 50
GROUP_SIZES = {CHECK: CHECK_GROUP_SIZE, START: START_GROUP_SIZE, FOLLOW: FOLLOW_GROUP_SIZE}
LEASES = {START: START_LEASE, FOLLOW: FOLLOW_LEASE}

_jobs = PollingJob.__table__
_keys = OpenAIKeyState.__table__

# PostgreSQL: one statement locks up to `limit` claimable rows (skipping rows another dispatcher holds),
# numbers them into groups, and claims them. A group's token is derived from the claim's own random id,
# the action, the key and the group number, so every row of a group gets the same token. The next slot of
# a check is the first slot on its grid at least half an interval after now, as in `plan_next_check`.
# Rows are found in two index range scans, so a claim reads what it claims, not every job: `due` (jobs whose
# slot has come) and `ahead` (the jobs a sweep starting now checks before their slots, read only for the
# keys in `sweeping` that start a sweep now: those with a job due within the sweep's lead that the sweep may
# take, so a key whose only job due soon was checked moments ago is not scanned on every claim). A swept key's
# due jobs that were checked moments ago (late: their check waited in a queue, or their sweep ran long) wait
# for the key's next sweep rather than start one of their own: started for them, sweeps came once a tick,
# each wanting a tick's worth of jobs, too few to pay for their pages, and a key under load fell back from
# sweeps to single GETs. They wait at most until half an interval has passed since their check, when they
# start the sweep themselves.
_CLAIM_MANY = (
    text(
        """
WITH sweeping AS MATERIALIZED (
    SELECT k.secret_id, k.sweep_lead_seconds AS lead, due_soon.found IS NOT NULL AS starts
    FROM openai_key_states AS k
    LEFT JOIN LATERAL (
        SELECT 1 AS found FROM polling_jobs AS d
        WHERE d.openai_secret_id = k.secret_id AND d.status = 'active'
          AND d.next_check_at <= :now + make_interval(secs => k.sweep_lead_seconds)
          AND d.hinted_at IS NULL
          AND (d.lease_until IS NULL OR d.lease_until <= :now)
          AND (d.last_check_at IS NULL
               OR d.last_check_at <= :now - make_interval(secs => d.poll_interval_seconds * :half))
        ORDER BY d.next_check_at
        LIMIT 1) AS due_soon ON true
    WHERE k.sweep_mode AND :checks
),
due AS (
    SELECT j.id, j.next_check_at, j.poll_interval_seconds,
           CASE WHEN j.status = 'active' THEN 'check'
                WHEN j.keboola_job_id IS NULL THEN 'start' ELSE 'follow' END AS action,
           CASE WHEN j.status = 'active' THEN j.openai_secret_id ELSE j.keboola_secret_id END AS group_key,
           s.secret_id IS NOT NULL AS swept
    FROM polling_jobs AS j
    LEFT JOIN sweeping AS s ON s.secret_id = j.openai_secret_id AND j.status = 'active' AND j.hinted_at IS NULL
    WHERE j.next_check_at <= :now
      AND (j.lease_until IS NULL OR j.lease_until <= :now)
      AND ((j.status = 'active' AND :checks
            AND (CASE WHEN s.secret_id IS NULL THEN :plain WHEN s.starts THEN :swept ELSE false END))
           OR (j.status = 'triggering' AND j.keboola_job_id IS NULL AND :starts)
           OR (j.status = 'triggering' AND j.keboola_job_id IS NOT NULL AND :follows))
    ORDER BY j.next_check_at
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED
),
ahead AS (
    SELECT a.* FROM sweeping AS s
    CROSS JOIN LATERAL (
        SELECT j.id, j.next_check_at, j.poll_interval_seconds, 'check' AS action, j.openai_secret_id AS group_key,
               true AS swept
        FROM polling_jobs AS j
        WHERE :swept AND s.starts
          AND j.openai_secret_id = s.secret_id AND j.status = 'active'
          AND j.next_check_at > :now
          AND j.next_check_at <= :now + make_interval(secs => s.lead + j.poll_interval_seconds * :window)
          AND j.hinted_at IS NULL
          AND (j.lease_until IS NULL OR j.lease_until <= :now)
          AND (j.last_check_at IS NULL
               OR j.last_check_at <= :now - make_interval(secs => j.poll_interval_seconds * :half))
        ORDER BY j.next_check_at
        LIMIT GREATEST(0, :limit - (SELECT count(*) FROM due))
        FOR UPDATE OF j SKIP LOCKED) AS a
),
locked AS (
    SELECT * FROM due
    UNION ALL
    SELECT * FROM ahead
),
grouped AS (
    SELECT locked.*,
           (row_number() OVER (PARTITION BY action, group_key, swept ORDER BY next_check_at) - 1)
           / CASE WHEN swept THEN :sweep_group ELSE (CASE action WHEN 'check' THEN :check_group
                                                                WHEN 'start' THEN :start_group
                                                                ELSE :follow_group END) END AS group_number
    FROM locked
)
UPDATE polling_jobs AS j
SET next_check_at = CASE WHEN g.action = 'check' THEN
        g.next_check_at + make_interval(secs => g.poll_interval_seconds * GREATEST(1, CEIL(
            (EXTRACT(EPOCH FROM :now - g.next_check_at) + g.poll_interval_seconds / 2.0) / g.poll_interval_seconds)))
        ELSE g.next_check_at END,
    lease_token = md5(:claim || '/' || g.action || '/' || g.group_key || '/' || g.group_number)::uuid::text,
    lease_until = :now + make_interval(secs => CASE g.action WHEN 'check' THEN g.poll_interval_seconds
                                                             WHEN 'start' THEN :start_lease
                                                             ELSE :follow_lease END)
FROM grouped AS g
WHERE j.id = g.id
RETURNING j.id, g.action, j.lease_token, g.next_check_at, g.poll_interval_seconds
"""
    )
    .bindparams(
        bindparam("now", type_=UTCDateTime()),
        bindparam("checks", type_=Boolean()),
        bindparam("plain", type_=Boolean()),
        bindparam("swept", type_=Boolean()),
        bindparam("starts", type_=Boolean()),
        bindparam("follows", type_=Boolean()),
        bindparam("window", type_=Float()),
        bindparam("half", type_=Float()),
        bindparam("claim", type_=String()),
    )
    .columns(id=Integer, action=String, lease_token=String, next_check_at=UTCDateTime(), poll_interval_seconds=Integer)
)

# How PostgreSQL plans the claim, for its transaction only. The claim is prepared (psycopg prepares a statement
# it has run five times), and a generic plan cannot know how few jobs `:now` selects: it scanned and hashed
# every job on each claim. Even planned for its parameters, the row estimates of the small, often unanalyzed
# key states made it hash the whole jobs table to update a handful of rows. A claim touches only the rows it
# claims, so it is planned as index lookups. Those plans' cost estimates (the sweep's large limit times
# unanalyzed rows) pass PostgreSQL's JIT threshold, and it compiled the claim to machine code first, up to
# 177 ms to claim nothing, so JIT is off for it. In a burst of webhooks, when beat claims many times a second,
# a claim at 10,000 jobs took 18 ms on average, and now takes about 1 ms.
_PLAN_AS_INDEX_LOOKUPS = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config('enable_hashjoin', 'off', true), "
    "set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true)"
)

# SQLite: the candidates, then one guarded UPDATE per job; the guard fails if another dispatcher claimed it.
_CANDIDATES = (
    select(
        _jobs.c.id,
        _jobs.c.status,
        _jobs.c.keboola_job_id,
        _jobs.c.next_check_at,
        _jobs.c.poll_interval_seconds,
        _jobs.c.openai_secret_id,
        _jobs.c.keboola_secret_id,
        _jobs.c.last_check_at,
        _jobs.c.hinted_at,
    )
    .where(
        _jobs.c.status.in_(bindparam("statuses", expanding=True)),
        _jobs.c.next_check_at <= bindparam("horizon", type_=UTCDateTime()),
        leases.is_free(bindparam("now", type_=UTCDateTime())),
    )
    .order_by(_jobs.c.next_check_at)
    .limit(bindparam("limit"))
)
_SWEEPING_KEYS = select(_keys.c.secret_id, _keys.c.sweep_lead_seconds).where(_keys.c.sweep_mode.is_(True))
_CLAIM_ONE = (
    update(_jobs)
    .where(
        _jobs.c.id == bindparam("job_id"),
        _jobs.c.next_check_at == bindparam("planned", type_=UTCDateTime()),
        leases.is_free(bindparam("now", type_=UTCDateTime())),
    )
    .values(
        next_check_at=bindparam("new_next_check_at", type_=UTCDateTime()),
        **leases.grant(bindparam("new_lease_token"), bindparam("new_lease_until", type_=UTCDateTime())),
    )
    .returning(_jobs.c.id)
)


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
    """The first slot on the grid planned + k × interval (k ≥ 1) at least half an interval after `now`.

    No drift: the grid is the job's own. A check that runs late (after an outage, say) is not followed by
    another a moment later; missed slots are skipped, not replayed. A check that a sweep runs early keeps
    its grid too: its next slot is simply the one after.
    """
    behind = (now - planned).total_seconds() + interval_seconds / 2
    steps = max(1, math.ceil(behind / interval_seconds))
    return planned + timedelta(seconds=steps * interval_seconds)


def _claim_from_row(job_id: int, action: str, token: str, planned: datetime, interval: int) -> Claim:
    lease = float(interval) if action == CHECK else LEASES[action].total_seconds()
    return Claim(job_id, action, token, planned, lease)


def claim_due_jobs(
    session: Session,
    *,
    now: datetime,
    limit: int = DISPATCH_BATCH_LIMIT,
    actions: Collection[str] = ACTIONS,
    sweeps: bool | None = None,
) -> list[Claim]:
    """Claim up to `limit` jobs for `actions`, oldest plan first. The caller commits, then sends the tasks.

    `now` is the database's time (`db.database_now`), read in the caller's transaction. `sweeps` narrows
    the checks: True claims only those a sweep starting now takes (so that a sweep's group is never cut by a
    limit meant for ordinary checks), False only the others, None both.
    """
    if session.get_bind().dialect.name == "postgresql":
        parameters = {
            "now": now,
            "limit": limit,
            "checks": CHECK in actions,
            "plain": sweeps is not True,
            "swept": sweeps is not False,
            "starts": START in actions,
            "follows": FOLLOW in actions,
            "window": SWEEP_WINDOW,
            "half": 0.5,
            "claim": leases.new_token(),
            "sweep_group": SWEEP_GROUP_SIZE,
            "check_group": CHECK_GROUP_SIZE,
            "start_group": START_GROUP_SIZE,
            "follow_group": FOLLOW_GROUP_SIZE,
            "start_lease": START_LEASE.total_seconds(),
            "follow_lease": FOLLOW_LEASE.total_seconds(),
        }
        session.execute(_PLAN_AS_INDEX_LOOKUPS)
        rows = session.execute(_CLAIM_MANY, parameters).all()
        return sorted((_claim_from_row(*row) for row in rows), key=lambda claim: claim.planned_at)
    return _claim_one_by_one(session, now, limit, actions, sweeps)


def _action_of(candidate: Any) -> str:
    if candidate.status == JobStatus.ACTIVE:
        return CHECK
    return START if candidate.keboola_job_id is None else FOLLOW


def _sweep_windows(session: Session, now: datetime) -> dict[int, float | None]:
    """Every sweeping key, by id: its lead if it has a job due within the lead that a sweep may take (a sweep
    starts now), None if not (its due jobs wait for its next sweep). SQLite."""
    windows: dict[int, float | None] = {}
    for key_id, lead in session.execute(_SWEEPING_KEYS):
        due_soon = (
            select(_jobs.c.next_check_at, _jobs.c.last_check_at, _jobs.c.poll_interval_seconds)
            .where(
                _jobs.c.openai_secret_id == key_id,
                _jobs.c.status == JobStatus.ACTIVE.value,
                _jobs.c.next_check_at <= now + timedelta(seconds=lead),
                _jobs.c.hinted_at.is_(None),
                leases.is_free(now),
            )
            .order_by(_jobs.c.next_check_at)
        )
        starts = any(not _checked_recently(job, now) for job in session.execute(due_soon))
        windows[key_id] = lead if starts else None
    return windows


def _swept(candidate: Any, windows: dict[int, float | None]) -> bool:
    """Whether this candidate is checked by its key's sweep (now or, while it waits, the next one)."""
    return (
        candidate.status == JobStatus.ACTIVE and candidate.hinted_at is None and candidate.openai_secret_id in windows
    )


def _sweep_lead(candidate: Any, windows: dict[int, float | None]) -> float | None:
    """The lead of the sweep starting now that checks this candidate, or None (checked on its own, or
    waiting for its key's next sweep)."""
    return windows[candidate.openai_secret_id] if _swept(candidate, windows) else None


def _claimable(candidates: Iterable[Any], now: datetime, windows: dict[int, float | None]) -> list[Any]:
    kept = []
    for candidate in candidates:
        swept = _swept(candidate, windows)
        lead = windows[candidate.openai_secret_id] if swept else None
        if swept and lead is None:
            continue  # it waits for its key's next sweep
        horizon = (
            now if lead is None else now + timedelta(seconds=lead + candidate.poll_interval_seconds * SWEEP_WINDOW)
        )
        if candidate.next_check_at <= now or (
            candidate.next_check_at <= horizon and not _checked_recently(candidate, now)
        ):
            kept.append(candidate)
    return kept


def _checked_recently(candidate: Any, now: datetime) -> bool:
    """Checked less than half an interval ago: a sweep must not take it ahead of its slot yet."""
    last = candidate.last_check_at
    return last is not None and now - last < timedelta(seconds=candidate.poll_interval_seconds / 2)


def _wanted(candidate: Any, windows: dict[int, float | None], sweeps: bool | None) -> bool:
    return sweeps is None or (_sweep_lead(candidate, windows) is not None) == sweeps


def _group_tokens(candidates: list[Any], windows: dict[int, float | None]) -> list[str]:
    """A token per candidate, grouped by action and key up to each action's group size, as on PostgreSQL."""
    tokens = []
    groups: dict[tuple[str, int, bool], tuple[str, int]] = {}
    for candidate in candidates:
        action = _action_of(candidate)
        swept = _sweep_lead(candidate, windows) is not None
        key = candidate.openai_secret_id if action == CHECK else candidate.keboola_secret_id
        size_limit = SWEEP_GROUP_SIZE if swept else GROUP_SIZES[action]
        token, size = groups.get((action, key, swept), ("", size_limit))
        if size == size_limit:
            token, size = leases.new_token(), 0
        groups[(action, key, swept)] = (token, size + 1)
        tokens.append(token)
    return tokens


def _statuses(actions: Collection[str]) -> list[str]:
    statuses = []
    if CHECK in actions:
        statuses.append(JobStatus.ACTIVE.value)
    if START in actions or FOLLOW in actions:
        statuses.append(JobStatus.TRIGGERING.value)
    return statuses


def _claim_one_by_one(
    session: Session, now: datetime, limit: int, actions: Collection[str], sweeps: bool | None
) -> list[Claim]:
    windows = _sweep_windows(session, now) if CHECK in actions else {}
    starting = {key_id: lead for key_id, lead in windows.items() if lead is not None}
    horizon = now
    if starting:
        # The widest window any job of a starting sweep has; each job is then held to its own.
        longest = session.scalar(
            select(func.max(_jobs.c.poll_interval_seconds)).where(_jobs.c.openai_secret_id.in_(list(starting)))
        )
        horizon = now + timedelta(seconds=max(starting.values()) + (longest or 0) * SWEEP_WINDOW)
    rows = session.execute(
        _CANDIDATES, {"statuses": _statuses(actions), "horizon": horizon, "now": now, "limit": limit}
    ).all()
    candidates = [
        row
        for row in _claimable(rows, now, windows)
        if _action_of(row) in actions and (row.status != JobStatus.ACTIVE or _wanted(row, windows, sweeps))
    ]
    claims = []
    for candidate, token in zip(candidates, _group_tokens(candidates, windows), strict=True):
        action = _action_of(candidate)
        claim = _claim_from_row(candidate.id, action, token, candidate.next_check_at, candidate.poll_interval_seconds)
        planned = claim.planned_at
        values = {
            "now": now,
            "job_id": claim.job_id,
            "planned": planned,
            "new_next_check_at": plan_next_check(planned, candidate.poll_interval_seconds, now)
            if action == CHECK
            else planned,
            "new_lease_token": token,
            "new_lease_until": now + timedelta(seconds=claim.expires_in),
        }
        if session.execute(_CLAIM_ONE, values).first() is not None:
            claims.append(claim)
    return claims
