import threading
import time

from sqlalchemy import select, update

from teckochecker.clients.errors import TransientError
from teckochecker.db import session_scope, utcnow
from teckochecker.engine import checking
from teckochecker.engine.checking import GETS_IN_FLIGHT, give_up_check, run_checks
from teckochecker.engine.scheduling import START, claim_due_jobs
from teckochecker.models import JobEvent, JobStatus, PollingJob
from teckochecker.services.jobs import get_job, pause_job
from tests.engine.conftest import InFlight


def _claim(world, job_id: int) -> str:
    with session_scope(world.sessions) as session:
        return next(c.lease_token for c in claim_due_jobs(session, now=utcnow()) if c.job_id == job_id)


def _run(world, job_id: int, token: str):
    return run_checks(world.sessions, world.vault, world.openai_client, [job_id], token)[job_id]


def _check(world, job_id: int):
    return _run(world, job_id, _claim(world, job_id))


def _job(world, job_id: int):
    with session_scope(world.sessions) as session:
        job = get_job(session, job_id)
        events = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all()
        return job, list(events)


def _due_again(world, job_id: int) -> None:
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(next_check_at=utcnow()))


def test_a_check_stores_counts_and_writes_events_only_on_change(world) -> None:
    control = world.simulator.control
    control.create_batch(batch_id="batch_slow", script=[{"status": "in_progress", "at": 0}], request_total=500)
    job_id = world.create_job(["batch_slow"])

    assert _check(world, job_id).ran
    job, events = _job(world, job_id)
    batch = job.batches[0]
    assert (batch.status, batch.request_total) == ("in_progress", 500)
    assert events == ["created", "batch_status"]
    assert job.last_check_at is not None and job.lease_token is None

    _due_again(world, job_id)
    _check(world, job_id)
    assert _job(world, job_id)[1] == ["created", "batch_status"], "a poll that changes nothing writes no event"


def test_all_batches_finished_moves_the_job_to_triggering(world) -> None:
    control = world.simulator.control
    control.create_batch(batch_id="batch_ok", final_status="completed", duration=0)
    control.create_batch(batch_id="batch_bad", final_status="expired", duration=0)
    job_id = world.create_job(["batch_ok", "batch_bad"])
    outcome = _check(world, job_id)
    job, events = _job(world, job_id)
    assert outcome.outcome == "all_finished"
    assert job.status == JobStatus.TRIGGERING
    # Due at once and unleased: beat's next tick hands it to exactly one trigger task.
    assert job.lease_token is None and job.next_check_at <= utcnow()
    with session_scope(world.sessions) as session:
        assert [(c.job_id, c.action) for c in claim_due_jobs(session, now=utcnow())] == [(job_id, START)]
    assert {b.batch_id: b.status for b in job.batches} == {"batch_ok": "completed", "batch_bad": "expired"}
    assert all(b.finished_at is not None for b in job.batches)
    assert events[-1] == "triggering"


def test_only_unfinished_batches_are_asked_about(world) -> None:
    control = world.simulator.control
    control.create_batch(batch_id="batch_done", final_status="completed", duration=0)
    control.create_batch(batch_id="batch_busy", final_status="completed", duration=3600)
    job_id = world.create_job(["batch_done", "batch_busy"])
    _check(world, job_id)
    before = control.counters()["requests"]
    _due_again(world, job_id)
    _check(world, job_id)
    after = control.counters()["requests"]
    asked = {path: count - before.get(path, 0) for path, count in after.items() if count != before.get(path, 0)}
    assert asked == {"GET /v1/batches/{batch_id}": 1}


def test_a_rejected_key_fails_the_job_naming_the_secret(world) -> None:
    world.simulator.control.reset()  # forgets the key: OpenAI answers 401 invalid_api_key
    job_id = world.create_job(["batch_x"])
    _check(world, job_id)
    job, events = _job(world, job_id)
    assert job.status == JobStatus.FAILED
    assert "secret 'openai'" in job.last_error and "teckochecker job resume" in job.last_error
    assert "invalid_api_key" in job.last_error
    assert "sk-engine" not in job.last_error
    assert events[-1] == "failed"


def test_an_unknown_batch_is_not_found_and_counts_as_finished(world) -> None:
    world.simulator.control.create_batch(batch_id="batch_real", final_status="completed", duration=0)
    job_id = world.create_job(["batch_real", "batch_ghost"])
    outcome = _check(world, job_id)
    job, _ = _job(world, job_id)
    assert {b.batch_id: b.status for b in job.batches} == {"batch_real": "completed", "batch_ghost": "not_found"}
    assert outcome.outcome == "all_finished"


