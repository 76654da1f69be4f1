"""Holding jobs under a lease: the rows are locked for the transaction, only where the lease is ours."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError

from teckochecker.db import session_scope, utcnow
from teckochecker.engine.leases import Hold
from teckochecker.models import PollingJob

ROWS_WRITTEN_SO_FAR = text("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'polling_jobs'")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_holding_jobs_locks_only_ours_and_writes_no_row_on_postgresql(world, engine) -> None:
    """Every check and start holds its jobs twice; a write there made two more versions of each job's row."""
    ours, theirs = world.create_job(["batch_ours"]), world.create_job(["batch_theirs"])
    with session_scope(world.sessions) as session:
        for job_id, token in ((ours, "our-token"), (theirs, "their-token")):
            session.execute(
                update(PollingJob)
                .where(PollingJob.id == job_id)
                .values(lease_token=token, lease_until=utcnow() + timedelta(seconds=30))
            )

    with session_scope(world.sessions) as session:
        before = session.scalar(ROWS_WRITTEN_SO_FAR)
        held = Hold(PollingJob.__table__.c.id)(session, [ours, theirs], "our-token").scalars().all()
        assert held == [ours]
        assert session.scalar(ROWS_WRITTEN_SO_FAR) == before, "a lock, not a write"
        with engine.connect() as other:
            other.execute(text("SET lock_timeout = '200ms'"))
            with pytest.raises(OperationalError, match="lock"):
                other.execute(text("SELECT id FROM polling_jobs WHERE id = :id FOR UPDATE"), {"id": ours})
            other.rollback()
            locked_theirs = other.execute(
                text("SELECT id FROM polling_jobs WHERE id = :id FOR UPDATE NOWAIT"), {"id": theirs}
            ).scalar()
            assert locked_theirs == theirs, "a job leased to someone else is not held"
            other.rollback()
