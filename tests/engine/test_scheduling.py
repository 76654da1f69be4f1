import itertools
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text, update

from teckochecker.db import session_scope, utcnow
from teckochecker.engine.keys import ensure_key_states
from teckochecker.engine.scheduling import (
    CHECK,
    CHECK_GROUP_SIZE,
    START,
    claim_due_jobs,
    group_claims,
    plan_next_check,
)
from teckochecker.engine.sweeping import SWEEP_LEAD_MAX_SECONDS
from teckochecker.models import JobStatus, OpenAIKeyState, PollingJob
from teckochecker.services.jobs import get_job, pause_job
from teckochecker.services.secrets import add_secret

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_next_check_stays_on_the_grid_and_skips_missed_slots() -> None:
    assert plan_next_check(T0, 60, T0) == T0 + timedelta(seconds=60)
    # Dispatched 3 s late: the next slot is still planned from the previous plan, not from now.
    assert plan_next_check(T0, 60, T0 + timedelta(seconds=3)) == T0 + timedelta(seconds=60)
    # Beat was down for 5 minutes: the missed slots are skipped, not replayed.
    assert plan_next_check(T0, 60, T0 + timedelta(seconds=301)) == T0 + timedelta(seconds=360)
    # Checked 36 s late: the slot 24 s later would come too soon after it; the one after that is next.
    assert plan_next_check(T0, 60, T0 + timedelta(seconds=36)) == T0 + timedelta(seconds=120)
    assert plan_next_check(T0, 60, T0 + timedelta(seconds=30)) == T0 + timedelta(seconds=60)
    # Checked early by a sweep: the next slot is the one after its own.
    assert plan_next_check(T0 + timedelta(seconds=5), 60, T0) == T0 + timedelta(seconds=65)


@pytest.mark.parametrize("sweeping", [False, True], ids=["single-gets", "sweeping-key"])
def test_after_an_outage_no_job_is_checked_twice_within_half_an_interval(world, sweeping: bool) -> None:
    """10,000 jobs overdue by up to an hour when beat starts: claimed once, then not again too soon.

    With a sweeping key, a sweep claims jobs up to its lead plus a quarter interval ahead of their slots;
    it must leave out the jobs the catch-up has just checked.
    """
    count = 10_000 if world.sessions.kw["bind"].dialect.name == "postgresql" else 2_000
    rng = random.Random(3)
    start = utcnow()
    _jobs_like_a_template(
        world,
        sweeping=sweeping,
        intervals=[rng.choice([30, 60, 120]) for _ in range(count)],
        slots=[start - timedelta(seconds=rng.uniform(0, 3600)) for _ in range(count)],
        now=start,
    )
    checked_at: dict[int, list[datetime]] = {}
    # Beat's ticks over 60 simulated seconds; every check finishes at once and hands its lease back.
    for tick in range(61):
        now = start + timedelta(seconds=tick)
        with session_scope(world.sessions) as session:
            claims = claim_due_jobs(session, now=now, limit=20_000)
            session.execute(
                update(PollingJob)
                .where(PollingJob.lease_token.is_not(None))
                .values(lease_token=None, lease_until=None, last_check_at=now)
            )
        for claim in claims:
            checked_at.setdefault(claim.job_id, []).append(now)
    assert len(checked_at) == count + 1
    with session_scope(world.sessions) as session:
        intervals = dict(session.execute(select(PollingJob.id, PollingJob.poll_interval_seconds)).all())
    too_soon = [
        job_id
        for job_id, times in checked_at.items()
        if any(
            (later - earlier).total_seconds() < intervals[job_id] / 2 for earlier, later in itertools.pairwise(times)
        )
    ]
    assert too_soon == []


