"""The webhook intake's transaction on PostgreSQL: what it reads, and how it commits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.models import JobBatch, PollingJob
from teckochecker.services import webhooks
from teckochecker.services.jobs import JobDraft, create_job
from teckochecker.services.secrets import add_secret
from teckochecker.vault import Vault
from tests.webhook_signing import batch_event, signed

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
ROWS_READ_SO_FAR = text(
    "SELECT seq_tup_read + idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = 'polling_jobs'"
)


def _watchers(session: Session, settings: Settings, vault: Vault, count: int) -> None:
    """`count` active jobs, each watching its own unfinished batch `batch_<n>`, due in an hour: one made through
    the service, the others copied from it in bulk."""
    add_secret(session, vault, name="openai", type="openai", value="sk-webhook-test-key-000")
    add_secret(session, vault, name="keboola", type="keboola", value="123-456-webhooktesttoken")
    draft = JobDraft("watcher", ["batch_0"], "openai", "keboola", "https://connection.keboola.com", "c", "1", 3600)
    template = create_job(session, settings, draft)
    later, now = utcnow() + timedelta(hours=1), utcnow()
    template.next_check_at = later
    copies = [
        {
            "name": f"watcher {n}",
            "openai_secret_id": template.openai_secret_id,
            "keboola_secret_id": template.keboola_secret_id,
            "keboola_stack_url": template.keboola_stack_url,
            "keboola_component_id": "c",
            "keboola_configuration_id": "1",
            "poll_interval_seconds": 3600,
            "status": "active",
            "next_check_at": later,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(1, count)
    ]
    job_ids = session.scalars(insert(PollingJob).returning(PollingJob.id), copies).all()
    batches = [
        {"job_id": job_id, "batch_id": f"batch_{n}", "status": "in_progress", "created_at": now, "updated_at": now}
        for n, job_id in enumerate(job_ids, start=1)
    ]
    session.execute(insert(JobBatch), batches)
    session.commit()


def test_a_webhook_reads_the_jobs_that_watch_its_batch_not_every_job(
    engine: Engine, session: Session, settings: Settings, vault: Vault, signing_secret: str
) -> None:
    """A burst of webhooks is a burst of these statements: each must read the few jobs it marks, whatever the
    number of jobs, also once psycopg runs it as a prepared statement (from the sixth run on)."""
    _watchers(session, settings, vault, 10_000)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE polling_jobs"))
        connection.execute(text("VACUUM ANALYZE job_batches"))
    verifiers = webhooks.signing_secrets(session, vault)

    for n in range(100, 108):
        body, headers = signed(signing_secret, batch_event(f"batch_{n}"))
        before = session.scalar(ROWS_READ_SO_FAR)
        receipt = webhooks.receive(session, verifiers, body, headers)
        read = session.scalar(ROWS_READ_SO_FAR) - before
        session.commit()
        assert receipt.jobs_due == 1
        # The job it marks and a few of the planner's looks, not the 10,000 active jobs.
        assert read < 100, (n, read)
    due = select(func.count()).where(PollingJob.next_check_at <= utcnow(), PollingJob.hinted_at.is_not(None))
    assert session.scalar(due) == 8


@pytest.mark.parametrize("event_type", ["batch.completed", "response.completed"])
def test_a_webhooks_transaction_alone_commits_without_waiting_for_the_disk(
    session: Session, vault: Vault, signing_secret: str, event_type: str
) -> None:
    """A burst of webhooks must not queue behind one another's disk flushes (they announce, and PostgreSQL
    lets one announcing transaction commit at a time); every other transaction keeps the durable commit."""
    body, headers = signed(signing_secret, {**batch_event("batch_unwatched"), "type": event_type})

    receipt = webhooks.receive(session, webhooks.signing_secrets(session, vault), body, headers)
    assert receipt.outcome in (webhooks.Outcome.MARKED_DUE, webhooks.Outcome.IGNORED)
    assert session.scalar(text("SHOW synchronous_commit")) == "off"
    session.commit()

    assert session.scalar(text("SHOW synchronous_commit")) == "on"
    assert session.scalar(text("SELECT count(*) FROM webhook_deliveries")) == 1
