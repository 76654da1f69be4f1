import json
from datetime import timedelta

from sqlalchemy import select, update

from teckochecker.clients.keboola_queue import batch_variables
from teckochecker.db import session_scope, utcnow
from teckochecker.engine.checking import STARTS_KEPT_AT_MOST, CheckOutcome, run_checks
from teckochecker.engine.leases import RUN_LEASE
from teckochecker.engine.scheduling import FOLLOW, START, claim_due_jobs
from teckochecker.engine.triggering import (
    STARTS_IN_FLIGHT,
    give_up_trigger,
    run_follows,
    run_starts,
    start_after_check,
)
from teckochecker.models import JobEvent, JobStatus, PollingJob
from teckochecker.services.jobs import get_job, retry_job
from tests.engine.conftest import KEBOOLA_TOKEN, InFlight


def _checked(world, outcomes: dict[str, str], *, keep_starts: bool = False) -> tuple[int, str, CheckOutcome]:
    """A job whose batches all finished with `outcomes`, checked by a real check: (job id, the check's token,
    the check's outcome)."""
    for batch_id, status in outcomes.items():
        world.simulator.control.create_batch(batch_id=batch_id, final_status=status, duration=0)
    job_id = world.create_job(list(outcomes))
    with session_scope(world.sessions) as session:
        [claim] = claim_due_jobs(session, now=utcnow())
    checked = run_checks(
        world.sessions, world.vault, world.openai_client, [job_id], claim.lease_token, keep_starts=keep_starts
    )
    assert checked[job_id].outcome == "all_finished"
    return job_id, claim.lease_token, checked[job_id]


def _triggering_job(world, outcomes: dict[str, str]) -> tuple[int, str]:
    """A job whose batches all finished, handed to the trigger by a real check."""
    job_id, _, _ = _checked(world, outcomes)
    # Beat's next tick hands the job to one trigger task.
    with session_scope(world.sessions) as session:
        [claim] = claim_due_jobs(session, now=utcnow())
    assert claim.action == START
    return job_id, claim.lease_token


def _start(world, job_id: int, token: str) -> str:
    return run_starts(world.sessions, world.vault, world.keboola_client, [job_id], token)[job_id].outcome


def _follow(world, job_id: int) -> str:
    """Beat hands the job to a follow as soon as it is due; here it is due at once."""
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(next_check_at=utcnow()))
    with session_scope(world.sessions) as session:
        [claim] = claim_due_jobs(session, now=utcnow() + timedelta(seconds=1))
    assert claim.action == FOLLOW
    return run_follows(world.sessions, world.vault, world.keboola_client, [job_id], claim.lease_token)[job_id].outcome


def _trigger(world, job_id: int, token: str) -> str:
    """A start, then (once the Keboola job is known) its first follow, as beat would hand them out."""
    outcome = _start(world, job_id, token)
    return _follow(world, job_id) if outcome == "started" else outcome


def _redispatch(world, job_id: int) -> str:
    with session_scope(world.sessions) as session:
        session.execute(
            update(PollingJob).where(PollingJob.id == job_id).values(lease_until=utcnow(), next_check_at=utcnow())
        )
    with session_scope(world.sessions) as session:
        [claim] = claim_due_jobs(session, now=utcnow() + timedelta(seconds=1))
    assert claim.action == START
    return claim.lease_token


def _job(world, job_id: int):
    with session_scope(world.sessions) as session:
        job = get_job(session, job_id)
        kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all()
        return job, list(kinds)


def _variables(keboola_job: dict) -> dict[str, str]:
    return {v["name"]: v["value"] for v in keboola_job["body"]["variableValuesData"]["values"]}


def test_starts_one_keboola_job_with_the_batch_variables_and_follows_it(world) -> None:
    control = world.simulator.control
    control.configure(job_duration=0)
    job_id, token = _triggering_job(world, {"batch_ok": "completed", "batch_lost": "cancelled"})
    assert _trigger(world, job_id, token) == "finished_success"
    [sent] = control.keboola_jobs()
    assert sent["token"] == KEBOOLA_TOKEN
    assert sent["body"]["component"] == "kds-team.app-custom-python" and sent["body"]["config"] == "42"
    assert sent["body"]["mode"] == "run"
    variables = _variables(sent)
    assert json.loads(variables["batch_ids_completed"]) == ["batch_ok"]
    assert json.loads(variables["batch_ids_failed"]) == ["batch_lost"]
    assert (variables["batch_count_total"], variables["batch_count_completed"], variables["batch_count_failed"]) == (
        "2",
        "1",
        "1",
    )
    job, kinds = _job(world, job_id)
    assert job.keboola_job_id == sent["id"] and job.keboola_project_id == sent["project_id"]
    assert job.status == JobStatus.COMPLETED_WITH_FAILURES and job.keboola_job_status == "success"
    assert job.completed_at is not None and job.lease_token is None
    assert kinds[-2:] == ["keboola_started", "completed_with_failures"]