def test_a_transient_failure_keeps_what_was_learned_and_the_lease(world) -> None:
    control = world.simulator.control
    control.create_batch(batch_id="batch_a", final_status="completed", duration=0)
    control.create_batch(batch_id="batch_b", final_status="completed", duration=0)
    control.add_fault("/v1/batches/batch_b", status=503, count=1)
    job_id = world.create_job(["batch_a", "batch_b"])
    token = _claim(world, job_id)
    outcome = _run(world, job_id, token)
    assert outcome.outcome == "transient_error" and isinstance(outcome.failure, TransientError)
    assert outcome.failure.status == 503
    job, _ = _job(world, job_id)
    assert {b.batch_id: b.status for b in job.batches} == {"batch_a": "completed", "batch_b": "pending"}
    assert job.lease_token == token and job.status == JobStatus.ACTIVE

    give_up_check(world.sessions, job_id, token, "OpenAI answered HTTP 503 (gave up after 3 retries)")
    job, events = _job(world, job_id)
    assert job.status == JobStatus.ACTIVE and job.lease_token is None
    assert "503" in job.last_error and events[-1] == "check_failed"


def test_a_stale_lease_token_changes_nothing(world) -> None:
    world.simulator.control.create_batch(batch_id="batch_a", final_status="completed", duration=0)
    job_id = world.create_job(["batch_a"])
    _claim(world, job_id)
    outcome = _run(world, job_id, "not-the-token")
    assert not outcome.ran and outcome.outcome == "skipped"
    job, events = _job(world, job_id)
    assert job.batches[0].status == "pending" and events == ["created"]


def test_pausing_during_a_check_means_no_trigger(world) -> None:
    control = world.simulator.control
    control.create_batch(batch_id="batch_a", final_status="completed", duration=0)
    control.add_fault("/v1/batches/batch_a", delay=1.0, count=1)
    job_id = world.create_job(["batch_a"])
    token = _claim(world, job_id)
    result = {}
    check = threading.Thread(target=lambda: result.update(outcome=_run(world, job_id, token)))
    check.start()
    time.sleep(0.3)
    with session_scope(world.sessions) as session:
        pause_job(session, get_job(session, job_id))
    check.join()
    job, events = _job(world, job_id)
    assert result["outcome"].outcome == "checked"
    assert job.status == JobStatus.PAUSED and job.batches[0].status == "completed"
    assert "triggering" not in events


def test_a_group_is_checked_together_and_each_job_gets_its_own_outcome(world) -> None:
    control = world.simulator.control
    control.create_batch(batch_id="batch_done", final_status="completed", duration=0)
    control.create_batch(batch_id="batch_busy", script=[{"status": "in_progress", "at": 0}], request_total=10)
    control.create_batch(batch_id="batch_flaky", final_status="completed", duration=0)
    control.add_fault("/v1/batches/batch_flaky", status=503, count=1)
    finished, busy, flaky, stolen = (
        world.create_job([batch]) for batch in ("batch_done", "batch_busy", "batch_flaky", "batch_busy")
    )
    with session_scope(world.sessions) as session:
        claims = claim_due_jobs(session, now=utcnow())
    [token] = {claim.lease_token for claim in claims}
    # Another dispatcher took one job of the group meanwhile (its lease expired and was handed out again).
    _set_token(world, stolen, "someone-else")

    outcomes = run_checks(world.sessions, world.vault, world.openai_client, [finished, busy, flaky, stolen], token)
    assert outcomes[finished].outcome == "all_finished"
    assert outcomes[busy].outcome == "checked" and outcomes[busy].failure is None
    assert outcomes[flaky].outcome == "transient_error" and outcomes[flaky].failure.status == 503
    assert outcomes[stolen].outcome == "skipped"
    jobs = {job_id: _job(world, job_id) for job_id in (finished, busy, flaky, stolen)}
    assert jobs[finished][0].status == JobStatus.TRIGGERING
    assert jobs[busy][0].lease_token is None and jobs[busy][0].batches[0].request_total == 10
    assert jobs[flaky][0].lease_token == token, "the failed job keeps the lease for its retry"
    assert jobs[stolen][0].lease_token == "someone-else" and jobs[stolen][1] == ["created"]


def _set_token(world, job_id: int, token: str) -> None:
    from sqlalchemy import update

    from teckochecker.models import PollingJob

    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(lease_token=token))


def test_a_check_that_ran_long_after_its_claim_moves_the_next_slot_half_an_interval_away(world) -> None:
    """A catch-up queues thousands of checks: one that runs 50 s after its claim, whose next slot the claim
    planned only 9 s ahead, keeps its grid but skips that slot, so it is not checked twice within 30 s."""
    from datetime import timedelta

    from sqlalchemy import update

    from teckochecker.models import PollingJob

    world.simulator.control.create_batch(batch_id="batch_queued", script=[{"status": "in_progress", "at": 0}])
    job_id = world.create_job(["batch_queued"], poll_interval_seconds=60)
    claimed_at = utcnow() - timedelta(seconds=50)
    slot = claimed_at - timedelta(seconds=1)
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(next_check_at=slot))
    with session_scope(world.sessions) as session:
        token = next(c.lease_token for c in claim_due_jobs(session, now=claimed_at) if c.job_id == job_id)
        planned = get_job(session, job_id).next_check_at
    assert planned == slot + timedelta(seconds=60), "the claim plans the next grid slot"

    assert _run(world, job_id, token).ran
    job, _ = _job(world, job_id)
    assert job.next_check_at - job.last_check_at >= timedelta(seconds=30)
    assert job.next_check_at == slot + timedelta(seconds=120), "the job's own grid, one slot skipped"


