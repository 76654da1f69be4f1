from datetime import timedelta

from teckochecker.db import utcnow
from teckochecker.services.workers import any_worker_recorded, record_heartbeat, workers_seen_since


def test_heartbeats_are_upserted_and_old_workers_forgotten(session) -> None:
    now = utcnow()
    assert not any_worker_recorded(session)
    record_heartbeat(session, "celery@a", now - timedelta(days=2))
    record_heartbeat(session, "celery@b", now - timedelta(minutes=5))
    record_heartbeat(session, "celery@b", now)
    record_heartbeat(session, "celery@c", now - timedelta(seconds=30))
    session.commit()
    assert workers_seen_since(session, now - timedelta(seconds=60)) == ["celery@b", "celery@c"]
    # celery@a was gone for more than a day: its row is dropped by the next heartbeat.
    assert workers_seen_since(session, now - timedelta(days=3)) == ["celery@b", "celery@c"]
