"""The engine as users run it: real worker and beat processes, Redis, PostgreSQL, the simulator."""

from __future__ import annotations

import json
import random
import time

import pytest
import requests
from sqlalchemy import select

from teckochecker.db import session_scope
from teckochecker.engine.leases import RUN_LEASE
from teckochecker.models import JobEvent, JobStatus
from teckochecker.services.jobs import JobChanges, delete_job, get_job, pause_job, resume_job, update_job
from teckochecker.vault import generate_key
from tests.api.conftest import free_port
from tests.worker.conftest import KEBOOLA_TOKEN, OPENAI_KEY

pytestmark = pytest.mark.slow


def _variables(keboola_job: dict) -> dict[str, str]:
    return {v["name"]: v["value"] for v in keboola_job["body"]["variableValuesData"]["values"]}


def test_the_whole_life_of_jobs(engine_installation) -> None:
    engine = engine_installation
    control = engine.simulator.control
    control.create_batch(batch_id="batch_quick", final_status="completed", duration=0)
    control.create_batch(batch_id="batch_slow", final_status="completed", duration=4)
    control.create_batch(batch_id="batch_fails", final_status="failed", duration=1)
    control.create_batch(batch_id="batch_expires", final_status="expired", duration=1)
    clean = engine.create_job(["batch_quick", "batch_slow"], keboola_configuration_id="100", poll_interval_seconds=2)
    mixed = engine.create_job(
        ["batch_quick", "batch_fails", "batch_expires"], keboola_configuration_id="200", poll_interval_seconds=1
    )
    worker_port, beat_port = free_port(), free_port()
    engine.start_worker(extra_env={"METRICS_PORT": str(worker_port)})
    engine.start_beat(extra_env={"METRICS_PORT": str(beat_port)})
    jobs = engine.wait_finished([clean, mixed], timeout=60)

    assert jobs[clean].status == JobStatus.COMPLETED
    assert jobs[mixed].status == JobStatus.COMPLETED_WITH_FAILURES
    sent = engine.keboola_jobs_by_config()
    assert {config: len(started) for config, started in sent.items()} == {"100": 1, "200": 1}
    clean_vars, mixed_vars = _variables(sent["100"][0]), _variables(sent["200"][0])
    assert json.loads(clean_vars["batch_ids_completed"]) == ["batch_quick", "batch_slow"]
    assert json.loads(mixed_vars["batch_ids_failed"]) == ["batch_fails", "batch_expires"]
    assert (mixed_vars["batch_count_total"], mixed_vars["batch_count_failed"]) == ("3", "2")
    assert jobs[clean].keboola_job_status == "success" and jobs[clean].keboola_job_id == sent["100"][0]["id"]
    # Checked on its 2 s interval while the slow batch ran (about 4 s), not in a tight loop.
    assert engine.batch_requests() <= 12

    with session_scope(engine.sessions) as session:
        kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == mixed)).all()
    assert "keboola_started" in kinds and kinds[-1] == "completed_with_failures"

    # What the fleet did, as Prometheus sees it.
    worker_metrics = requests.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=5).text
    beat_metrics = requests.get(f"http://127.0.0.1:{beat_port}/metrics", timeout=5).text
    assert 'teckochecker_checks_total{outcome="all_finished"} 2.0' in worker_metrics
    assert 'teckochecker_keboola_triggers_total{outcome="finished_success"}' in worker_metrics
    # Each Keboola job was started by the check that saw its batches end: beat handed out no start.
    assert 'teckochecker_keboola_triggers_total{outcome="started"} 2.0' in worker_metrics
    assert 'teckochecker_dispatched_total{action="start"}' not in beat_metrics
    assert "teckochecker_check_duration_seconds_count" in worker_metrics
    assert 'teckochecker_dispatched_total{action="check"}' in beat_metrics
    assert "teckochecker_scheduling_lag_seconds_bucket" in beat_metrics

    # No secret value anywhere in Redis or in the processes' logs.
    engine.stop_all()
    for secret in (OPENAI_KEY, KEBOOLA_TOKEN):
        assert secret not in engine.logs()
        for key in engine.redis.scan_iter(count=1000):
            assert secret.encode() not in key
            assert secret.encode() not in (engine.redis.dump(key) or b"")


