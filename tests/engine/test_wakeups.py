"""Wake-ups: on PostgreSQL, work that falls due between beat's ticks is announced when its transaction commits,
and the listener beat waits on wakes at once; on SQLite nothing is announced and beat keeps its tick."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine

from teckochecker.db import make_engine, make_session_factory, session_scope, utcnow
from teckochecker.engine.checking import run_checks
from teckochecker.engine.scheduling import claim_due_jobs
from teckochecker.engine.wakeups import DueListener, announce_due
from teckochecker.services.jobs import check_now, get_job, pause_job, resume_job
from tests.api.conftest import free_port

# Far longer than any wake-up takes: a listener that returns True before it was woken for nothing.
PATIENCE_SECONDS = 10.0
# How long a finished burst of notifications takes to reach the listener, with room for a loaded machine.
SETTLE_SECONDS = 1.0
ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def listener(engine: Engine):
    listener = DueListener.for_engine(engine)
    assert listener is not None
    yield listener
    listener.close()


def _announce(engine: Engine, *, times: int = 1, commit: bool = True) -> None:
    session = make_session_factory(engine)()
    try:
        for _ in range(times):
            announce_due(session)
        if commit:
            session.commit()
    finally:
        session.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_nothing_listens_and_announcing_is_harmless(engine: Engine) -> None:
    assert DueListener.for_engine(engine) is None
    _announce(engine)


@ON_POSTGRESQL
def test_a_committed_announcement_wakes_the_listener_at_once(engine: Engine, listener: DueListener) -> None:
    assert listener.wait(0.2) is False, "nothing was announced"
    timer = threading.Timer(0.3, _announce, args=(engine,))
    timer.start()
    started = time.monotonic()
    assert listener.wait(PATIENCE_SECONDS) is True
    assert time.monotonic() - started < PATIENCE_SECONDS / 2
    timer.join()


@ON_POSTGRESQL
def test_a_rolled_back_announcement_wakes_nobody(engine: Engine, listener: DueListener) -> None:
    listener.wait(0)  # the connection is made on first use; LISTEN only hears what comes after it
    _announce(engine, commit=False)
    assert listener.wait(0.5) is False


@ON_POSTGRESQL
def test_a_burst_of_announcements_wakes_the_listener_once(engine: Engine, listener: DueListener) -> None:
    listener.wait(0)
    for _ in range(20):
        _announce(engine)
    # Each commit signals the listening backend, which sends what it has when it gets the CPU; on a loaded
    # machine the last of the burst can still be on its way after the last commit returned. A burst that is
    # still arriving is not the case under test, so let the one that was sent land first.
    time.sleep(SETTLE_SECONDS)
    assert listener.wait(PATIENCE_SECONDS) is True
    assert listener.wait(0.3) is False, "the rest of the burst was consumed by the first wake-up"


def test_an_unreachable_database_only_sleeps_so_beat_keeps_its_tick() -> None:
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing")
    listener = DueListener(engine)
    started = time.monotonic()
    assert listener.wait(0.3) is False
    assert time.monotonic() - started >= 0.3
    listener.close()


@ON_POSTGRESQL
def test_a_check_that_finds_every_batch_finished_announces_the_trigger(world, engine: Engine, listener) -> None:
    control = world.simulator.control
    control.create_batch(batch_id="batch_running", script=[{"status": "in_progress", "at": 0}])
    control.create_batch(batch_id="batch_done", final_status="completed", duration=0)
    running, done = world.create_job(["batch_running"]), world.create_job(["batch_done"])
    listener.wait(0)

    with session_scope(world.sessions) as session:
        claims = {claim.job_id: claim.lease_token for claim in claim_due_jobs(session, now=utcnow())}
    run_checks(world.sessions, world.vault, world.openai_client, [running], claims[running])
    assert listener.wait(0.5) is False, "a batch still running makes nothing due now"

    run_checks(world.sessions, world.vault, world.openai_client, [done], claims[done])
    assert listener.wait(PATIENCE_SECONDS) is True, "the job in `triggering` is due now: beat should not wait"


@ON_POSTGRESQL
def test_what_a_user_makes_due_now_wakes_the_dispatcher(world, engine: Engine, listener: DueListener) -> None:
    listener.wait(0)
    job_id = world.create_job(["batch_user"])
    assert listener.wait(PATIENCE_SECONDS) is True, "a new job is checked at once"
    for action in (pause_job, resume_job, check_now):
        with session_scope(world.sessions) as session:
            action(session, get_job(session, job_id))
        woken = listener.wait(0.5 if action is pause_job else PATIENCE_SECONDS)
        assert woken is (action is not pause_job), action.__name__
