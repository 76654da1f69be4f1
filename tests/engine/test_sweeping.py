"""List sweeps, request budgets and 429 pauses, against the simulator over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from teckochecker.clients.openai_batches import BatchPage, OpenAIBatchClient
from teckochecker.db import database_now, session_scope, utcnow
from teckochecker.engine.checking import RefreshStats, run_checks
from teckochecker.engine.keys import RequestBudget, ensure_key_states
from teckochecker.engine.scheduling import CHECK, SWEEP_WINDOW, Dispatch, claim_due_jobs, group_claims
from teckochecker.engine.sweeping import SWEEP_MIN_WATCHED, SWEEP_PROBE_PAGES, refresh_sweep_modes
from teckochecker.models import JobBatch, JobStatus, OpenAIKeyState, PollingJob, Secret
from teckochecker.services.jobs import check_now, get_job, pause_job, resume_job
from teckochecker.services.secrets import add_secret
from teckochecker.services.webhooks import mark_batch_jobs_due

LIST = "GET /v1/batches"
GET = "GET /v1/batches/{batch_id}"


def _add_jobs(
    world,
    batch_ids: list[str],
    *,
    key: str = "openai",
    interval: int = 60,
    due_in: list[float] | None = None,
    now: datetime | None = None,
) -> list[int]:
    """One job per batch on `key`, inserted in bulk; returns their ids in order."""
    now = now or utcnow()
    with session_scope(world.sessions) as session:
        openai_id = session.scalar(select(Secret.id).where(Secret.name == key))
        keboola_id = session.scalar(select(Secret.id).where(Secret.name == "keboola"))
        first = (session.scalar(select(PollingJob.id).order_by(PollingJob.id.desc()).limit(1)) or 0) + 1
        jobs = [
            {
                "id": first + index,
                "name": f"job {batch_id}",
                "openai_secret_id": openai_id,
                "keboola_secret_id": keboola_id,
                "keboola_stack_url": world.simulator.stack_url,
                "keboola_component_id": "c",
                "keboola_configuration_id": str(first + index),
                "poll_interval_seconds": interval,
                "status": JobStatus.ACTIVE.value,
                "next_check_at": now + timedelta(seconds=due_in[index] if due_in else 0),
                "created_at": now,
                "updated_at": now,
            }
            for index, batch_id in enumerate(batch_ids)
        ]
        session.execute(insert(PollingJob.__table__), jobs)
        batches = [
            {"job_id": job["id"], "batch_id": batch_id, "status": "pending", "created_at": now, "updated_at": now}
            for job, batch_id in zip(jobs, batch_ids, strict=True)
        ]
        session.execute(insert(JobBatch.__table__), batches)
    return [job["id"] for job in jobs]


def _sweep_mode(world, on: bool = True, key: str = "openai") -> int:
    with session_scope(world.sessions) as session:
        key_id = session.scalar(select(Secret.id).where(Secret.name == key))
        ensure_key_states(session, [key_id])
        session.execute(update(OpenAIKeyState).where(OpenAIKeyState.secret_id == key_id).values(sweep_mode=on))
    return key_id


def _claim_checks(world, now=None):
    with session_scope(world.sessions) as session:
        return claim_due_jobs(session, now=now or utcnow(), actions=[CHECK])


def _requests(world) -> dict[str, int]:
    counts = world.simulator.control.counters()["requests"]
    return {name: counts.get(name, 0) for name in (LIST, GET)}


def _statuses(world, job_ids: list[int]) -> dict[int, str]:
    with session_scope(world.sessions) as session:
        rows = session.execute(select(PollingJob.id, PollingJob.status).where(PollingJob.id.in_(job_ids)))
        return dict(rows.all())


def test_a_sweep_checks_many_recent_batches_with_a_few_list_pages(world) -> None:
    control = world.simulator.control
    batch_ids = [f"batch_recent_{n}" for n in range(150)]
    control.create_batches(
        [
            {"id": b, "final_status": "completed" if n % 5 == 0 else "in_progress", "duration": 0}
            for n, b in enumerate(batch_ids)
        ]
    )
    job_ids = _add_jobs(world, batch_ids)
    _sweep_mode(world)

    claims = _claim_checks(world)
    [dispatch] = group_claims(claims)
    assert sorted(dispatch.job_ids) == job_ids  # one sweep for the whole key
    stats = RefreshStats()
    outcomes = run_checks(
        world.sessions, world.vault, world.openai_client, dispatch.job_ids, dispatch.lease_token, stats=stats
    )

    assert _requests(world) == {LIST: 2, GET: 0}
    assert stats.requests == {"list": 2} and stats.refreshed == {"sweep": 150}
    finished = [job_ids[n] for n in range(0, 150, 5)]
    assert {job_id for job_id, outcome in outcomes.items() if outcome.outcome == "all_finished"} == set(finished)
    statuses = _statuses(world, job_ids)
    assert all(statuses[job_id] == JobStatus.TRIGGERING for job_id in finished)
    assert sum(status == JobStatus.ACTIVE for status in statuses.values()) == 120
    with session_scope(world.sessions) as session:
        created = session.scalars(select(JobBatch.openai_created_at).where(JobBatch.job_id.in_(job_ids))).all()
        key = session.scalar(select(OpenAIKeyState))
    assert all(value is not None for value in created)
    assert key.sweep_mode and key.last_sweep_pages == 2 and key.last_sweep_found == 150


def test_a_few_old_batches_among_many_unwatched_fall_back_to_single_gets_and_stop_sweeping(world) -> None:
    control = world.simulator.control
    watched = [f"batch_old_{n}" for n in range(40)]
    control.create_batches([{"id": b, "final_status": "in_progress", "duration": 0} for b in watched])
    control.create_batches([{"id": f"batch_unwatched_{n}", "duration": 0} for n in range(3000)])
    job_ids = _add_jobs(world, watched)
    _sweep_mode(world)

    [dispatch] = group_claims(_claim_checks(world))
    outcomes = run_checks(world.sessions, world.vault, world.openai_client, dispatch.job_ids, dispatch.lease_token)

    # A few probe pages found nothing worth a page; each batch then cost one GET, and every job was checked.
    assert _requests(world) == {LIST: SWEEP_PROBE_PAGES, GET: 40}
    assert {outcome.outcome for outcome in outcomes.values()} == {"checked"}
    with session_scope(world.sessions) as session:
        key = session.scalar(select(OpenAIKeyState))
        checked = session.scalars(select(PollingJob.last_check_at).where(PollingJob.id.in_(job_ids))).all()
    assert not key.sweep_mode and key.sweep_retry_at > utcnow() + timedelta(minutes=50)
    assert all(moment is not None for moment in checked)
    # Beat's census leaves the key on single GETs until its back-off ends.
    with session_scope(world.sessions) as session:
        assert refresh_sweep_modes(session, utcnow())[key.secret_id] is False


def test_a_small_sweep_that_finds_little_leaves_a_well_laid_out_key_sweeping(world) -> None:
    """20 jobs due at once of a key that watches 1,000 recent batches: their batches are the oldest of the
    list, so the probe pages find none of them, yet the key's layout suits sweeps (its watched batches fill
    its list); a probe of 20 batches cannot tell that, and must not stop the key's sweeps for an hour."""
    control = world.simulator.control
    batch_ids = [f"batch_dense_{n:04d}" for n in range(1000)]
    control.create_batches([{"id": b, "final_status": "in_progress", "duration": 0} for b in batch_ids])
    # The 20 oldest are due now; the others long after the sweep's window.
    job_ids = _add_jobs(world, batch_ids, interval=600, due_in=[0] * 20 + [500] * 980)
    _sweep_mode(world)

    [dispatch] = group_claims(_claim_checks(world))
    assert sorted(dispatch.job_ids) == job_ids[:20]
    outcomes = run_checks(world.sessions, world.vault, world.openai_client, dispatch.job_ids, dispatch.lease_token)

    assert _requests(world) == {LIST: SWEEP_PROBE_PAGES, GET: 20}
    assert {outcome.outcome for outcome in outcomes.values()} == {"checked"}
    with session_scope(world.sessions) as session:
        key = session.scalar(select(OpenAIKeyState))
    assert key.sweep_mode and key.sweep_retry_at is None