def test_outside_failures(engine_installation) -> None:
    engine = engine_installation
    control = engine.simulator.control
    for batch_id in ("batch_429", "batch_503", "batch_ok"):
        control.create_batch(batch_id=batch_id, final_status="completed", duration=0)
    control.add_fault("/v1/batches/batch_429", status=429, retry_after=3, count=1)
    control.add_fault("/v1/batches/batch_503", status=503, count=2)
    with session_scope(engine.sessions) as session:
        from teckochecker.services.secrets import add_secret

        add_secret(session, engine.vault, name="revoked", type="openai", value="sk-revoked-key-0000")
    throttled = engine.create_job(["batch_429"], keboola_configuration_id="1")
    flaky = engine.create_job(["batch_503"], keboola_configuration_id="2")
    revoked = engine.create_job(["batch_ok"], openai_secret="revoked", keboola_configuration_id="3")
    missing = engine.create_job(["batch_ok", "batch_gone"], keboola_configuration_id="4")
    started = time.monotonic()
    engine.start_worker()
    engine.start_beat()
    jobs = engine.wait_finished([throttled, flaky, revoked, missing], timeout=60)

    assert jobs[throttled].status == JobStatus.COMPLETED
    # Retry-After: 3 was honoured: the job could not finish sooner, and OpenAI was not asked in between.
    assert jobs[throttled].completed_at is not None and time.monotonic() - started >= 3
    assert jobs[flaky].status == JobStatus.COMPLETED
    # Celery's retries did the work: neither job had to wait for its lease to expire and be handed out again.
    for job_id in (throttled, flaky):
        assert jobs[job_id].completed_at - jobs[job_id].created_at < RUN_LEASE
    assert jobs[revoked].status == JobStatus.FAILED
    assert "secret 'revoked'" in jobs[revoked].last_error and "invalid_api_key" in jobs[revoked].last_error
    assert jobs[missing].status == JobStatus.COMPLETED_WITH_FAILURES
    assert {b.batch_id: b.status for b in jobs[missing].batches}["batch_gone"] == "not_found"
    assert json.loads(_variables(engine.keboola_jobs_by_config()["4"][0])["batch_ids_failed"]) == ["batch_gone"]
    assert "3" not in engine.keboola_jobs_by_config()


def test_errors_that_echo_other_stored_secrets_are_stored_and_logged_redacted(engine_installation) -> None:
    engine = engine_installation
    control = engine.simulator.control
    canary = "kbc-LEAKCANARY-3c9e1f7a2b"
    with session_scope(engine.sessions) as session:
        from teckochecker.services.secrets import add_secret

        add_secret(session, engine.vault, name="unused", type="keboola", value=canary)
    control.create_batch(batch_id="batch_echo", final_status="completed", duration=0)
    # OpenAI echoes the Keboola token once (a transient error, logged as it is retried); Keboola then refuses
    # the job echoing the OpenAI key, a prefix of a secret no job uses, and an unknown key.
    control.add_fault("/v1/batches/batch_echo", status=500, count=1, message=f"upstream saw {KEBOOLA_TOKEN}")
    control.add_fault(
        "/jobs",
        method="POST",
        status=400,
        message=f"bad config for {OPENAI_KEY}; {canary[:11]} expired; also sk-other-0123456789abcdef",
    )
    job_id = engine.create_job(["batch_echo"], keboola_configuration_id="9")
    engine.start_worker()
    engine.start_beat()
    job = engine.wait_finished([job_id], timeout=60)[job_id]

    assert job.status == JobStatus.FAILED and "[redacted]" in job.last_error and "bad config" in job.last_error
    with session_scope(engine.sessions) as session:
        messages = " ".join(session.scalars(select(JobEvent.message).where(JobEvent.job_id == job_id)))
    logs = engine.logs()
    assert "upstream saw [redacted]" in logs
    for leaked in (KEBOOLA_TOKEN, OPENAI_KEY, canary[:11], "sk-other-0123456789abcdef"):
        assert leaked not in job.last_error and leaked not in messages and leaked not in logs