def test_a_running_keboola_job_is_followed_at_the_next_dispatch(world) -> None:
    control = world.simulator.control
    control.configure(job_duration=3600)
    job_id, token = _triggering_job(world, {"batch_ok": "completed"})
    assert _trigger(world, job_id, token) == "following"
    job, _ = _job(world, job_id)
    assert job.status == JobStatus.TRIGGERING and job.keboola_job_id is not None and job.lease_token is None
    control.set_job_status(job.keboola_job_id, "success")
    assert _follow(world, job_id) == "finished_success"
    job, _ = _job(world, job_id)
    assert job.status == JobStatus.COMPLETED
    assert len(control.keboola_jobs()) == 1


def test_after_a_crash_between_starting_and_recording_the_job_is_found_not_started_again(world) -> None:
    control = world.simulator.control
    control.configure(job_duration=0)
    job_id, _token = _triggering_job(world, {"batch_ok": "completed"})
    # The crashed worker got as far as recording its attempt and asking Keboola, not recording the answer.
    attempted = utcnow() - timedelta(minutes=1)
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(trigger_attempted_at=attempted))
    started = world.keboola_client(KEBOOLA_TOKEN, world.simulator.stack_url).start_job(
        "kds-team.app-custom-python", "42", batch_variables(["batch_ok"], [])
    )
    _trigger(world, job_id, _redispatch(world, job_id))
    job, kinds = _job(world, job_id)
    assert job.keboola_job_id == started
    assert len(control.keboola_jobs()) == 1
    assert job.status == JobStatus.COMPLETED
    assert "keboola_started" in kinds


def test_a_recent_unanswered_attempt_waits_for_the_search_index_before_starting_again(world) -> None:
    job_id, _token = _triggering_job(world, {"batch_ok": "completed"})
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(trigger_attempted_at=utcnow()))
    _trigger(world, job_id, _redispatch(world, job_id))
    job, _ = _job(world, job_id)
    assert world.simulator.control.keboola_jobs() == []
    assert job.status == JobStatus.TRIGGERING and job.next_check_at > utcnow() and job.lease_token is None


def test_a_refusal_fails_the_job_with_keboolas_reason_and_retry_re_arms_it(world) -> None:
    control = world.simulator.control
    control.configure(job_duration=0)
    job_id, token = _triggering_job(world, {"batch_ok": "completed"})
    control.add_fault("/jobs", method="POST", status=400, count=1, message="Configuration 42 not found")
    assert _trigger(world, job_id, token) == "refused"
    job, _ = _job(world, job_id)
    assert job.status == JobStatus.FAILED
    assert "Configuration 42 not found" in job.last_error and KEBOOLA_TOKEN not in job.last_error

    with session_scope(world.sessions) as session:
        retry_job(session, get_job(session, job_id))
    with session_scope(world.sessions) as session:
        [claim] = claim_due_jobs(session, now=utcnow() + timedelta(seconds=21))
    _trigger(world, job_id, claim.lease_token)
    job, _ = _job(world, job_id)
    assert job.status == JobStatus.COMPLETED and len(control.keboola_jobs()) == 1


def test_a_keboola_job_that_ends_in_error_fails_the_polling_job(world) -> None:
    control = world.simulator.control
    control.configure(job_duration=0, job_final_status="error")
    job_id, token = _triggering_job(world, {"batch_ok": "completed"})
    _trigger(world, job_id, token)
    job, _ = _job(world, job_id)
    assert job.status == JobStatus.FAILED and "finished with status error" in job.last_error
    assert job.keboola_project_id is not None
    with session_scope(world.sessions) as session:
        retry_job(session, get_job(session, job_id))
    job, _ = _job(world, job_id)
    # The retry asks for a new Keboola job, which may run in another project if the token was replaced.
    assert job.keboola_job_id is None and job.keboola_project_id is None


def test_retries_running_out_before_a_job_is_known_fails_it(world) -> None:
    job_id, token = _triggering_job(world, {"batch_ok": "completed"})
    give_up_trigger(world.sessions, job_id, token, "Keboola answered HTTP 503 (gave up after 3 retries)")
    job, _ = _job(world, job_id)
    assert job.status == JobStatus.FAILED and job.last_error.startswith("Could not start the Keboola job")