class _ClientThatSeesNewBatches(OpenAIBatchClient):
    """The real client; after its first page OpenAI receives new batches, as happens during a sweep."""

    def __init__(self, *args, on_first_page, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_first_page = on_first_page

    def list_batches(self, **kwargs) -> BatchPage:
        page = super().list_batches(**kwargs)
        if self._on_first_page is not None:
            self._on_first_page()
            self._on_first_page = None
        return page


def test_batches_created_during_a_sweep_are_asked_for_one_by_one(world) -> None:
    control = world.simulator.control
    old = [f"batch_before_{n}" for n in range(120)]
    late = [f"batch_during_{n}" for n in range(3)]
    control.create_batches([{"id": b, "final_status": "in_progress", "duration": 0} for b in old])
    job_ids = _add_jobs(world, old + late)
    _sweep_mode(world)
    [dispatch] = group_claims(_claim_checks(world))

    def client(key: str) -> OpenAIBatchClient:
        return _ClientThatSeesNewBatches(
            key,
            world.simulator.openai_base_url,
            on_first_page=lambda: control.create_batches(
                [{"id": b, "final_status": "completed", "duration": 0} for b in late]
            ),
        )

    outcomes = run_checks(world.sessions, world.vault, client, dispatch.job_ids, dispatch.lease_token)

    # Pages after the cursor hold only older batches: the new ones are asked for one by one.
    assert _requests(world) == {LIST: 2, GET: 3}
    assert [outcomes[job_id].outcome for job_id in job_ids[-3:]] == ["all_finished"] * 3
    assert all(outcomes[job_id].outcome == "checked" for job_id in job_ids[:-3])


def test_a_sweeping_key_hands_out_the_jobs_of_its_window_in_one_group_and_keeps_their_grids(world) -> None:
    now = utcnow()
    # 100 jobs, one due each second over the next 100 s: a sweep takes those due within its lead (2 s) and the
    # window after it (a quarter of their 100 s interval).
    job_ids = _add_jobs(
        world, [f"batch_w{n}" for n in range(100)], interval=100, due_in=[float(n) for n in range(100)], now=now
    )
    _sweep_mode(world)

    claims = _claim_checks(world, now)
    window = 2 + 100 * SWEEP_WINDOW
    assert sorted(c.job_id for c in claims) == [job_ids[n] for n in range(100) if n <= window]
    assert len({c.lease_token for c in claims}) == 1
    with session_scope(world.sessions) as session:
        for claim in claims:
            job = session.get(PollingJob, claim.job_id)
            assert job.next_check_at == claim.planned_at + timedelta(seconds=100)
    # Nothing more until the next job is due within the lead: then the next window goes, as one group again.
    assert _claim_checks(world, now + timedelta(seconds=20)) == []
    later = _claim_checks(world, now + timedelta(seconds=window))
    assert len({c.lease_token for c in later}) == 1 and min(c.job_id for c in later) == job_ids[int(window) + 1]


def _checked_late(world, *, now: datetime) -> int:
    """A job of the key whose slot comes in a second, checked 10 s ago: late, after its previous slot (its
    check waited in a queue, or its sweep ran long), so a sweep may not take it ahead of its slot."""
    [late] = _add_jobs(world, ["batch_late"], interval=100, due_in=[1.0], now=now)
    with session_scope(world.sessions) as session:
        session.execute(
            update(PollingJob).where(PollingJob.id == late).values(last_check_at=now - timedelta(seconds=10))
        )
    return late


def test_a_job_checked_late_waits_for_its_keys_next_sweep_instead_of_starting_one_of_its_own(world) -> None:
    """Started for each such job, a sweep came once a tick and wanted a tick's worth of jobs: too few to pay
    for its pages, so a key under load fell back to single GETs. The job waits for the next sweep, at most
    until half an interval has passed since its check, when it starts the sweep itself."""
    now = utcnow()
    window = 2 + 100 * SWEEP_WINDOW
    # The key's other jobs are due from 60 s on, one a second: none is within the sweep's lead before 58 s.
    others = _add_jobs(
        world, [f"batch_o{n}" for n in range(40)], interval=100, due_in=[60.0 + n for n in range(40)], now=now
    )
    late = _checked_late(world, now=now)
    _sweep_mode(world)

    assert _claim_checks(world, now + timedelta(seconds=1)) == [], "due, but a sweep would check it twice"
    assert _claim_checks(world, now + timedelta(seconds=39)) == []
    # 50 s (half its interval) after its check, it starts its key's sweep, and the sweep takes the window.
    claims = _claim_checks(world, now + timedelta(seconds=40))
    assert {c.job_id for c in claims} == {late} | {others[n] for n in range(40) if 60 + n <= 40 + window}
    assert len({c.lease_token for c in claims}) == 1


@pytest.mark.parametrize("action", ["check", "pause and resume"])
def test_what_a_user_makes_due_now_on_a_sweeping_key_is_checked_at_once_on_its_own(world, action: str) -> None:
    now = utcnow()
    _add_jobs(world, [f"batch_o{n}" for n in range(40)], interval=100, due_in=[60.0 + n for n in range(40)], now=now)
    late = _checked_late(world, now=now)
    _sweep_mode(world)
    with session_scope(world.sessions) as session:
        if action == "check":
            check_now(session, get_job(session, late), now=now)
        else:
            resume_job(session, pause_job(session, get_job(session, late)), now=now)

    with session_scope(world.sessions) as session:
        assert claim_due_jobs(session, now=now, actions=[CHECK], sweeps=True) == []
        claims = claim_due_jobs(session, now=now, actions=[CHECK], sweeps=False)
    assert [claim.job_id for claim in claims] == [late]


def test_the_census_sweeps_only_keys_that_watch_enough_batches(world) -> None:
    with session_scope(world.sessions) as session:
        add_secret(session, world.vault, name="openai-small", type="openai", value="sk-small-key-000000000000000")
    _add_jobs(world, [f"batch_many_{n}" for n in range(SWEEP_MIN_WATCHED)])
    _add_jobs(world, [f"batch_few_{n}" for n in range(5)], key="openai-small")
    with session_scope(world.sessions) as session:
        names = dict(session.execute(select(Secret.id, Secret.name)).all())
        modes = refresh_sweep_modes(session, utcnow())
    assert {names[key_id]: mode for key_id, mode in modes.items()} == {"openai": True, "openai-small": False}


def test_a_request_budget_leaves_what_does_not_fit_for_the_next_slot(world) -> None:
    control = world.simulator.control
    batch_ids = [f"batch_budget_{n}" for n in range(8)]
    control.create_batches([{"id": b, "final_status": "in_progress", "duration": 0} for b in batch_ids])
    job_ids = _add_jobs(world, batch_ids)
    [dispatch] = group_claims(_claim_checks(world))
    # 60 a minute: a burst of 2, then one a second.
    budget = RequestBudget(60)

    outcomes = run_checks(
        world.sessions, world.vault, world.openai_client, dispatch.job_ids, dispatch.lease_token, budget=budget
    )

    assert _requests(world)[GET] == 2
    assert sorted(outcome.outcome for outcome in outcomes.values()) == ["checked"] * 2 + ["over_budget"] * 6
    with session_scope(world.sessions) as session:
        jobs = session.scalars(select(PollingJob).where(PollingJob.id.in_(job_ids))).all()
    # Not dropped: free for beat again at their next slot, which the claim already planned.
    assert all(job.lease_token is None and job.next_check_at > utcnow() for job in jobs)


def test_the_budget_never_allows_more_than_its_limit_in_any_minute(world) -> None:
    budget = RequestBudget(120)
    start = utcnow()
    taken: list[tuple[float, int]] = []
    with session_scope(world.sessions) as session:
        key_id = session.scalar(select(Secret.id).where(Secret.name == "openai"))
        # Ten minutes of demand far above the limit, asked every quarter second.
        for step in range(2400):
            moment = start + timedelta(seconds=step / 4)
            taken.append((step / 4, budget.take(session, key_id, 10, moment)))
    for window_start in range(0, 540):
        in_window = sum(count for second, count in taken if window_start <= second < window_start + 60)
        assert in_window <= 120, (window_start, in_window)
    # And it does not starve the key: ten minutes give ten times the limit less the burst, plus one burst.
    assert sum(count for _, count in taken) >= 10 * (120 - budget.capacity)


def test_two_workers_share_one_budget(world) -> None:
    control = world.simulator.control
    batch_ids = [f"batch_shared_{n}" for n in range(16)]
    control.create_batches([{"id": b, "final_status": "in_progress", "duration": 0} for b in batch_ids])
    _add_jobs(world, batch_ids)
    dispatches = group_claims(_claim_checks(world))
    assert len(dispatches) == 2
    budget = RequestBudget(60)
    threads = [
        threading.Thread(
            target=run_checks,
            args=(world.sessions, world.vault, world.openai_client, d.job_ids, d.lease_token),
            kwargs={"budget": budget},
        )
        for d in dispatches
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _requests(world)[GET] == 2


def test_a_429_pauses_the_key_for_the_whole_fleet(world) -> None:
    control = world.simulator.control
    control.create_batches([{"id": b, "final_status": "in_progress", "duration": 0} for b in ("batch_p1", "batch_p2")])
    first, second = _add_jobs(world, ["batch_p1", "batch_p2"])
    control.add_fault("/v1/batches/batch_p1", status=429, retry_after=30, count=1)
    with session_scope(world.sessions) as session:
        claims = claim_due_jobs(session, now=utcnow(), actions=[CHECK])
    token = claims[0].lease_token

    outcome = run_checks(world.sessions, world.vault, world.openai_client, [first], token)[first]
    assert outcome.outcome == "transient_error" and outcome.failure.retry_after == 30
    with session_scope(world.sessions) as session:
        paused = session.scalar(select(OpenAIKeyState.blocked_until))
    assert paused > utcnow() + timedelta(seconds=25)

    # Another worker, another job of the same key: it does not ask OpenAI during the pause.
    other = run_checks(world.sessions, world.vault, world.openai_client, [second], token)[second]
    assert other.outcome == "over_budget"
    assert _requests(world)[GET] == 1


def _hint(world, batch_id: str) -> int:
    with session_scope(world.sessions) as session:
        return mark_batch_jobs_due(session, batch_id, database_now(session))


def _job(world, job_id: int) -> PollingJob:
    with session_scope(world.sessions) as session:
        job = session.get(PollingJob, job_id)
        session.expunge(job)
        return job


def test_a_webhook_hinted_job_of_a_sweeping_key_is_checked_at_once_on_its_own_not_in_a_sweep(world) -> None:
    """A webhook makes the job due now; its key sweeps, but the job is checked alone, with one GET per batch,
    and the hint alone does not start a sweep of the key's whole window."""
    now = utcnow()
    batch_ids = [f"batch_hint_{n}" for n in range(20)]
    world.simulator.control.create_batches(
        [
            {"id": b, "final_status": "completed" if n == 0 else "in_progress", "duration": 0}
            for n, b in enumerate(batch_ids)
        ]
    )
    hinted = world.create_job(batch_ids, poll_interval_seconds=100)
    _set_next_check(world, hinted, now + timedelta(seconds=50))
    # The rest of the key's jobs are due after the sweep's lead and window: nothing is due for a sweep now.
    others = _add_jobs(world, [f"batch_later_{n}" for n in range(30)], interval=100, due_in=[40.0] * 30, now=now)
    _sweep_mode(world)

    assert _hint(world, "batch_hint_0") == 1
    with session_scope(world.sessions) as session:
        now = database_now(session)
        assert claim_due_jobs(session, now=now, actions=[CHECK], sweeps=True) == []
        claims = claim_due_jobs(session, now=now, actions=[CHECK], sweeps=False)
    assert [claim.job_id for claim in claims] == [hinted]

    stats = RefreshStats()
    run_checks(world.sessions, world.vault, world.openai_client, [hinted], claims[0].lease_token, stats=stats)
    # 20 watched batches would make a sweep in a group of the key's window; a hinted job asks directly.
    assert _requests(world) == {LIST: 0, GET: 20}
    job = _job(world, hinted)
    assert job.status == JobStatus.ACTIVE and job.hinted_at is None and job.last_check_at is not None
    assert all(_job(world, other).last_check_at is None for other in others)


def test_a_webhook_during_a_check_makes_the_job_due_again_right_after_it(world) -> None:
    """OpenAI answered 'in progress', then the batch finished and its webhook came before the check stored
    that answer: the job must not wait an interval for the next poll."""
    world.simulator.control.create_batch(batch_id="batch_race", final_status="in_progress", duration=0)
    job_id = world.create_job(["batch_race"], poll_interval_seconds=300)

    def client_during_which_the_batch_finishes(key: str) -> OpenAIBatchClient:
        client = world.openai_client(key)
        ask = client.get_batch

        def get_batch(batch_id: str):
            answer = ask(batch_id)
            world.simulator.control.set_batch_status(batch_id, "completed")
            _hint(world, batch_id)
            return answer

        client.get_batch = get_batch
        return client

    [claim] = _claim_checks(world)
    run_checks(world.sessions, world.vault, client_during_which_the_batch_finishes, [job_id], claim.lease_token)
    with session_scope(world.sessions) as session:
        now = database_now(session)
    job = _job(world, job_id)
    assert job.status == JobStatus.ACTIVE and job.hinted_at is not None and job.next_check_at <= now

    [again] = _claim_checks(world, now)
    run_checks(world.sessions, world.vault, world.openai_client, [job_id], again.lease_token)
    job = _job(world, job_id)
    assert job.status == JobStatus.TRIGGERING and job.hinted_at is None


def test_a_webhook_keeps_an_earlier_due_time_and_hints_only_active_jobs_watching_the_batch(world) -> None:
    now = utcnow()
    world.simulator.control.create_batch(batch_id="batch_shared", final_status="in_progress", duration=0)
    overdue, future, paused = (world.create_job(["batch_shared"]) for _ in range(3))
    _set_next_check(world, overdue, now - timedelta(seconds=30))
    _set_next_check(world, future, now + timedelta(seconds=3000))
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == paused).values(status=JobStatus.PAUSED.value))

    assert _hint(world, "batch_shared") == 2
    assert _hint(world, "batch_unknown") == 0
    assert _job(world, overdue).next_check_at == now - timedelta(seconds=30)
    assert _job(world, future).next_check_at <= utcnow()
    assert _job(world, overdue).hinted_at is not None and _job(world, future).hinted_at is not None
    assert _job(world, paused).hinted_at is None