def test_a_claim_plans_each_job_on_its_own_grid(world) -> None:
    # On PostgreSQL the claim computes the grid in SQL: it must agree with plan_next_check to the microsecond.
    rng = random.Random(7)
    now = utcnow()
    planned = {}
    for index in range(40):
        job_id = world.create_job([f"batch_{index}"], poll_interval_seconds=rng.choice([30, 60, 97, 1234, 3600]))
        planned[job_id] = now - timedelta(seconds=rng.uniform(0, 200_000), microseconds=rng.randrange(1_000_000))
        _set(world, job_id, next_check_at=planned[job_id])
    exact_multiple = next(iter(planned))
    with session_scope(world.sessions) as session:
        interval = get_job(session, exact_multiple).poll_interval_seconds
    planned[exact_multiple] = now - timedelta(seconds=5 * interval)
    _set(world, exact_multiple, next_check_at=planned[exact_multiple])

    with session_scope(world.sessions) as session:
        claims = claim_due_jobs(session, now=now)
    assert {c.job_id: c.planned_at for c in claims} == planned
    with session_scope(world.sessions) as session:
        for job_id, slot in planned.items():
            job = get_job(session, job_id)
            assert job.next_check_at == plan_next_check(slot, job.poll_interval_seconds, now)
            assert job.lease_until == now + timedelta(seconds=job.poll_interval_seconds)


def _jobs_like_a_template(world, *, sweeping: bool, intervals: list[int], slots: list[datetime], now: datetime) -> int:
    """A job made through the service (the template, on batch_template), then in bulk one active job per
    interval and slot with its secrets; with `sweeping`, their key is refreshed by list sweeps. Returns the
    template's id."""
    with session_scope(world.sessions) as session:
        template = get_job(session, world.create_job(["batch_template"]))
        if sweeping:
            ensure_key_states(session, [template.openai_secret_id])
            session.execute(
                update(OpenAIKeyState)
                .where(OpenAIKeyState.secret_id == template.openai_secret_id)
                .values(sweep_mode=True, sweep_lead_seconds=SWEEP_LEAD_MAX_SECONDS)
            )
        rows = [
            {
                "name": f"bulk {index}",
                "openai_secret_id": template.openai_secret_id,
                "keboola_secret_id": template.keboola_secret_id,
                "keboola_stack_url": template.keboola_stack_url,
                "keboola_component_id": "c",
                "keboola_configuration_id": "1",
                "poll_interval_seconds": interval,
                "status": JobStatus.ACTIVE.value,
                "next_check_at": slot,
                "created_at": now,
                "updated_at": now,
            }
            for index, (interval, slot) in enumerate(zip(intervals, slots, strict=True))
        ]
        session.execute(insert(PollingJob.__table__), rows)
        return template.id


def _set(world, job_id: int, **values) -> None:
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(**values))


def test_claims_only_due_unleased_active_or_triggering_jobs(world) -> None:
    due, later, paused, leased, triggering = (world.create_job([f"batch_{i}"]) for i in range(5))
    now = utcnow()
    _set(world, later, next_check_at=now + timedelta(seconds=30))
    with session_scope(world.sessions) as session:
        pause_job(session, get_job(session, paused))
    _set(world, leased, lease_token="someone", lease_until=now + timedelta(seconds=30))
    _set(world, triggering, status=JobStatus.TRIGGERING.value)

    with session_scope(world.sessions) as session:
        claims = claim_due_jobs(session, now=now + timedelta(seconds=1))
    assert {(c.job_id, c.action) for c in claims} == {(due, CHECK), (triggering, START)}

    with session_scope(world.sessions) as session:
        job = get_job(session, due)
        assert job.lease_token == next(c.lease_token for c in claims if c.job_id == due)
        assert job.next_check_at > now
        # Claimed jobs are not handed out again while their lease holds.
        assert claim_due_jobs(session, now=now + timedelta(seconds=2)) == []