def _group(world, count: int, prefix: str) -> tuple[list[int], str]:
    control = world.simulator.control
    batch_ids = [f"{prefix}_{n}" for n in range(count)]
    control.create_batches([{"id": b, "final_status": "completed", "duration": 0} for b in batch_ids])
    job_ids = [world.create_job([batch_id]) for batch_id in batch_ids]
    with session_scope(world.sessions) as session:
        claims = claim_due_jobs(session, now=utcnow())
    # One lease token over all of them, as one task would hold them.
    for job_id in job_ids:
        _set_token(world, job_id, "group-token")
    assert {claim.job_id for claim in claims} == set(job_ids)
    return job_ids, "group-token"


def test_a_group_keeps_several_gets_in_flight_at_once_never_more_than_its_cap(world) -> None:
    """Slow answers do not queue a group's jobs behind each other: eight GETs are asked at once."""
    job_ids, token = _group(world, 12, "batch_slow")
    world.simulator.control.add_fault("/v1/batches/batch_slow_*", delay=1.0)
    meter = InFlight(world.openai_client, "get_batch")

    outcomes = run_checks(world.sessions, world.vault, meter.client, job_ids, token)

    assert meter.most == GETS_IN_FLIGHT
    assert {outcome.outcome for outcome in outcomes.values()} == {"all_finished"}
    assert {_job(world, job_id)[0].status for job_id in job_ids} == {JobStatus.TRIGGERING}


def test_fast_answers_are_asked_one_after_another_without_helpers(world, monkeypatch) -> None:
    # A threshold far above a loaded machine's answer times, so the test holds on a busy CI machine too.
    monkeypatch.setattr(checking, "SLOW_ANSWER_SECONDS", 5.0)
    job_ids, token = _group(world, 12, "batch_fast")
    meter = InFlight(world.openai_client, "get_batch")

    outcomes = run_checks(world.sessions, world.vault, meter.client, job_ids, token)

    assert meter.most == 1
    assert {outcome.outcome for outcome in outcomes.values()} == {"all_finished"}


def test_a_429_in_a_group_stops_the_gets_not_yet_sent_and_keeps_the_answers_in_flight(world) -> None:
    job_ids, token = _group(world, 12, "batch_limited")
    control = world.simulator.control
    # The first answer is slow, so eight GETs go out at once; the 429 (of the first of them) comes back
    # while the other seven are still in flight.
    control.add_fault("/v1/batches/batch_limited_*", delay=0.5)
    control.add_fault("/v1/batches/batch_limited_[2-9]", delay=1.0)
    control.add_fault("/v1/batches/batch_limited_1", status=429, retry_after=30, count=1)

    outcomes = run_checks(world.sessions, world.vault, world.openai_client, job_ids, token)

    first, limited, in_flight, rest = (
        job_ids[0],
        job_ids[1],
        job_ids[2 : 1 + GETS_IN_FLIGHT],
        job_ids[1 + GETS_IN_FLIGHT :],
    )
    assert outcomes[limited].outcome == "transient_error" and outcomes[limited].failure.status == 429
    assert {outcomes[job_id].outcome for job_id in [first, *in_flight]} == {"all_finished"}, "answers in flight count"
    for job_id in rest:
        assert outcomes[job_id].outcome == "transient_error" and outcomes[job_id].failure.status == 429
    assert control.counters()["requests"]["GET /v1/batches/{batch_id}"] == 1 + GETS_IN_FLIGHT


def test_a_hinted_group_asks_its_gets_at_once_even_when_answers_are_fast(world, monkeypatch) -> None:
    """A webhook said a batch ended and someone waits for its Keboola job: no GET of the group waits for
    another, whatever the threshold for slow answers."""
    monkeypatch.setattr(checking, "SLOW_ANSWER_SECONDS", 5.0)
    job_ids, token = _group(world, 12, "batch_hinted")
    world.simulator.control.add_fault("/v1/batches/batch_hinted_*", delay=0.3)
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_ids[0]).values(hinted_at=utcnow()))
    meter = InFlight(world.openai_client, "get_batch")

    outcomes = run_checks(world.sessions, world.vault, meter.client, job_ids, token)

    assert meter.most == GETS_IN_FLIGHT
    assert {outcome.outcome for outcome in outcomes.values()} == {"all_finished"}