def test_pause_resume_edit_and_delete_take_effect_at_the_next_tick(engine_installation) -> None:
    engine = engine_installation
    control = engine.simulator.control
    control.create_batch(batch_id="batch_long", final_status="completed", duration=3600)
    job_id = engine.create_job(["batch_long"], poll_interval_seconds=1)
    engine.start_worker()
    engine.start_beat()
    engine.wait_until(lambda: engine.batch_requests() >= 2, 20, "the first checks")

    with session_scope(engine.sessions) as session:
        pause_job(session, get_job(session, job_id))
    time.sleep(1.5)
    paused_at = engine.batch_requests()
    time.sleep(3)
    assert engine.batch_requests() == paused_at, "a paused job is not checked"

    with session_scope(engine.sessions) as session:
        resume_job(session, get_job(session, job_id))
    engine.wait_until(lambda: engine.batch_requests() > paused_at, 3, "a check right after resume")

    with session_scope(engine.sessions) as session:
        update_job(session, engine.settings, get_job(session, job_id), JobChanges(poll_interval_seconds=4))
    time.sleep(1.5)
    edited_at = engine.batch_requests()
    time.sleep(6)
    assert 1 <= engine.batch_requests() - edited_at <= 3, "checked on the new 4 s interval"

    control.set_batch_status("batch_long", "completed")
    with session_scope(engine.sessions) as session:
        delete_job(session, get_job(session, job_id))
    time.sleep(1.5)
    deleted_at = engine.batch_requests()
    time.sleep(5)
    assert engine.batch_requests() == deleted_at
    assert control.keboola_jobs() == []