def test_an_expired_lease_is_handed_out_again_with_a_new_token(world) -> None:
    job_id = world.create_job(["batch_a"], poll_interval_seconds=30)
    now = utcnow()
    with session_scope(world.sessions) as session:
        [first] = claim_due_jobs(session, now=now)
    _set(world, job_id, next_check_at=now)
    with session_scope(world.sessions) as session:
        assert claim_due_jobs(session, now=now + timedelta(seconds=29)) == []
        [second] = claim_due_jobs(session, now=now + timedelta(seconds=31))
    assert second.lease_token != first.lease_token


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_dispatchers_at_once_never_claim_the_same_job(world) -> None:
    for index in range(200):
        world.create_job([f"batch_{index}"])
    now = utcnow()
    claimed: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)

    def dispatcher(slot: int) -> None:
        # In step, round by round: a claim now takes a millisecond, so one dispatcher could otherwise claim
        # every job before the other has started.
        for _ in range(15):
            barrier.wait()
            with session_scope(world.sessions) as session:
                claimed[slot] += [c.job_id for c in claim_due_jobs(session, now=now, limit=10)]

    threads = [threading.Thread(target=dispatcher, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = claimed[0] + claimed[1]
    assert len(everything) == len(set(everything)) == 200
    assert claimed[0] and claimed[1]


def test_checks_of_one_key_are_handed_out_in_groups_that_share_a_token(world) -> None:
    with session_scope(world.sessions) as session:
        add_secret(session, world.vault, name="openai-2", type="openai", value="sk-second-key-for-groups-0123")
    first_key = [world.create_job([f"batch_a{i}"]) for i in range(CHECK_GROUP_SIZE + 3)]
    second_key = [world.create_job([f"batch_b{i}"], openai_secret="openai-2") for i in range(2)]
    triggering = [world.create_job([f"batch_t{i}"]) for i in range(2)]
    for job_id in triggering:
        _set(world, job_id, status=JobStatus.TRIGGERING.value)

    with session_scope(world.sessions) as session:
        claims = claim_due_jobs(session, now=utcnow() + timedelta(seconds=1))
    dispatches = group_claims(claims)
    checks = sorted(sorted(d.job_ids) for d in dispatches if d.action == CHECK)
    assert checks == sorted([first_key[:CHECK_GROUP_SIZE], first_key[CHECK_GROUP_SIZE:], second_key])
    # Starts of one Keboola token travel together too.
    assert [sorted(d.job_ids) for d in dispatches if d.action == START] == [sorted(triggering)]
    assert len({d.lease_token for d in dispatches}) == len(dispatches)
    with session_scope(world.sessions) as session:
        for dispatch in dispatches:
            assert {get_job(session, job_id).lease_token for job_id in dispatch.job_ids} == {dispatch.lease_token}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_claim_reads_the_jobs_it_claims_not_every_job(world) -> None:
    """Beat claims many times a second in a burst of webhooks: a claim that finds nothing to claim must read
    next to nothing, whatever the number of jobs, also once psycopg runs it as a prepared statement (from the
    sixth run on). Here the only job due soon was checked moments ago, so no sweep may start for its key.
    PostgreSQL only: SQLite claims job by job, with no such statement."""
    start = utcnow()
    template_id = _jobs_like_a_template(
        world,
        sweeping=True,
        intervals=[7200] * 10_000,
        slots=[start + timedelta(seconds=3600 + index * 0.36) for index in range(10_000)],
        now=start,
    )
    _set(world, template_id, next_check_at=start + timedelta(seconds=5), last_check_at=start - timedelta(seconds=10))
    # Earlier tests' deleted jobs would otherwise be read by the planner's look at the ends of the indexes.
    with world.sessions.kw["bind"].connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE polling_jobs"))

    rows_read_so_far = text(
        "SELECT seq_tup_read + idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'polling_jobs'"
    )

    def claim(at: datetime, **narrowing) -> tuple[list[int], int]:
        """The jobs claimed (then given back) and the rows of polling_jobs read to find them."""
        with session_scope(world.sessions) as session:
            # Before and after, in one transaction: the view may also hold counts of earlier transactions.
            before = session.execute(rows_read_so_far).scalar_one()
            claimed = [claim.job_id for claim in claim_due_jobs(session, now=at, **narrowing)]
            read = session.execute(rows_read_so_far).scalar_one() - before
            session.rollback()
        return claimed, read

    narrowings = ({"actions": [CHECK], "sweeps": True}, {"actions": [CHECK], "sweeps": False}, {"actions": [START]})
    for run in range(8):
        for narrowing in narrowings:
            claimed, read = claim(start, **narrowing)
            # A few rows (the job due soon, the planner's looks at the ends of the indexes), not the 10,000 jobs:
            # planned as a scan, a claim read every job twice.
            assert (claimed, read < 500) == ([], True), (run, narrowing, read)
    # Once its slot comes, the job is claimed, by its key's sweep.
    assert claim(start + timedelta(seconds=6), actions=[CHECK], sweeps=True)[0] == [template_id]