def test_a_run_that_lost_its_lease_during_the_search_starts_nothing(world) -> None:
    import threading
    import time

    job_id, _ = _triggering_job(world, {"batch_ok": "completed"})
    with session_scope(world.sessions) as session:
        session.execute(
            update(PollingJob)
            .where(PollingJob.id == job_id)
            .values(trigger_attempted_at=utcnow() - timedelta(minutes=1))
        )
    token = _redispatch(world, job_id)
    world.simulator.control.add_fault("/search/jobs", delay=1.0, count=1)
    result = {}
    run = threading.Thread(target=lambda: result.update(outcome=_trigger(world, job_id, token)))
    run.start()
    time.sleep(0.3)
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(lease_token="taken-over"))
    run.join()
    assert result["outcome"] == "skipped"
    assert world.simulator.control.keboola_jobs() == []


def test_a_bad_stack_url_in_the_database_is_refused_at_use_time_and_never_sent(world, connection_recorder) -> None:
    # A URL an older version accepted, or one written into the database by hand: urllib3 would connect to
    # 127.0.0.1:<recorder> with the token.
    job_id, token = _triggering_job(world, {"batch_done": "completed"})
    bad_stack = f"https://127.0.0.1:{connection_recorder.port}\\.keboola.com"
    with session_scope(world.sessions) as session:
        session.execute(update(PollingJob).where(PollingJob.id == job_id).values(keboola_stack_url=bad_stack))

    assert _trigger(world, job_id, token) == "refused"

    job, kinds = _job(world, job_id)
    assert job.status == JobStatus.FAILED and kinds[-1] == "failed"
    assert "Refused to send the Keboola token" in job.last_error and "backslashes" in job.last_error
    assert f"job update {job_id} --keboola-stack" in job.last_error
    assert connection_recorder.first_lines == []
    assert world.simulator.control.keboola_jobs() == []


def test_a_group_starts_its_keboola_jobs_several_at_once_never_more_than_its_cap(world) -> None:
    """In a burst, a group's last job does not wait for every start before it: up to eight calls at once."""
    control = world.simulator.control
    batch_ids = [f"batch_burst_{n}" for n in range(12)]
    control.create_batches([{"id": b, "final_status": "completed", "duration": 0} for b in batch_ids])
    job_ids = [
        world.create_job([batch_id], keboola_configuration_id=f"burst-{n}") for n, batch_id in enumerate(batch_ids)
    ]
    with session_scope(world.sessions) as session:
        check_token = claim_due_jobs(session, now=utcnow())[0].lease_token
        session.execute(update(PollingJob).values(lease_token=check_token))
    run_checks(world.sessions, world.vault, world.openai_client, job_ids, check_token)
    with session_scope(world.sessions) as session:
        claims = claim_due_jobs(session, now=utcnow())
        session.execute(update(PollingJob).values(lease_token=claims[0].lease_token))
    control.add_fault("/jobs", method="POST", delay=0.5)
    meter = InFlight(world.keboola_client, "start_job")

    outcomes = run_starts(world.sessions, world.vault, meter.client, job_ids, claims[0].lease_token)

    assert meter.most == STARTS_IN_FLIGHT
    assert {outcome.outcome for outcome in outcomes.values()} == {"started"}
    started = {job["body"]["config"] for job in control.keboola_jobs()}
    assert started == {f"burst-{n}" for n in range(12)}, "each job started exactly once"


def _checked_keeping_starts(world, outcomes: dict[str, str]) -> tuple[int, str]:
    """A job whose batches all finished, checked by a task that starts Keboola jobs itself; (job id, its token)."""
    job_id, token, outcome = _checked(world, outcomes, keep_starts=True)
    assert outcome.starts_here
    return job_id, token


def _start_after_check(world, job_id: int, token: str, *, max_retries: int = 3) -> str:
    outcomes = start_after_check(
        world.sessions,
        world.vault,
        world.keboola_client,
        [job_id],
        token,
        retry_delay=world.settings.retry_delay,
        max_retries=max_retries,
    )
    return outcomes[job_id].outcome