def _set_next_check(world, job_id: int, when: datetime) -> None:
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(next_check_at=when))


def _one_sweep_group(world, batch_ids: list[str], *, finished: int) -> tuple[list[int], Dispatch]:
    """One job per batch on a sweeping key, all due: beat's claim makes them one sweep group. Only the batch
    at index `finished` has ended."""
    world.simulator.control.create_batches(
        [
            {"id": b, "final_status": "completed" if n == finished else "in_progress", "duration": 0}
            for n, b in enumerate(batch_ids)
        ]
    )
    job_ids = _add_jobs(world, batch_ids)
    _sweep_mode(world)
    [dispatch] = group_claims(_claim_checks(world))
    return job_ids, dispatch


def test_a_sweep_whose_job_is_hinted_after_the_claim_sweeps_for_the_rest_and_hands_that_job_back(world) -> None:
    """A webhook for one job of a sweep's group, between the claim and the run. The group still sweeps (one GET
    per batch of a whole window took minutes in the reaction benchmark); the hinted job leaves it before the
    first page, to be checked at once on its own instead of after the sweep's last page."""
    job_ids, dispatch = _one_sweep_group(world, [f"batch_swept_{n}" for n in range(150)], finished=7)
    assert _hint(world, "batch_swept_7") == 1

    outcomes = run_checks(world.sessions, world.vault, world.openai_client, dispatch.job_ids, dispatch.lease_token)
    assert _requests(world) == {LIST: 2, GET: 0}
    assert outcomes[job_ids[7]].outcome == "skipped" and _job(world, job_ids[7]).lease_token is None
    [claim] = _claim_checks(world)
    assert claim.job_id == job_ids[7], "beat hands it out at once, alone"
    run_checks(world.sessions, world.vault, world.openai_client, [claim.job_id], claim.lease_token)
    hinted = _job(world, job_ids[7])
    assert hinted.status == JobStatus.TRIGGERING and hinted.hinted_at is None
    assert _requests(world) == {LIST: 2, GET: 1}