def test_two_beats_for_a_minute_never_check_a_job_twice_in_an_interval(engine_installation) -> None:
    engine = engine_installation
    jobs = 20
    interval = 5
    for index in range(jobs):
        batch_id = f"batch_twobeats_{index}"
        engine.simulator.control.create_batch(batch_id=batch_id, final_status="completed", duration=3600)
        engine.create_job([batch_id], poll_interval_seconds=interval)
    engine.start_worker()
    beats = [engine.start_beat(name="beat-a"), engine.start_beat(name="beat-b")]
    time.sleep(60)
    assert all(beat.poll() is None for beat in beats), "both beats ran for the whole minute"
    engine.stop_all()
    checks = engine.batch_requests()
    # 60 s at one check per 5 s is 12 or 13 checks a job; a double-checking pair of beats would make ~25.
    assert jobs * 10 <= checks <= jobs * (60 // interval + 1), checks


def test_sigkill_of_the_worker_at_random_instants_loses_nothing_and_triggers_once(engine_installation) -> None:
    engine = engine_installation
    control = engine.simulator.control
    # Slow Keboola answers widen the window in which a kill lands during the trigger.
    control.add_fault("/jobs", method="POST", delay=0.4)
    job_ids = []
    for index in range(12):
        batch_id = f"batch_kill_{index}"
        control.create_batch(batch_id=batch_id, final_status="completed", duration=1 + index * 1.5)
        job_ids.append(engine.create_job([batch_id], keboola_configuration_id=f"kill-{index}"))
    engine.start_beat()
    worker = engine.start_worker()
    randomness = random.Random(20261128)
    deadline = time.monotonic() + 30
    kills = 0
    while time.monotonic() < deadline:
        time.sleep(randomness.uniform(0.5, 3.0))
        engine.kill(worker)
        kills += 1
        worker = engine.start_worker()
    jobs = engine.wait_finished(job_ids, timeout=150)

    assert kills >= 8
    assert all(job.status == JobStatus.COMPLETED for job in jobs.values())
    started = engine.keboola_jobs_by_config()
    assert {config: len(runs) for config, runs in started.items()} == {f"kill-{i}": 1 for i in range(12)}


def test_redis_flushed_mid_run_every_job_still_completes_once(engine_installation) -> None:
    engine = engine_installation
    control = engine.simulator.control
    job_ids = []
    for index in range(10):
        batch_id = f"batch_flush_{index}"
        control.create_batch(batch_id=batch_id, final_status="completed", duration=2 + index)
        job_ids.append(engine.create_job([batch_id], keboola_configuration_id=f"flush-{index}"))
    engine.start_worker()
    engine.start_beat()
    engine.wait_until(lambda: len(control.keboola_jobs()) >= 2, 30, "the first triggers")
    engine.redis.flushdb()
    jobs = engine.wait_finished(job_ids, timeout=120)
    assert all(job.status == JobStatus.COMPLETED for job in jobs.values())
    started = engine.keboola_jobs_by_config()
    assert {config: len(runs) for config, runs in started.items()} == {f"flush-{i}": 1 for i in range(10)}


def test_beat_never_queues_more_checks_than_the_cap(engine_installation) -> None:
    from sqlalchemy import func

    from teckochecker.engine.scheduling import CHECK_GROUP_SIZE
    from teckochecker.models import PollingJob
    from worker.scheduler import MAX_QUEUED_CHECK_MESSAGES

    engine = engine_installation
    engine.simulator.control.create_batch(batch_id="batch_pressure", final_status="completed", duration=3600)
    # Every job has the same key: the checks travel in full groups, one message each.
    messages = MAX_QUEUED_CHECK_MESSAGES
    jobs = messages * CHECK_GROUP_SIZE + 300
    for _ in range(jobs):
        engine.create_job(["batch_pressure"], poll_interval_seconds=60)
    engine.start_beat()
    engine.wait_until(lambda: engine.redis.llen("teckochecker.checks") >= messages, 30, "a full queue")
    time.sleep(3)
    # Without workers the queue stops at the cap; the other jobs stay due in the database, unclaimed.
    assert engine.redis.llen("teckochecker.checks") == messages
    with session_scope(engine.sessions) as session:
        leased = session.scalar(select(func.count()).where(PollingJob.lease_token.is_not(None)))
    assert leased == messages * CHECK_GROUP_SIZE

    engine.start_worker(concurrency=16)

    def all_checked() -> bool:
        with session_scope(engine.sessions) as session:
            return session.scalar(select(func.count()).where(PollingJob.last_check_at.is_not(None))) == jobs

    engine.wait_until(all_checked, 120, "every job's first check")


def test_a_worker_with_another_secret_key_sends_nothing_and_every_job_still_triggers_once(
    engine_installation,
) -> None:
    """Two installations on one database with different SECRET_KEYs (what docs/RELIABILITY.md tells
    operators never to do): the stranger's worker cannot read the secrets, so it calls neither OpenAI nor
    Keboola with anything and says why; the rightful workers still start each Keboola job once."""
    engine = engine_installation
    control = engine.simulator.control
    job_ids = []
    for index in range(6):
        batch_id = f"batch_two_keys_{index}"
        control.create_batch(batch_id=batch_id, final_status="completed", duration=2 + index)
        job_ids.append(engine.create_job([batch_id], keboola_configuration_id=f"two-keys-{index}"))
    stranger = {"SECRET_KEY": generate_key()}
    engine.start_worker("stranger", extra_env=stranger)
    engine.start_beat(name="stranger-beat", extra_env=stranger)
    # Each job says why it waits, and is handed back rather than held for the rest of a lease.
    engine.wait_until(
        lambda: all(
            "cannot be decrypted with any key in SECRET_KEY" in (engine.job(job_id).last_error or "")
            for job_id in job_ids
        ),
        60,
        "the stranger's worker to hand back every job, saying why",
    )
    assert "handed back" in (engine.workdir / "stranger.log").read_text()
    assert engine.batch_requests() == 0, "nothing reached OpenAI from the stranger"
    assert control.keboola_jobs() == []
    assert all(engine.job(job_id).status == JobStatus.ACTIVE for job_id in job_ids)
    engine.start_worker("rightful")
    jobs = engine.wait_finished(job_ids, timeout=180)

    assert all(job.status == JobStatus.COMPLETED for job in jobs.values())
    started = engine.keboola_jobs_by_config()
    assert {config: len(runs) for config, runs in started.items()} == {f"two-keys-{i}": 1 for i in range(6)}