def test_the_check_that_sees_the_batches_end_starts_the_keboola_job_with_no_trip_through_beat(world) -> None:
    control = world.simulator.control
    job_id, token = _checked_keeping_starts(world, {"batch_ok": "completed", "batch_bad": "failed"})
    with session_scope(world.sessions) as session:
        assert claim_due_jobs(session, now=utcnow()) == [], "the check's task holds the job for its start"

    assert _start_after_check(world, job_id, token) == "started"

    [keboola_job] = control.keboola_jobs()
    variables = _variables(keboola_job)
    assert json.loads(variables["batch_ids_completed"]) == ["batch_ok"]
    assert json.loads(variables["batch_ids_failed"]) == ["batch_bad"]
    job, kinds = _job(world, job_id)
    assert job.keboola_job_id == keboola_job["id"] and job.lease_token is None
    assert job.next_check_at > utcnow(), "followed at its next look, not started again"
    assert kinds[-2:] == ["triggering", "keboola_started"]


def test_a_chained_start_that_fails_transiently_goes_back_to_beat_which_finds_the_job_not_starts_another(
    world,
) -> None:
    control = world.simulator.control
    control.configure(job_duration=0)
    job_id, token = _checked_keeping_starts(world, {"batch_ok": "completed"})
    # Keboola creates the job, then its answer is lost in a 503.
    control.add_fault("/jobs", method="POST", status=503, after=True, count=1)

    assert _start_after_check(world, job_id, token) == "transient_error"

    job, _ = _job(world, job_id)
    assert job.status == JobStatus.TRIGGERING and job.lease_token is None and job.keboola_job_id is None
    assert job.trigger_attempted_at is not None, "a job may exist: whoever starts next must look for it first"
    assert job.last_error.startswith("Could not start the Keboola job yet") and KEBOOLA_TOKEN not in job.last_error
    first_retry = timedelta(seconds=world.settings.retry_delay / 2)
    assert job.next_check_at >= utcnow() + first_retry - timedelta(seconds=5)
    with session_scope(world.sessions) as session:
        assert claim_due_jobs(session, now=utcnow()) == [], "not before the retry's wait"
        [claim] = claim_due_jobs(session, now=job.next_check_at + timedelta(seconds=1))
    assert claim.action == START

    assert _trigger(world, job_id, claim.lease_token) == "finished_success"
    job, _ = _job(world, job_id)
    assert len(control.keboola_jobs()) == 1 and job.status == JobStatus.COMPLETED


def test_with_no_retries_allowed_a_chained_start_that_fails_transiently_fails_the_job_as_a_trigger_task_would(
    world,
) -> None:
    world.simulator.control.add_fault("/jobs", method="POST", status=503, count=1)
    job_id, token = _checked_keeping_starts(world, {"batch_ok": "completed"})

    assert _start_after_check(world, job_id, token, max_retries=0) == "transient_error"

    job, kinds = _job(world, job_id)
    assert job.status == JobStatus.FAILED and kinds[-1] == "failed"
    assert job.last_error.startswith("Could not start the Keboola job") and "gave up after 0 retries" in job.last_error


def test_a_check_whose_task_dies_before_the_start_leaves_the_job_to_beat_once_its_lease_ends(world) -> None:
    control = world.simulator.control
    job_id, _token = _checked_keeping_starts(world, {"batch_ok": "completed"})
    # The task was killed here, after the check's commit: nothing marks an attempt, nothing was sent.
    with session_scope(world.sessions) as session:
        assert claim_due_jobs(session, now=utcnow() + RUN_LEASE - timedelta(seconds=5)) == []
        [claim] = claim_due_jobs(session, now=utcnow() + RUN_LEASE + timedelta(seconds=1))
    assert claim.action == START

    assert _start(world, job_id, claim.lease_token) == "started"
    assert len(control.keboola_jobs()) == 1


def test_a_group_that_saw_more_jobs_end_than_a_start_group_leaves_their_starts_to_beat(world) -> None:
    """A sweep's harvest: beat spreads the starts over the workers instead of one task starting them all."""
    count = STARTS_KEPT_AT_MOST + 1
    batch_ids = [f"batch_harvest_{n}" for n in range(count)]
    world.simulator.control.create_batches([{"id": b, "final_status": "completed", "duration": 0} for b in batch_ids])
    job_ids = [world.create_job([batch_id]) for batch_id in batch_ids]
    with session_scope(world.sessions) as session:
        token = claim_due_jobs(session, now=utcnow())[0].lease_token
        session.execute(update(PollingJob).values(lease_token=token))

    outcomes = run_checks(world.sessions, world.vault, world.openai_client, job_ids, token, keep_starts=True)

    assert {outcome.outcome for outcome in outcomes.values()} == {"all_finished"}
    assert not any(outcome.starts_here for outcome in outcomes.values())
    with session_scope(world.sessions) as session:
        claims = claim_due_jobs(session, now=utcnow())
    assert {claim.job_id for claim in claims} == set(job_ids) and {claim.action for claim in claims} == {START}