def test_a_job_hinted_while_its_sweep_pages_is_handed_back_and_due_at_once(world) -> None:
    """A sweep of a whole window takes seconds at real latencies; a webhook for one of its jobs must not wait
    for the last page. The sweep hands that job back (free, due now, still hinted) and concludes the rest."""
    job_ids, dispatch = _one_sweep_group(world, [f"batch_paged_{n:03d}" for n in range(450)], finished=0)
    # Five pages of 100, each answered in 0.3 s: the hint comes while the sweep is on its way.
    world.simulator.control.add_fault("/v1/batches", method="GET", delay=0.3)
    hint = threading.Timer(0.4, _hint, args=(world, "batch_paged_000"))
    hint.start()

    outcomes = run_checks(world.sessions, world.vault, world.openai_client, dispatch.job_ids, dispatch.lease_token)
    hint.join()
    handed_back = _job(world, job_ids[0])
    assert outcomes[job_ids[0]].outcome == "skipped", "the sweep no longer speaks for it"
    assert handed_back.status == JobStatus.ACTIVE and handed_back.lease_token is None
    assert handed_back.hinted_at is not None and handed_back.next_check_at <= utcnow()
    assert [claim.job_id for claim in _claim_checks(world)] == [job_ids[0]], "beat hands it out at once, alone"
    # Everyone else was concluded by the sweep, and none of its batches was asked for one by one.
    assert all(outcomes[job_id].outcome == "checked" for job_id in job_ids[1:])
    assert _requests(world) == {LIST: 5, GET: 0}
